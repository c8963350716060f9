//! Dynamic dispatch end to end: `[[dispatch]]` routing, the example
//! dispatcher (routing, auth, header sanitizing, JSON errors, streaming)
//! and every `dispatch-error` variant as seen by a dispatch worker (the
//! `probe` fixture), namespace isolation and fan-out.

use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::harness::{Berth, drain, start_with_config, wasm, wasm_path};

const ADMIN_TOKEN: &str = "platform-secret";

/// A server with the example dispatcher on `*.platform.test` (namespace
/// `customers`) and the probe on `*.probe.test` (namespace `probing`).
fn start() -> Berth {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    let text = format!(
        r#"
[egress]
ports = ["1-65535"]
allow_private = ["127.0.0.1/32"]

[[dispatch]]
hostnames = ["*.platform.test"]
worker = "{dispatcher}"
namespace = "customers"
vars = {{ PLATFORM_DOMAIN = "platform.test", ADMIN_TOKEN = "{ADMIN_TOKEN}", CPU_MS = "2000", MEMORY_MB = "32", WALL_MS = "120000" }}

[[dispatch]]
hostnames = ["*.probe.test", "probe.test"]
worker = "{probe}"
namespace = "probing"
"#,
        dispatcher = wasm_path("dispatcher").display(),
        probe = wasm_path("probe").display(),
    );
    std::fs::write(&config, text).unwrap();
    Berth::start_with(dir, &["--config", config.to_str().unwrap()])
}

async fn deploy_vars(
    berth: &Berth,
    ns: &str,
    name: &str,
    component: &str,
    vars: serde_json::Value,
) {
    let reply = berth
        .upload_with_metadata(ns, name, wasm(component), json!({ "vars": vars }))
        .await;
    assert_eq!(reply.status, 200, "deploy {ns}/{name}: {}", reply.text());
}

#[tokio::test]
async fn the_dispatcher_routes_customers_by_host() {
    let berth = start();
    deploy_vars(
        &berth,
        "customers",
        "customer-a",
        "hello",
        json!({"GREETING": "Hi from A!"}),
    )
    .await;
    deploy_vars(
        &berth,
        "customers",
        "customer-b",
        "hello",
        json!({"GREETING": "Hi from B!"}),
    )
    .await;

    let a = berth.get("customer-a.platform.test", "/page?x=1").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), "Hi from A! You requested /page?x=1\n");
    let b = berth.get("Customer-B.Platform.Test:8787", "/").await;
    assert_eq!(b.text(), "Hi from B! You requested /\n");

    // Customers' scripts are not reachable through the built-in router, and
    // hosts matching no [[dispatch]] entry still use it.
    let direct = berth.get("customer-a.localhost", "/").await;
    assert_eq!(direct.status, 404);
    assert_eq!(direct.error_code().as_deref(), Some("worker-not-found"));
    berth.deploy("default", "hello", wasm("hello")).await;
    assert_eq!(berth.get("hello.localhost", "/").await.status, 200);
}

#[tokio::test]
async fn unknown_customers_get_the_dispatchers_json_404() {
    let berth = start();
    let reply = berth.get("nobody.platform.test", "/").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        reply.json(),
        json!({"error": "worker-not-found", "customer": "nobody"})
    );
    // The dispatcher answered, not the host: no x-berth-error.
    assert_eq!(reply.error_code(), None);
}

#[tokio::test]
async fn the_dispatcher_enforces_auth_under_admin() {
    let berth = start();
    deploy_vars(&berth, "customers", "shop", "hello", json!({})).await;
    let open = berth.get("shop.platform.test", "/public").await;
    assert_eq!(open.status, 200);

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic cGxhdGZvcm0tc2VjcmV0"),
    ] {
        let mut request = berth.data_request(Method::GET, "shop.platform.test", "/admin/settings");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let reply = berth.send(request).await;
        assert_eq!(reply.status, 401, "{auth:?}: {}", reply.text());
        assert_eq!(reply.json()["error"], "unauthorized");
    }
    let request = berth
        .data_request(Method::GET, "shop.platform.test", "/admin/settings")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    let reply = berth.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "Hello from Berth! You requested /admin/settings\n"
    );
}

