//! Script lifecycle across deploys, deletes, restarts and crashes.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Berth, wasm};

#[tokio::test]
async fn redeploy_replaces_the_served_version() {
    let berth = Berth::start();
    let v1 = berth
        .upload_with_metadata(
            "default",
            "app",
            wasm("tenant"),
            json!({"vars": {"VERSION": "one"}}),
        )
        .await;
    assert_eq!(v1.json()["result"]["version"], 1);
    assert_eq!(
        berth
            .get("app.localhost", "/echo")
            .await
            .header("x-version")
            .as_deref(),
        Some("one")
    );

    let v2 = berth
        .upload_with_metadata(
            "default",
            "app",
            wasm("tenant"),
            json!({"vars": {"VERSION": "two"}}),
        )
        .await;
    assert_eq!(v2.json()["result"]["version"], 2);
    assert_eq!(
        v2.json()["result"]["created_on"],
        v1.json()["result"]["created_on"]
    );
    assert_eq!(
        berth
            .get("app.localhost", "/echo")
            .await
            .header("x-version")
            .as_deref(),
        Some("two")
    );

    // A different component under the same name.
    let v3 = berth.deploy("default", "app", wasm("hello")).await;
    assert_eq!(v3["version"], 3);
    assert_eq!(
        berth.get("app.localhost", "/x").await.text(),
        "Hello from Berth! You requested /x\n"
    );
}

#[tokio::test]
async fn deleted_scripts_get_worker_not_found() {
    let berth = Berth::start();
    berth.deploy("default", "app", wasm("hello")).await;
    assert_eq!(berth.get("app.localhost", "/").await.status, 200);

    let reply = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/app"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let gone = berth.get("app.localhost", "/").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code().as_deref(), Some("worker-not-found"));

    let again = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/app"))
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["errors"][0]["code"], "script_not_found");
}

#[tokio::test]
async fn restart_serves_stored_scripts_without_recompiling() {
    let berth = Berth::start();
    berth.deploy("default", "hello", wasm("hello")).await;
    berth.deploy("default", "tenant", wasm("tenant")).await;
    let before = berth.runtime_stats().await;
    assert_eq!(before["compiles"], 2, "{before}");

    let berth = berth.restart();
    assert_eq!(berth.get("hello.localhost", "/").await.status, 200);
    assert_eq!(berth.get("tenant.localhost", "/echo").await.status, 200);
    let after = berth.runtime_stats().await;
    assert_eq!(after["compiles"], 0, "restart recompiled: {after}");
    assert_eq!(after["artifact_loads"], 2, "{after}");
}

#[tokio::test]
async fn a_restarted_host_loads_its_scripts_before_their_first_request() {
    let berth = Berth::start();
    berth.deploy("default", "hello", wasm("hello")).await;
    berth.deploy("default", "tenant", wasm("tenant")).await;
    let berth = berth.restart();
    // No request yet: the preload alone fills the worker cache.
    crate::harness::eventually("both scripts preloaded", || async {
        let stats = berth.runtime_stats().await;
        (stats["cached_workers"] == 2).then_some(stats)
    })
    .await;
    assert_eq!(berth.get("hello.localhost", "/").await.status, 200);
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["compiles"], 0, "{stats}");
    assert_eq!(
        stats["cache_hits"], 1,
        "the first request found its worker loaded: {stats}"
    );
}

#[tokio::test]
async fn acknowledged_uploads_survive_a_crash() {
    let berth = Berth::start();
    berth.create_namespace("tenants").await;
    berth.deploy("default", "hello", wasm("hello")).await;
    berth.deploy("tenants", "kept", wasm("tenant")).await;

    let berth = berth.crash_and_restart();
    assert_eq!(berth.get("hello.localhost", "/").await.status, 200);
    let kept = berth.admin_get("/v1/namespaces/tenants/scripts/kept").await;
    assert_eq!(kept.status, 200, "{}", kept.text());
    let content = berth
        .admin_get("/v1/namespaces/tenants/scripts/kept/content")
        .await;
    assert_eq!(content.body, wasm("tenant"));
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let mut berth = Berth::start();
    berth.deploy("default", "slow", wasm("tenant")).await;
    // The response has started (headers arrived), more chunks are pending.
    let mut response = berth
        .data_request(
            Method::GET,
            "slow.localhost",
            "/stream?chunks=3&size=8&delay_ms=300",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"chunk 0"));

    let stopper = std::thread::spawn(move || {
        let status = berth.stop();
        (berth, status)
    });
    let mut rest = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .expect("body completes during shutdown")
    {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(first.len() + rest.len(), 24);
    let (berth, status) = stopper.join().unwrap();
    assert!(status.success(), "berth exited with {status}");
    assert!(
        berth.log().contains("in-flight requests finished"),
        "{}",
        berth.log()
    );
}

#[tokio::test]
async fn identical_components_are_compiled_once() {
    let berth = Berth::start();
    for name in ["a", "b", "c"] {
        berth.deploy("default", name, wasm("hello")).await;
    }
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["compiles"], 1, "{stats}");
    for host in ["a.localhost", "b.localhost", "c.localhost"] {
        assert_eq!(berth.get(host, "/").await.status, 200);
    }
    // Deleting one keeps the shared artifact for the others.
    berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/a"))
        .await;
    let berth = berth.restart();
    assert_eq!(berth.get("b.localhost", "/").await.status, 200);
    assert_eq!(berth.runtime_stats().await["compiles"], 0);
}

#[tokio::test]
async fn scripts_with_identical_bytes_share_one_loaded_component() {
    let berth = Berth::start();
    for name in ["a", "b", "c"] {
        berth.deploy("default", name, wasm("tenant")).await;
    }
    let berth = berth.restart();
    for host in ["a.localhost", "b.localhost", "c.localhost"] {
        assert_eq!(berth.get(host, "/echo").await.status, 200);
    }
    // Three workers, one artifact load: the code is shared, the state is not.
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["artifact_loads"], 1, "{stats}");
    assert_eq!(stats["cached_workers"], 3, "{stats}");
}
