//! JavaScript guests end to end: components built by componentize-js from
//! `examples/js-hello`, `examples/js-dispatcher` and the
//! `tests/fixtures/js-tenant` fixture (`make js`), served by the real
//! binary. They export `wasi:http@0.2.10`, which the host accepts.
//!
//! Each JS component is ~12 MiB and takes seconds to compile, so each test
//! starts one server and checks several behaviours on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Berth, eventually, gated_upstream, start_with_config, wasm, wasm_path};

const ADMIN_TOKEN: &str = "js-platform-secret";

/// A loopback upstream that counts the requests it receives.
async fn counting_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "upstream ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

#[tokio::test]
async fn js_hello_is_served_with_its_vars() {
    let berth = Berth::start();
    let reply = berth
        .upload_with_metadata(
            "default",
            "js-hello",
            wasm("js_hello"),
            json!({"vars": {"GREETING": "Hi from JS!"}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for _ in 0..3 {
        // Fresh instance each time: the second and third prove nothing
        // leaks between requests that would break them.
        let reply = berth.get("js-hello.localhost", "/path?q=1").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "Hi from JS! You requested /path?q=1\n");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
    }

    // A fresh instance starts from the build-time snapshot: what one request
    // left in globals and on the JS heap is gone for the next request, and
    // for another script built from the same component (same warm slot).
    let other = berth
        .upload_with_metadata("default", "js-other", wasm("js_tenant"), json!({}))
        .await;
    assert_eq!(other.status, 200, "{}", other.text());
    let mine = berth
        .upload_with_metadata("default", "js-mine", wasm("js_tenant"), json!({}))
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text());
    for round in 0..3 {
        let value = format!("secret-{round}");
        let kept = berth
            .get("js-mine.localhost", &format!("/remember?v={value}"))
            .await;
        assert_eq!(kept.text(), format!("remembered {value}\n"));
        for host in ["js-mine.localhost", "js-other.localhost"] {
            let recall = berth.get(host, "/recall").await;
            assert_eq!(
                recall.text(),
                "recalled (nothing) 0\n",
                "{host} round {round}"
            );
        }
    }

    // StarlingMonkey handles one fetch event per instance, so warm reuse
    // is ignored for componentize-js components instead of failing every
    // second request.
    let patch = berth
        .send(
            berth
                .admin_request(
                    Method::PATCH,
                    "/v1/namespaces/default/scripts/js-hello/settings",
                )
                .json(&json!({"isolation": "reuse"})),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    // The caller is told, not only the server log.
    let warnings = patch.json()["result"]["warnings"].to_string();
    assert!(
        warnings.contains("is stored but not applied") && warnings.contains("componentize-js"),
        "{}",
        patch.text()
    );
    let shown = berth
        .admin_get("/v1/namespaces/default/scripts/js-hello/settings")
        .await;
    assert_eq!(shown.json()["result"]["warnings"].to_string(), warnings);
    for _ in 0..4 {
        let reply = berth.get("js-hello.localhost", "/again").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "Hi from JS! You requested /again\n");
    }
    assert!(
        berth
            .log()
            .contains("ignored: serving a fresh instance per request"),
        "the operator is told why"
    );
}

#[tokio::test]
async fn js_guests_are_contained_by_limits_and_egress() {
    let (upstream, hits) = counting_upstream().await;
    let berth = Berth::start();
    let reply = berth
        .upload_with_metadata(
            "default",
            "js",
            wasm("js_tenant"),
            json!({
                "vars": {"PLAN": "free"},
                "limits": {"cpu_ms": 1000, "memory_mb": 48}
            }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let secret = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/default/scripts/js/secrets/TOKEN",
                )
                .json(&json!({"value": "s3cret"})),
        )
        .await;
    assert_eq!(secret.status, 200, "{}", secret.text());

    // Vars and secrets reach JS as `env`.
    assert_eq!(
        berth.get("js.localhost", "/env?name=PLAN").await.text(),
        "PLAN=free\n"
    );
    assert_eq!(
        berth.get("js.localhost", "/env?name=TOKEN").await.text(),
        "TOKEN=s3cret\n"
    );

    // An infinite loop hits the CPU limit.
    let spin = berth.get("js.localhost", "/loop").await;
    assert_eq!(spin.status, 503, "{}", spin.text());
    assert_eq!(spin.error_code().as_deref(), Some("cpu-limit"));

    // A memory bomb hits the memory limit, even though SpiderMonkey would
    // catch its own out-of-memory and answer a bare 500.
    let bomb = berth.get("js.localhost", "/bomb").await;
    assert_eq!(bomb.status, 503, "{}", bomb.text());
    assert_eq!(bomb.error_code().as_deref(), Some("memory-limit"));

    // fetch() goes through the egress filter: loopback is denied by
    // default, the guest sees a network error, nothing reaches the socket.
    let url = format!("http://{upstream}/");
    let denied = berth
        .get("js.localhost", &format!("/fetch?url={url}"))
        .await;
    assert_eq!(denied.status, 502, "{}", denied.text());
    assert!(
        denied.text().starts_with("fetch failed:"),
        "{}",
        denied.text()
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no packet reached the upstream"
    );

    // The dispatch domain is for dispatch workers only.
    let reserved = berth
        .get("js.localhost", "/fetch?url=http://js.dispatch.internal/env")
        .await;
    assert_eq!(reserved.status, 502, "{}", reserved.text());
    assert!(
        reserved.text().starts_with("fetch failed:"),
        "{}",
        reserved.text()
    );
    assert!(
        berth.log().contains("reserved domain *.dispatch.internal"),
        "the denial names the rule"
    );

    // After all that, the script still serves.
    let ok = berth.get("js.localhost", "/").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "Hello from the JS tenant, /\n");
}