#[tokio::test]
async fn the_dispatcher_strips_internal_response_headers() {
    let berth = start();
    deploy_vars(&berth, "customers", "t", "tenant", json!({"VERSION": "9"})).await;
    berth.deploy("default", "t", wasm("tenant")).await;

    let direct = berth.get("t.localhost", "/echo").await;
    assert_eq!(direct.header("x-internal-trace").as_deref(), Some("tenant"));

    let via = berth.get("t.platform.test", "/echo").await;
    assert_eq!(via.status, 200, "{}", via.text());
    assert_eq!(via.header("x-internal-trace"), None, "x-internal-* leaked");
    assert_eq!(via.header("x-fixture").as_deref(), Some("tenant"));
    assert_eq!(via.header("x-version").as_deref(), Some("9"));
}

#[tokio::test]
async fn request_bodies_stream_through_the_dispatcher() {
    let berth = start();
    deploy_vars(&berth, "customers", "t", "tenant", json!({})).await;
    let body = vec![b'q'; 3 * 1024 * 1024 + 5];
    let request = berth
        .data_request(Method::PUT, "t.platform.test", "/echo?via=dispatcher")
        .header("x-custom", "kept")
        .body(body.clone());
    let reply = berth.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["query"], "via=dispatcher");
    assert_eq!(echo["body_bytes"], body.len());
    let headers = echo["headers"].as_array().unwrap();
    assert!(headers.iter().any(|h| h[0] == "x-custom" && h[1] == "kept"));
    assert_eq!(echo["authority"], "t.platform.test");
}

/// The pass-through of `berth:platform@0.3.0` (the example dispatcher is
/// built against it): every value of a repeated request header reaches the
/// user worker, and a user worker's body that fails midway (cut off at its
/// response cap) fails the client's body: it never ends cleanly, as if
/// complete.
#[tokio::test]
async fn the_passthrough_keeps_repeated_headers_and_never_completes_a_failed_body() {
    let berth = start();
    let reply = berth
        .upload_with_metadata(
            "customers",
            "capped",
            wasm("tenant"),
            json!({ "limits": { "max_response_body_mb": 1 } }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let request = berth
        .data_request(Method::POST, "capped.platform.test", "/echo?twice")
        .header("x-multi", "first")
        .header("x-multi", "second")
        .body("seven b");
    let echo = berth.send(request).await;
    assert_eq!(echo.status, 200, "{}", echo.text());
    let echo = echo.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["query"], "twice");
    assert_eq!(echo["body_bytes"], 7);
    let multi: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-multi")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(multi, ["first", "second"], "{echo}");

    let response = berth
        .data_request(Method::GET, "capped.platform.test", "/big?mb=3")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let (received, outcome) = drain(response).await;
    assert!(
        outcome.is_err(),
        "the body ended cleanly after {received} bytes"
    );
    assert!(received <= 1024 * 1024, "received {received} bytes");
}

#[tokio::test]
async fn ten_mib_stream_through_the_dispatcher_without_buffering() {
    let berth = start();
    deploy_vars(&berth, "customers", "streamer", "tenant", json!({})).await;
    let half = 80 * 65_536;

    // The user worker writes half, then pauses for ten minutes: the first
    // half must reach the client while it is still paused.
    let mut response = berth
        .data_request(
            Method::GET,
            "streamer.platform.test",
            "/stream?chunks=160&size=65536&pause_at=80&pause_ms=600000",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    while received < half {
        let chunk = response
            .chunk()
            .await
            .expect("chunk")
            .expect("body ended early");
        received += chunk.len();
    }
    assert_eq!(
        received, half,
        "more than the first half arrived during the pause"
    );
    drop(response);

    // Without the pause, all 10 MiB arrive intact.
    let reply = berth
        .get("streamer.platform.test", "/stream?chunks=160&size=65536")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 10 * 1024 * 1024);
    assert!(reply.text().contains("chunk 159\n"));
}

#[tokio::test]
async fn the_example_dispatcher_answers_limit_errors_with_json_429() {
    let berth = start();
    deploy_vars(&berth, "customers", "t", "tenant", json!({})).await;
    for (path, code) in [
        ("/spin", "cpu-limit-exceeded"),
        ("/alloc?mb=64", "memory-limit-exceeded"),
    ] {
        let reply = berth.get("t.platform.test", path).await;
        assert_eq!(reply.status, 429, "{path}: {}", reply.text());
        assert_eq!(reply.json(), json!({"error": code, "customer": "t"}));
    }
    let trap = berth.get("t.platform.test", "/trap").await;
    assert_eq!(trap.status, 502);
    assert_eq!(trap.json()["error"], "exception");
    // The dispatcher itself is unharmed.
    assert_eq!(berth.get("t.platform.test", "/echo").await.status, 200);
}

#[tokio::test]
async fn every_failure_reaches_the_dispatch_worker_as_its_variant() {
    let berth = start();
    deploy_vars(&berth, "probing", "t", "tenant", json!({})).await;
    let upstream = format!("http://{}/", berth.data);
    let cases = [
        (
            "/call/t/spin?cpu_ms=100".to_string(),
            "err cpu-limit-exceeded",
        ),
        (
            "/call/t/sleep?wall_ms=300&q=--ms=600000".to_string(),
            "err wall-limit-exceeded",
        ),
        (
            "/call/t/alloc?memory_mb=16&q=--mb=64".to_string(),
            "err memory-limit-exceeded",
        ),
        ("/call/t/trap".to_string(), "err exception: "),
        ("/call/t/recurse".to_string(), "err exception: "),
        ("/call/t/no-response".to_string(), "err no-response"),
        (
            format!("/call/t/fetch-or-die?subrequests=2&q=--url={upstream}&n=3"),
            "err subrequest-limit-exceeded",
        ),
        ("/call/nobody/".to_string(), "err worker-not-found"),
        ("/call/t/echo".to_string(), "ok 200\n"),
        (
            format!("/call/t/fetch-or-die?subrequests=3&q=--url={upstream}&n=3"),
            "ok 200\nfetched 3",
        ),
    ];
    for (path, expected) in cases {
        let reply = berth.get("probe.test", &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert!(
            reply.text().starts_with(expected),
            "{path}: expected {expected:?}, got {:?}",
            reply.text()
        );
    }
    let trap = berth.get("probe.test", "/call/t/trap").await.text();
    assert!(trap.contains("unreachable"), "{trap}");
    let overflow = berth.get("probe.test", "/call/t/recurse").await.text();
    assert!(overflow.contains("stack overflow"), "{overflow}");
    let stats = berth.runtime_stats().await;
    assert!(stats["cpu_limit_hits"].as_u64().unwrap() >= 1, "{stats}");
}

#[tokio::test]
async fn a_dispatcher_cannot_reach_another_namespace() {
    let berth = start();
    deploy_vars(&berth, "customers", "secret", "hello", json!({})).await;
    berth.deploy("default", "dflt", wasm("hello")).await;
    deploy_vars(&berth, "probing", "mine", "hello", json!({})).await;
    for name in [
        "secret",
        "dflt",
        "customers/secret",
        "../customers/secret",
        "SECRET",
        "",
    ] {
        let reply = berth.get("probe.test", &format!("/get?name={name}")).await;
        assert_eq!(reply.text(), "err worker-not-found", "get({name:?})");
    }
    assert_eq!(
        berth.get("probe.test", "/get?name=mine").await.text(),
        "ok mine"
    );
}

#[tokio::test]
async fn a_dispatcher_can_fan_out_concurrent_fetches() {
    let berth = start();
    deploy_vars(
        &berth,
        "probing",
        "left",
        "hello",
        json!({"GREETING": "L!"}),
    )
    .await;
    deploy_vars(&berth, "probing", "right", "tenant", json!({})).await;
    // `right` answers only after streaming for a while; both are in flight.
    let reply = berth
        .get("probe.test", "/fanout?a=left&b=right&path=/stream")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "left: 200 L! You requested /stream", "{text}");
    assert!(lines[1].starts_with("right: 200 chunk 0"), "{text}");
    assert!(text.contains("chunk 2"), "{text}");

    let missing = berth
        .get("probe.test", "/fanout?a=left&b=ghost&path=/")
        .await
        .text();
    assert!(missing.contains("ghost: err worker-not-found"), "{missing}");
    assert!(
        missing.contains("left: 200 L! You requested /"),
        "{missing}"
    );
}

#[tokio::test]
async fn a_stored_script_can_be_the_dispatch_worker() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[[dispatch]]\nhostnames = [\"*.stored.test\"]\nworker = \"platform/router\"\nnamespace = \"tenants\"\n",
    )
    .unwrap();
    let berth = Berth::start_with(dir, &["--config", config.to_str().unwrap()]);
    // Not deployed yet: a host-side error, not a crash; the client gets
    // the request id, the log names the missing dispatch worker.
    let early = berth.get("x.stored.test", "/get?name=x").await;
    assert_eq!(early.status, 500, "{}", early.text());
    assert_eq!(early.error_code().as_deref(), Some("internal"));
    let id = early.header("berth-request-id").unwrap();
    assert!(early.text().contains(&id), "{}", early.text());
    assert!(berth.log().contains("platform/router"), "the log names it");

    berth.create_namespace("platform").await;
    berth.deploy("platform", "router", wasm("probe")).await;
    deploy_vars(&berth, "tenants", "x", "hello", json!({"GREETING": "X!"})).await;
    assert_eq!(
        berth.get("x.stored.test", "/get?name=x").await.text(),
        "ok x"
    );
    assert_eq!(
        berth.get("x.stored.test", "/hi").await.text(),
        "X! You requested /hi\n"
    );
}