/// `fetch()` from JS, and warm reuse of a component whose module exports
/// `incomingHandler` (examples/js-hello/src/incoming-handler.js, built into
/// `js_tenant_reuse`). One server for both: each JS server compiles the
/// engine once.
#[tokio::test]
async fn js_fetch_and_warm_reuse_of_an_exported_handler() {
    let (upstream, hits) = counting_upstream().await;
    let berth = start_with_config(
        "[egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\n[limits]\ncpu_ms = 1000\n",
    );
    berth.deploy("default", "js", wasm("js_tenant")).await;
    let url = format!("http://{upstream}/x");
    let reply = berth
        .get("js.localhost", &format!("/fetch?url={url}"))
        .await;
    assert_eq!(reply.text(), "fetched 200: upstream ok", "{}", reply.text());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    for name in ["warm", "other"] {
        berth.deploy("default", name, wasm("js_tenant_reuse")).await;
    }
    let berth = &berth;
    // These requests are sequential, not a race: after each, wait until
    // the guest has finished and its instance is back (`settle`).
    let count = |script: &'static str| async move {
        let reply = berth.get(&format!("{script}.localhost"), "/count").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        berth.settle().await;
        reply.text()
    };
    // Not opted in: a fresh instance per request, like every script.
    for _ in 0..3 {
        assert_eq!(count("warm").await, "1\n");
    }
    // 2 MiB of host memory leaves 32 table slots; an instance ending a
    // request with more than 8 is retired, so the counter below also proves
    // the adapter drops its handles.
    let patch = berth
        .patch_settings(
            "default",
            "warm",
            json!({"isolation": "reuse", "limits": {"host_memory_mb": 2}}),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    assert!(
        patch.json()["result"].get("warnings").is_none(),
        "an exported handler is reused as asked: {}",
        patch.text()
    );
    // Opted in: the module's state carries over, one request at a time.
    assert_eq!(count("warm").await, "1\n");
    assert_eq!(count("warm").await, "2\n");
    assert_eq!(count("warm").await, "3\n");
    for _ in 0..20 {
        count("warm").await;
    }
    assert_eq!(count("warm").await, "24\n");
    // Another script with the same component never sees that instance,
    // opted in or not.
    assert_eq!(count("other").await, "1\n");
    let patch = berth
        .patch_settings("default", "other", json!({"isolation": "reuse"}))
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    let kept = berth.get("warm.localhost", "/remember?v=warm-secret").await;
    assert_eq!(kept.text(), "remembered warm-secret\n");
    berth.settle().await;
    let recall = berth.get("other.localhost", "/recall").await;
    assert_eq!(recall.text(), "recalled (nothing) 0\n");
    berth.settle().await;
    let recall = berth.get("warm.localhost", "/recall").await;
    assert_eq!(recall.text(), "recalled warm-secret 65536\n");

    // Promises settle inside a reused instance: fetch, request bodies.
    for round in 0..3 {
        let reply = berth
            .get("warm.localhost", &format!("/fetch?url={url}"))
            .await;
        assert_eq!(reply.text(), "fetched 200: upstream ok", "round {round}");
        berth.settle().await;
        let body = "x".repeat(100_000 + round);
        let echo = berth
            .send(
                berth
                    .data_request(Method::POST, "warm.localhost", "/echo")
                    .body(body.clone()),
            )
            .await;
        assert_eq!(echo.status, 200);
        assert_eq!(echo.header("x-method").as_deref(), Some("POST"));
        assert_eq!(echo.text(), body, "round {round}");
        berth.settle().await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // A throw or a limit ends the instance; the next request starts fresh.
    let thrown = berth.get("warm.localhost", "/throw").await;
    assert_eq!(thrown.status, 500, "{}", thrown.text());
    assert_eq!(thrown.error_code().as_deref(), Some("exception"));
    assert!(!thrown.text().contains("on purpose"), "{}", thrown.text());
    assert_eq!(count("warm").await, "1\n");
    assert_eq!(count("warm").await, "2\n");
    let spun = berth.get("warm.localhost", "/loop").await;
    assert_eq!(
        spun.error_code().as_deref(),
        Some("cpu-limit"),
        "{}",
        spun.text()
    );
    assert_eq!(count("warm").await, "1\n");

    // Concurrent requests each get an instance of their own (StarlingMonkey
    // must never see two requests interleave): twelve held in flight at
    // once (each awaiting its fetch at a gate) are twelve busy instances,
    // the one idle before among them. ("other" goes first, with its idle
    // instance, so every instance counted is one of "warm".)
    let deleted = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/other"))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    berth.settle().await;
    assert_eq!(berth.runtime_stats().await["warm_idle_instances"], 1);
    let (gated, gate) = gated_upstream().await;
    let burst: Vec<_> = (0..12)
        .map(|_| {
            tokio::spawn(
                berth
                    .data_request(
                        Method::GET,
                        "warm.localhost",
                        &format!("/fetch?url=http://{gated}/"),
                    )
                    .send(),
            )
        })
        .collect();
    eventually("twelve requests at the gate", || async {
        (gate.waiting() == 12).then_some(())
    })
    .await;
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["warm_idle_instances"], 0, "{stats}");
    assert!(
        stats["pool"]["component_instances"].as_u64() >= Some(12),
        "one busy instance per request in flight: {stats}"
    );
    gate.open();
    for request in burst {
        let reply = request.await.unwrap().unwrap();
        assert_eq!(reply.text().await.unwrap(), "fetched 200: upstream ok");
    }
    berth.settle().await;
    // Back in the pool: at most `reuse_max_idle` (default 4) stay.
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["warm_idle_instances"], 4, "{stats}");
}