#[test]
fn the_wit_parses_and_the_examples_target_its_worlds() {
    let tool = std::env::var("BERTH_WASM_TOOLS")
        .expect("BERTH_WASM_TOOLS must point at wasm-tools; run the tests with `make test`");
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let run = |args: &[&str]| {
        let output = Command::new(&tool)
            .args(args)
            .output()
            .expect("run wasm-tools");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let wit = wit.to_str().unwrap();
    let (ok, text) = run(&["component", "wit", wit]);
    assert!(ok, "{text}");
    assert!(text.contains("package berth:platform@0.1.0"), "{text}");
    let v3 = format!("{wit}/v0.3");
    let (ok, text) = run(&["component", "wit", &v3]);
    assert!(ok, "{text}");
    assert!(text.contains("package berth:platform@0.3.0"), "{text}");
    // The example dispatcher builds against 0.3.0 (the SDK's `platform-0-3`
    // feature), the probe against 0.1.0 (the SDK's default).
    for (component, world, wit) in [
        ("dispatcher", "dispatch-worker", v3.as_str()),
        ("probe", "dispatch-worker", wit),
        ("hello", "user-worker", wit),
        ("tenant", "user-worker", wit),
    ] {
        let path = wasm_path(component);
        let (ok, text) = run(&[
            "component",
            "targets",
            wit,
            path.to_str().unwrap(),
            "--world",
            world,
        ]);
        assert!(ok, "{component} does not target {world}: {text}");
    }
    // And the check can fail: a dispatch worker is not a user worker.
    let (ok, _) = run(&[
        "component",
        "targets",
        wit,
        wasm_path("dispatcher").to_str().unwrap(),
        "--world",
        "user-worker",
    ]);
    assert!(!ok);
}

/// How many instances the host has created so far (from `/metrics`).
async fn instantiations(berth: &Berth) -> f64 {
    let text = berth.admin_get("/metrics").await.text();
    text.lines()
        .find_map(|line| line.strip_prefix("berth_instantiation_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instantiation count in {text}"))
}

#[tokio::test]
async fn a_dispatch_worker_with_warm_reuse_serves_many_customers_from_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[dispatch]]\nhostnames = [\"*.platform.test\"]\nworker = \"{}\"\nnamespace = \"customers\"\n\
             vars = {{ PLATFORM_DOMAIN = \"platform.test\" }}\nisolation = \"reuse\"\n",
            wasm_path("dispatcher").display()
        ),
    )
    .unwrap();
    let berth = Berth::start_with(dir, &["--config", config.to_str().unwrap()]);
    for (name, greeting) in [("a", "Hi A!"), ("b", "Hi B!")] {
        deploy_vars(
            &berth,
            "customers",
            name,
            "hello",
            json!({ "GREETING": greeting }),
        )
        .await;
    }
    let before = instantiations(&berth).await;
    for round in 0..5 {
        for (name, greeting) in [("a", "Hi A!"), ("b", "Hi B!")] {
            let reply = berth.get(&format!("{name}.platform.test"), "/x").await;
            assert_eq!(
                reply.text(),
                format!("{greeting} You requested /x\n"),
                "round {round}"
            );
            berth.settle().await;
        }
        // Errors still come through a reused dispatcher, typed.
        let missing = berth.get("nobody.platform.test", "/").await;
        assert_eq!(missing.status, 404);
        berth.settle().await;
    }
    let made = instantiations(&berth).await - before;
    // 10 user worker instances, and the dispatcher's: one for the first
    // request, not one per request (15 without reuse).
    assert_eq!(made, 11.0, "{made} instances for 15 requests");

    // A stored script cannot take the file-worker setting.
    let bad = tempfile::tempdir().unwrap();
    let path = bad.path().join("berth.toml");
    std::fs::write(
        &path,
        "[[dispatch]]\nhostnames = [\"x.test\"]\nworker = \"platform/router\"\nnamespace = \"c\"\nisolation = { mode = \"reuse\" }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--config", path.to_str().unwrap(), "--data-dir"])
        .arg(bad.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dispatch[0].isolation applies only to .wasm file workers"),
        "{stderr}"
    );
}

/// A tenant whose requests merely wait (a clock pollable, no CPU) fills
/// its own concurrency gate, not the dispatch worker's: another tenant
/// behind the same dispatch worker is still served.
#[tokio::test]
async fn a_slow_tenant_cannot_take_every_dispatch_worker_slot() {
    let dispatcher = wasm_path("dispatcher");
    // No queue anywhere: a request that finds no free slot is refused at
    // once, so "served" really means a slot was free.
    let berth = start_with_config(&format!(
        "[limits]\nmax_queue = 0\n\n[[dispatch]]\nhostnames = [\"*.platform.test\"]\n\
         worker = \"{}\"\nnamespace = \"customers\"\n\
         vars = {{ PLATFORM_DOMAIN = \"platform.test\", WALL_MS = \"60000\" }}\n",
        dispatcher.display()
    ));
    berth.deploy("customers", "slow", wasm("tenant")).await;
    berth.deploy("customers", "fast", wasm("tenant")).await;
    let slow: Vec<_> = (0..80)
        .map(|_| {
            tokio::spawn(
                berth
                    .data_request(Method::GET, "slow.platform.test", "/sleep?ms=3000")
                    .send(),
            )
        })
        .collect();
    // Wait until the slow tenant's gate (64, the default) is full: 64 user
    // workers and their 64 dispatch worker instances are running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = berth.runtime_stats().await;
        if stats["pool"]["component_instances"].as_u64() >= Some(128) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fast = berth.get("fast.platform.test", "/echo").await;
    assert_eq!(fast.status, 200, "{}", fast.text());
    let mut statuses = std::collections::BTreeMap::new();
    for request in slow {
        let status = request.await.unwrap().unwrap().status().as_u16();
        *statuses.entry(status).or_insert(0) += 1;
    }
    // The slow tenant got its share (64) and nothing more.
    assert_eq!(statuses.get(&200), Some(&64), "{statuses:?}");
}

/// A file-based dispatch worker's warm instances are counted in
/// `warm_idle_instances` and given back after `reuse_idle_ms`, like a
/// stored script's (they live in the dispatch table, not the worker cache).
#[tokio::test]
async fn a_file_dispatch_workers_warm_instances_are_counted_and_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[dispatch]]
hostnames = ["*.platform.test"]
worker = "{}"
namespace = "customers"
isolation = {{ mode = "reuse", reuse_idle_ms = 500 }}
vars = {{ PLATFORM_DOMAIN = "platform.test", ADMIN_TOKEN = "{ADMIN_TOKEN}" }}
"#,
            wasm_path("dispatcher").display()
        ),
    )
    .unwrap();
    let berth = Berth::start_with(dir, &["--config", config.to_str().unwrap()]);
    deploy_vars(&berth, "customers", "a", "hello", json!({})).await;
    for _ in 0..3 {
        let reply = berth.get("a.platform.test", "/").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Each guest run finishes on its own after answering, so a request
    // can arrive before the previous instance is back and take a second
    // one: one to three instances end up idle. Every live instance must
    // then be counted as a warm idle one.
    crate::harness::eventually("the dispatch instances to be idle and counted", || async {
        let stats = berth.runtime_stats().await;
        let idle = stats["warm_idle_instances"].as_u64()?;
        ((1..=3).contains(&idle) && stats["pool"]["component_instances"] == idle).then_some(())
    })
    .await;
    crate::harness::eventually("the idle dispatch instance to be reaped", || async {
        let stats = berth.runtime_stats().await;
        (stats["warm_idle_instances"] == 0 && stats["pool"]["component_instances"] == 0)
            .then_some(())
    })
    .await;
}