fn start_js_dispatcher() -> Berth {
    start_with_config(&format!(
        r#"
[[dispatch]]
hostnames = ["*.platform.test", "shop.example.test"]
worker = "{dispatcher}"
namespace = "customers"
vars = {{ PLATFORM_DOMAIN = "platform.test", ADMIN_TOKEN = "{ADMIN_TOKEN}", CPU_MS = "100", MEMORY_MB = "48", WALL_MS = "120000" }}
"#,
        dispatcher = wasm_path("js_dispatcher").display(),
    ))
}

#[tokio::test]
async fn js_dispatcher_routes_to_rust_and_js_user_workers() {
    let berth = start_js_dispatcher();
    let rust = berth
        .upload_with_metadata(
            "customers",
            "rusty",
            wasm("hello"),
            json!({"vars": {"GREETING": "Hi from Rust!"}}),
        )
        .await;
    assert_eq!(rust.status, 200, "{}", rust.text());
    berth.deploy("customers", "jsy", wasm("js_tenant")).await;

    // Subdomain routing to a Rust and to a JS user worker.
    let reply = berth.get("rusty.platform.test", "/page?x=1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hi from Rust! You requested /page?x=1\n");
    let reply = berth.get("JSY.platform.test", "/hi").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello from the JS tenant, /hi\n");

    // The user worker sees the client's host and none of the
    // berth-dispatch-* headers; x-internal-* is stripped on the way out,
    // and the tenant's forged x-berth-error is not taken for a host error.
    let reply = berth.get("jsy.platform.test", "/headers").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.text();
    assert!(
        seen.starts_with("url: http://jsy.platform.test/headers\n"),
        "{seen}"
    );
    assert!(!seen.contains("berth-dispatch-"), "{seen}");
    assert_eq!(reply.header("x-internal-secret"), None);

    // Request bodies and methods pass through.
    let echo = berth
        .send(
            berth
                .data_request(Method::POST, "jsy.platform.test", "/echo")
                .body("posted body"),
        )
        .await;
    assert_eq!(echo.text(), "posted body");
    assert_eq!(echo.header("x-method").as_deref(), Some("POST"));

    // Per-call limits from berth-dispatch-* headers hold: the dispatcher's
    // CPU_MS=100 stops the loop and it maps the error to its JSON 429.
    let spin = berth.get("jsy.platform.test", "/loop").await;
    assert_eq!(spin.status, 429, "{}", spin.text());
    assert_eq!(
        spin.json(),
        json!({"error": "cpu-limit", "customer": "jsy"})
    );
    let bomb = berth.get("jsy.platform.test", "/bomb").await;
    assert_eq!(
        bomb.json(),
        json!({"error": "memory-limit", "customer": "jsy"})
    );

    // Unknown customers and missing auth get the dispatcher's JSON errors.
    let missing = berth.get("nobody.platform.test", "/").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"error": "worker-not-found", "customer": "nobody"})
    );
    let admin = berth.get("rusty.platform.test", "/admin/x").await;
    assert_eq!(admin.status, 401);
    let admin = berth
        .send(
            berth
                .data_request(Method::GET, "rusty.platform.test", "/admin/x")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(admin.status, 200, "{}", admin.text());

    // Custom hostnames go through the namespace's hostname table.
    let unmapped = berth.get("shop.example.test", "/").await;
    assert_eq!(unmapped.status, 404);
    assert_eq!(unmapped.json()["error"], "unknown-host");
    let mapped = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/customers/hostnames/shop.example.test",
                )
                .json(&json!({"script": "rusty"})),
        )
        .await;
    assert_eq!(mapped.status, 200, "{}", mapped.text());
    let shop = berth.get("shop.example.test", "/cart").await;
    assert_eq!(shop.text(), "Hi from Rust! You requested /cart\n");
}

#[tokio::test]
async fn a_second_js_upload_reuses_the_engine_compiled_for_the_first() {
    let berth = Berth::start();
    berth.deploy("default", "first", wasm("js_hello")).await;
    let after_first = berth.runtime_stats().await;
    let first_misses = after_first["compile_cache_misses"].as_u64().unwrap();
    assert!(
        first_misses > 1000,
        "the JS engine was compiled: {after_first}"
    );

    // A different JS script: its bytes differ, the SpiderMonkey engine in
    // it does not, so nearly every function comes from the cache.
    berth.deploy("default", "second", wasm("js_tenant")).await;
    let after_second = berth.runtime_stats().await;
    assert_eq!(
        after_second["compiles"], 2,
        "two distinct components: {after_second}"
    );
    let hits = after_second["compile_cache_hits"].as_u64().unwrap()
        - after_first["compile_cache_hits"].as_u64().unwrap();
    let misses = after_second["compile_cache_misses"].as_u64().unwrap() - first_misses;
    assert!(
        hits > 10 * misses.max(1),
        "second upload: {hits} functions from the cache, {misses} compiled"
    );
    assert_eq!(berth.get("second.localhost", "/").await.status, 200);
}
