//! Per-tenant limits end to end: CPU, wall clock, memory, stack,
//! subrequests, body sizes, concurrency, their three levels, and that
//! failures never leak pool slots or hurt neighbours.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use futures::StreamExt;

use crate::containment::queue_depth;
use crate::harness::{
    Berth, drain, eventually, gated_upstream, raw_head, start_with_config, upstream, wasm,
    wasm_path,
};

/// Guests in these tests call upstreams on loopback.
const LOOPBACK: &str = "[egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\n";

async fn deploy_limited(berth: &Berth, name: &str, limits: serde_json::Value) {
    let reply = berth
        .upload_with_metadata("default", name, wasm("tenant"), json!({ "limits": limits }))
        .await;
    assert_eq!(reply.status, 200, "deploy {name}: {}", reply.text());
}

fn assert_error(reply: &crate::harness::Reply, status: u16, code: &str, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.error_code().as_deref(),
        Some(code),
        "{}",
        reply.text()
    );
    assert!(
        reply.text().starts_with(message),
        "{:?} does not start with {message:?}",
        reply.text()
    );
}

#[tokio::test]
async fn cpu_limit_stops_spinning_but_not_waiting_on_io() {
    let berth = start_with_config(LOOPBACK);
    let slow = upstream(Duration::from_secs(2)).await;
    deploy_limited(&berth, "t", json!({"cpu_ms": 100})).await;

    let spin = berth.get("t.localhost", "/spin").await;
    assert_error(&spin, 503, "cpu-limit", "Worker exceeded CPU time limit");

    // Two seconds of waiting on I/O under the same 100 ms CPU budget.
    let wait = berth
        .get("t.localhost", &format!("/fetch?url=http://{slow}/"))
        .await;
    assert_eq!(wait.status, 200, "{}", wait.text());
    assert_eq!(wait.text(), "200\nupstream ok");
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["cpu_limit_hits"], 1, "{stats}");
}

#[tokio::test]
async fn wall_limit_holds_while_the_guest_waits_in_a_host_call() {
    let berth = start_with_config(LOOPBACK);
    let stuck = upstream(Duration::from_secs(3600)).await;
    deploy_limited(&berth, "t", json!({"wall_ms": 500})).await;
    let reply = berth
        .get("t.localhost", &format!("/fetch?url=http://{stuck}/"))
        .await;
    assert_error(
        &reply,
        504,
        "wall-limit",
        "Worker exceeded wall-clock limit",
    );
    let sleeping = berth.get("t.localhost", "/sleep?ms=3600000").await;
    assert_error(
        &sleeping,
        504,
        "wall-limit",
        "Worker exceeded wall-clock limit",
    );
}

#[tokio::test]
async fn memory_bombs_and_unbounded_recursion_are_contained() {
    let berth = Berth::start();
    deploy_limited(&berth, "t", json!({"memory_mb": 16})).await;
    let bomb = berth.get("t.localhost", "/alloc?mb=64").await;
    assert_error(&bomb, 503, "memory-limit", "Worker exceeded memory limit");
    let fits = berth.get("t.localhost", "/alloc?mb=4").await;
    assert_eq!(fits.status, 200, "{}", fits.text());

    let recursion = berth.get("t.localhost", "/recurse").await;
    assert_error(&recursion, 500, "exception", "Worker threw an exception");
    let panic = berth.get("t.localhost", "/panic").await;
    assert_error(&panic, 500, "exception", "Worker threw an exception");
    // The reasons are in the log, not in the public answer.
    assert!(!panic.text().contains("panicked"), "{}", panic.text());
    let log = berth.log();
    assert!(log.contains("stack overflow"), "{log}");
    assert!(log.contains("tenant panicked on purpose"), "{log}");
}

#[tokio::test]
async fn subrequest_limit_lets_exactly_n_through() {
    let berth = start_with_config(LOOPBACK);
    let fast = upstream(Duration::ZERO).await;
    deploy_limited(&berth, "t", json!({"subrequests": 3})).await;
    let reply = berth
        .get(
            "t.localhost",
            &format!("/fetch-many?url=http://{fast}/&n=5"),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let lines: Vec<String> = reply.text().lines().map(str::to_owned).collect();
    assert_eq!(lines[..3], ["0 200", "1 200", "2 200"], "{lines:?}");
    for line in &lines[3..] {
        assert!(line.contains("HttpRequestDenied"), "{lines:?}");
    }
    // A guest that cannot cope with the denial fails with its own code.
    let dies = berth
        .get(
            "t.localhost",
            &format!("/fetch-or-die?url=http://{fast}/&n=4"),
        )
        .await;
    assert_error(
        &dies,
        500,
        "subrequest-limit",
        "Worker exceeded subrequest limit",
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_or_cut() {
    let berth = Berth::start();
    deploy_limited(
        &berth,
        "t",
        json!({"max_request_body_mb": 1, "max_response_body_mb": 1}),
    )
    .await;
    let big = vec![b'x'; 2 * 1024 * 1024];

    // Declared too large: refused from the head alone, before the guest
    // runs and before any body byte is sent.
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: t.localhost\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );
    let (status, answer) = raw_head(berth.data, &head);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.contains("x-berth-error: request-too-large"),
        "{answer}"
    );
    assert!(answer.contains("Request body exceeds"), "{answer}");

    // Chunked, no length: refused once the guest has read past the limit.
    // The client then goes quiet instead of writing into a closed socket.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big[..1536 * 1024]
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let stream = futures::stream::iter(chunks).chain(futures::stream::pending());
    let chunked = berth
        .send(
            berth
                .data_request(Method::POST, "t.localhost", "/echo")
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    assert_error(&chunked, 413, "request-too-large", "Request body exceeds");

    let small = berth
        .send(
            berth
                .data_request(Method::POST, "t.localhost", "/echo")
                .body(vec![b'x'; 1000]),
        )
        .await;
    assert_eq!(small.json()["body_bytes"], 1000);

    // An oversized response is cut off by aborting the connection: the
    // client sees its body fail, never a clean (truncated) end.
    let response = berth
        .data_request(Method::GET, "t.localhost", "/big?mb=3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-length"),
        None,
        "streamed: only an abort can tell the client the body is incomplete"
    );
    let (received, outcome) = drain(response).await;
    assert!(
        outcome.is_err(),
        "the body ended cleanly after {received} bytes"
    );
    assert!(received <= 1024 * 1024, "received {received} bytes");
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["response_body_limit_hits"], 1, "{stats}");
    assert_eq!(stats["request_body_limit_hits"], 2, "{stats}");
}

/// A request over `max_concurrency` waits in the queue and is served once
/// the slot is free; one over the queue is refused at once; a wait longer
/// than `queue_timeout_ms` ends in `overloaded` too.
#[tokio::test]
async fn excess_concurrency_waits_then_gets_overloaded() {
    let berth = start_with_config(&format!(
        "{LOOPBACK}[limits]\nmax_queue = 1\nqueue_timeout_ms = 60000\n"
    ));
    let (gated, gate) = gated_upstream().await;
    deploy_limited(&berth, "one", json!({"max_concurrency": 1})).await;
    // The only slot, held until the gate opens.
    let holder = tokio::spawn(
        berth
            .data_request(
                Method::GET,
                "one.localhost",
                &format!("/fetch?url=http://{gated}/"),
            )
            .send(),
    );
    eventually("the holder at the gate", || async {
        (gate.waiting() == 1).then_some(())
    })
    .await;
    let waiter = tokio::spawn(
        berth
            .data_request(Method::GET, "one.localhost", "/echo")
            .send(),
    );
    eventually("the waiter in the queue", || async {
        (queue_depth(&berth).await == 1.0).then_some(())
    })
    .await;
    // The queue is full: refused at once, while the waiter still waits.
    let refused = berth.get("one.localhost", "/echo").await;
    assert_error(&refused, 503, "overloaded", "Worker is overloaded");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert!(
        !waiter.is_finished(),
        "the queued request waits for the slot"
    );
    // The slot frees: the waiter is served.
    gate.open();
    let holder = holder.await.unwrap().unwrap();
    assert_eq!(holder.status(), 200);
    assert_eq!(holder.text().await.unwrap(), "200\nupstream ok");
    let waiter = waiter.await.unwrap().unwrap();
    assert_eq!(waiter.status(), 200, "served after waiting");

    // A queue timeout: the waiter gives up with `overloaded`.
    let timing_out = start_with_config(&format!(
        "{LOOPBACK}[limits]\nmax_queue = 1\nqueue_timeout_ms = 200\n"
    ));
    deploy_limited(&timing_out, "one", json!({"max_concurrency": 1})).await;
    gate.close();
    let holder = tokio::spawn(
        timing_out
            .data_request(
                Method::GET,
                "one.localhost",
                &format!("/fetch?url=http://{gated}/"),
            )
            .send(),
    );
    eventually("the holder at the gate", || async {
        (gate.waiting() == 1).then_some(())
    })
    .await;
    let queued = timing_out.get("one.localhost", "/echo").await;
    assert_error(&queued, 503, "overloaded", "Worker is overloaded");
    assert_eq!(queued.header("retry-after").as_deref(), Some("1"));
    assert_eq!(
        queue_depth(&timing_out).await,
        0.0,
        "its place is given back"
    );
    // Another script is unaffected.
    deploy_limited(&timing_out, "other", json!({})).await;
    assert_eq!(timing_out.get("other.localhost", "/echo").await.status, 200);
    gate.open();
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
}

/// docs/limits.md: "a wait cut by `wall_ms`: 504 `wall-limit`". The
/// queue would wait ten seconds; the request's own deadline ends it first.
#[tokio::test]
async fn a_queue_wait_cut_by_the_wall_limit_answers_504() {
    let berth = start_with_config(&format!(
        "{LOOPBACK}[limits]\nmax_queue = 4\nqueue_timeout_ms = 10000\n"
    ));
    let (gated, gate) = gated_upstream().await;
    deploy_limited(&berth, "one", json!({"max_concurrency": 1})).await;
    let holder = tokio::spawn(
        berth
            .data_request(
                Method::GET,
                "one.localhost",
                &format!("/fetch?url=http://{gated}/"),
            )
            .send(),
    );
    eventually("the holder at the gate", || async {
        (gate.waiting() == 1).then_some(())
    })
    .await;
    // From the next request on, the script's wall limit is 500 ms (the
    // holder keeps the 30 s it started with, and its slot).
    let patch = berth
        .patch_settings("default", "one", json!({"limits": {"wall_ms": 500}}))
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    let cut = berth.get("one.localhost", "/echo").await;
    assert_error(&cut, 504, "wall-limit", "Worker exceeded wall-clock limit");
    assert_eq!(queue_depth(&berth).await, 0.0, "its place is given back");
    gate.open();
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    assert_eq!(berth.get("one.localhost", "/echo").await.status, 200);
}

/// docs/limits.md, "Pool exhaustion": with every instance slot of the
/// pooling allocator taken, a request of any script gets 503 `overloaded`
/// with `Retry-After`, and is served once a slot is free.
#[tokio::test]
async fn a_full_instance_pool_answers_overloaded_with_retry_after() {
    let berth = start_with_config(&format!("{LOOPBACK}[runtime]\ninstances = 2\n"));
    let (gated, gate) = gated_upstream().await;
    deploy_limited(&berth, "holder", json!({})).await;
    deploy_limited(&berth, "other", json!({})).await;
    let holders: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                berth
                    .data_request(
                        Method::GET,
                        "holder.localhost",
                        &format!("/fetch?url=http://{gated}/"),
                    )
                    .send(),
            )
        })
        .collect();
    eventually("both slots taken", || async {
        (gate.waiting() == 2).then_some(())
    })
    .await;
    let full = berth.get("other.localhost", "/echo").await;
    assert_error(&full, 503, "overloaded", "Worker is overloaded");
    assert_eq!(full.header("retry-after").as_deref(), Some("1"));
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["pool"]["component_instances"], 2, "{stats}");
    assert_eq!(stats["pool"]["component_instances_capacity"], 2, "{stats}");
    gate.open();
    for holder in holders {
        assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(berth.get("other.localhost", "/echo").await.status, 200);
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_frees_the_slot() {
    let berth = start_with_config("[limits]\nmax_queue = 0\nwall_ms = 600000\n");
    deploy_limited(&berth, "gone", json!({"max_concurrency": 1})).await;
    // A guest that would hold the only slot for ten minutes before answering.
    let send = || {
        tokio::spawn(
            berth
                .data_request(Method::GET, "gone.localhost", "/sleep?ms=600000")
                .send(),
        )
    };
    let mut leaving = send();
    let mut held = false;
    for _ in 0..200 {
        let probe = berth.get("gone.localhost", "/sleep?ms=1").await;
        if probe.status == 503 {
            assert_eq!(probe.error_code().as_deref(), Some("overloaded"));
            held = true;
            break;
        }
        if leaving.is_finished() {
            // It arrived while a probe held the slot and was turned away
            // (no queue): send it again.
            leaving = send();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(held, "the sleeping request never took the slot");
    // Positive control for the pool gauges other tests expect at zero: the
    // sleeping guest holds an instance and a memory right now.
    let busy = berth.runtime_stats().await;
    assert!(
        busy["pool"]["component_instances"].as_u64().unwrap() >= 1,
        "{busy}"
    );
    assert!(busy["pool"]["memories"].as_u64().unwrap() >= 1, "{busy}");
    // The client gives up: its connection closes, which cancels the guest
    // and frees the slot long before the guest's ten minutes are over.
    leaving.abort();
    let mut freed = None;
    for _ in 0..400 {
        let probe = berth.get("gone.localhost", "/sleep?ms=1").await;
        if probe.status == 200 {
            freed = Some(probe.text());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(freed.as_deref(), Some("slept"), "the slot stayed taken");
    // Cancelled, not merely detached: its instance is gone from the pool.
    let mut instances = None;
    for _ in 0..400 {
        let stats = berth.runtime_stats().await;
        instances = stats["pool"]["component_instances"].as_u64();
        if instances == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        instances,
        Some(0),
        "the abandoned guest still holds an instance"
    );
}

#[tokio::test]
async fn settings_patch_changes_limits_without_redeploy() {
    let berth = Berth::start();
    deploy_limited(&berth, "t", json!({"cpu_ms": 100, "memory_mb": 16})).await;
    let path = "/v1/namespaces/default/scripts/t/settings";
    let settings = berth.admin_get(path).await.json()["result"].clone();
    assert_eq!(settings["limits"]["cpu_ms"], 100);
    assert_eq!(settings["limits"]["memory_mb"], 16);

    let capped = berth.get("t.localhost", "/alloc?mb=32").await;
    assert_error(&capped, 503, "memory-limit", "Worker exceeded memory limit");
    let patch = berth
        .send(
            berth
                .admin_request(Method::PATCH, path)
                .json(&json!({"limits": {"memory_mb": null}, "vars": {"VERSION": "p"}})),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    assert_eq!(patch.json()["result"]["limits"]["cpu_ms"], 100);
    assert_eq!(
        patch.json()["result"]["limits"]["memory_mb"],
        serde_json::Value::Null
    );
    let now = berth.get("t.localhost", "/alloc?mb=32").await;
    assert_eq!(now.status, 200, "{}", now.text());
    assert_eq!(now.header("x-version").as_deref(), Some("p"));
    let info = berth
        .admin_get("/v1/namespaces/default/scripts/t")
        .await
        .json();
    assert_eq!(
        info["result"]["version"], 1,
        "a settings change is not a new version"
    );

    for (body, needle) in [
        (json!({"limits": {"cpu": 1}}), "cpu"),
        (json!({"limits": {"cpu_ms": -5}}), "limits.cpu_ms"),
        (json!({"limits": {"max_concurrency": 0}}), "max_concurrency"),
        (json!({"nope": 1}), "nope"),
    ] {
        let reply = berth
            .send(berth.admin_request(Method::PATCH, path).json(&body))
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(reply.text().contains(needle), "{body}: {}", reply.text());
    }
    let unchanged = berth.admin_get(path).await.json()["result"].clone();
    assert_eq!(unchanged["limits"]["cpu_ms"], 100);
    let missing = berth
        .send(
            berth
                .admin_request(
                    Method::PATCH,
                    "/v1/namespaces/default/scripts/ghost/settings",
                )
                .json(&json!({})),
        )
        .await;
    assert_eq!(missing.status, 404);
    let bad_meta = berth
        .upload_with_metadata(
            "default",
            "u",
            wasm("tenant"),
            json!({"limits": {"wall": 5}}),
        )
        .await;
    assert_eq!(bad_meta.status, 400);
    assert!(
        bad_meta.text().contains("metadata.limits"),
        "{}",
        bad_meta.text()
    );
}

#[tokio::test]
async fn per_call_limits_tighten_but_never_loosen() {
    let probe = wasm_path("probe");
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"probe.test\"]\nworker = \"{}\"\nnamespace = \"probing\"\n",
        probe.display()
    ));
    let reply = berth
        .upload_with_metadata(
            "probing",
            "capped",
            wasm("tenant"),
            json!({"limits": {"cpu_ms": 100, "memory_mb": 16}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    berth.deploy("probing", "free", wasm("tenant")).await;

    let call = |path: &'static str| berth.get("probe.test", path);
    // Loosening is ignored: the script's limits still apply.
    assert_eq!(
        call("/call/capped/spin?cpu_ms=100000").await.text(),
        "err cpu-limit-exceeded"
    );
    assert_eq!(
        call("/call/capped/alloc?memory_mb=1000&q=--mb=32")
            .await
            .text(),
        "err memory-limit-exceeded"
    );
    // Tightening works on a script without limits of its own…
    assert_eq!(
        call("/call/free/alloc?memory_mb=16&q=--mb=32")
            .await
            .text()
            .lines()
            .next(),
        Some("err memory-limit-exceeded")
    );
    // …which otherwise runs under the host's (128 MiB) default.
    assert!(
        call("/call/free/alloc?q=--mb=32")
            .await
            .text()
            .starts_with("ok 200")
    );
}

#[tokio::test]
async fn a_thousand_failures_leak_nothing() {
    let berth = Berth::start();
    deploy_limited(&berth, "t", json!({"memory_mb": 8})).await;
    // Each failure with the code it must produce, not just any 5xx.
    let cases = [
        ("/trap", 500, "exception"),
        ("/panic", 500, "exception"),
        ("/no-response", 502, "no-response"),
        ("/alloc?mb=16", 503, "memory-limit"),
    ];
    for i in 0..1000 {
        let (path, status, code) = cases[i % cases.len()];
        let reply = berth.get("t.localhost", path).await;
        assert_eq!(reply.status, status, "request {i} {path}: {}", reply.text());
        assert_eq!(
            reply.error_code().as_deref(),
            Some(code),
            "request {i} {path}"
        );
    }
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["pool"]["component_instances"], 0, "{stats}");
    assert_eq!(stats["pool"]["memories"], 0, "{stats}");
    let ok = berth.get("t.localhost", "/echo").await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn warm_reuse_keeps_globals_per_script_and_discards_failed_instances() {
    let berth = start_with_config(LOOPBACK);
    deploy_limited(&berth, "warm", json!({})).await;
    deploy_limited(&berth, "other", json!({})).await;
    let berth = &berth;
    // Each count waits until the guest has finished: a reused instance
    // goes back to its pool just after the client has the response.
    let count = |host: &'static str| async move {
        let text = berth.get(host, "/count").await.text();
        berth.settle().await;
        text
    };
    // Default: a fresh instance per request.
    for _ in 0..3 {
        assert_eq!(count("warm.localhost").await, "1");
    }
    let settings = "/v1/namespaces/default/scripts/warm/settings";
    let patch = berth
        .send(
            berth
                .admin_request(Method::PATCH, settings)
                .json(&json!({"isolation": "reuse", "reuse_max_requests": 3})),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    let shown = patch.json();
    assert_eq!(shown["result"]["isolation"], "reuse", "{shown}");
    assert_eq!(shown["result"]["reuse_max_requests"], 3, "{shown}");
    assert!(
        shown["result"].get("warnings").is_none(),
        "applied as asked: {shown}"
    );
    assert_eq!(count("warm.localhost").await, "1");
    assert_eq!(count("warm.localhost").await, "2");
    // Another script never sees this instance.
    assert_eq!(count("other.localhost").await, "1");
    assert_eq!(count("warm.localhost").await, "3");
    // Worn out after 3 requests: a new instance.
    assert_eq!(count("warm.localhost").await, "1");
    // A trap discards the instance.
    assert_eq!(berth.get("warm.localhost", "/trap").await.status, 500);
    assert_eq!(count("warm.localhost").await, "1");
    // So does returning while still holding the response outparam: the
    // client gets no-response at once, not after the wall limit.
    let kept = berth.get("warm.localhost", "/keep-outparam").await;
    assert_eq!(kept.status, 502, "{}", kept.text());
    assert_eq!(kept.error_code().as_deref(), Some("no-response"));
    assert_eq!(count("warm.localhost").await, "1");
    assert_eq!(count("warm.localhost").await, "2");
    let bad = berth
        .send(
            berth
                .admin_request(Method::PATCH, settings)
                .json(&json!({"isolation": "shared"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("settings.isolation must be"),
        "{}",
        bad.text()
    );
    // The refused patch changed nothing.
    assert_eq!(count("warm.localhost").await, "3");

    // Idle instances are bounded per script: `reuse_max_idle`, default 4.
    // Eight requests held in flight at once take eight instances; once
    // they are done, four stay warm.
    let (gated, gate) = gated_upstream().await;
    for (max_idle, patch) in [
        (4, json!({"reuse_max_requests": 1000})),
        (2, json!({"reuse_max_idle": 2})),
    ] {
        let patched = berth.patch_settings("default", "warm", patch).await;
        assert_eq!(patched.status, 200, "{}", patched.text());
        gate.close();
        let burst: Vec<_> = (0..8)
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
        eventually("eight requests in flight", || async {
            (gate.waiting() == 8).then_some(())
        })
        .await;
        let busy = berth.runtime_stats().await;
        assert!(
            busy["pool"]["component_instances"].as_u64() >= Some(8),
            "{busy}"
        );
        gate.open();
        for request in burst {
            let reply = request.await.unwrap().unwrap();
            assert_eq!(reply.status(), 200);
            assert_eq!(reply.text().await.unwrap(), "200\nupstream ok");
        }
        until_stats(berth, "every guest finished", |s| {
            s["pool"]["component_instances"] == s["warm_idle_instances"]
        })
        .await;
        let stats = berth.runtime_stats().await;
        assert_eq!(stats["warm_idle_instances"], max_idle, "{stats}");
    }
}

/// Waits (up to 30 s) until `check` holds for the runtime stats.
async fn until_stats(berth: &Berth, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = berth.runtime_stats().await;
        if check(&stats) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {stats}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_redeploy_does_not_hand_out_fresh_concurrency_slots() {
    // No queue: a request over the limit is refused at once.
    let berth = start_with_config("[limits]\nmax_queue = 0\n");
    deploy_limited(&berth, "gate", json!({"max_concurrency": 1})).await;
    let slow = tokio::spawn(
        berth
            .data_request(Method::GET, "gate.localhost", "/sleep?ms=4000")
            .send(),
    );
    until_stats(&berth, "the slow request runs", |s| {
        s["pool"]["component_instances"].as_u64() >= Some(1)
    })
    .await;
    // Redeploy while it runs: the worker is reloaded, the gate is not.
    deploy_limited(&berth, "gate", json!({"max_concurrency": 1})).await;
    let refused = berth.get("gate.localhost", "/echo").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("overloaded"));
    // Once the old invocation is done, its slot is back.
    let finished = slow.await.unwrap().unwrap();
    assert_eq!(finished.status(), 200);
    assert_eq!(berth.get("gate.localhost", "/echo").await.status, 200);
}

#[tokio::test]
async fn requests_for_unknown_hosts_do_not_evict_loaded_workers() {
    let berth = Berth::start();
    berth.deploy("default", "kept", wasm("hello")).await;
    assert_eq!(berth.get("kept.localhost", "/").await.status, 200);
    let before = berth.runtime_stats().await;
    for i in 0..1100 {
        let reply = berth.get(&format!("nobody-{i}.localhost"), "/").await;
        assert_eq!(reply.error_code().as_deref(), Some("worker-not-found"));
    }
    assert_eq!(berth.get("kept.localhost", "/").await.status, 200);
    let after = berth.runtime_stats().await;
    assert_eq!(
        after["artifact_loads"], before["artifact_loads"],
        "the worker was not loaded again: {before} → {after}"
    );
    assert_eq!(after["compiles"], before["compiles"]);
}

#[tokio::test]
async fn idle_warm_instances_are_reaped_on_a_timer() {
    let berth = Berth::start();
    deploy_limited(&berth, "warm", json!({})).await;
    let patch = berth
        .send(
            berth
                .admin_request(
                    Method::PATCH,
                    "/v1/namespaces/default/scripts/warm/settings",
                )
                .json(&json!({"isolation": "reuse", "reuse_idle_ms": 2000})),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    // Warm: the second request finds the first one's instance.
    assert_eq!(berth.get("warm.localhost", "/count").await.text(), "1");
    assert_eq!(berth.get("warm.localhost", "/count").await.text(), "2");
    // Idle, it is dropped by the reaper with no request needed…
    until_stats(&berth, "the idle instance is reaped", |s| {
        s["pool"]["component_instances"] == 0
    })
    .await;
    // …so the next request starts fresh.
    assert_eq!(berth.get("warm.localhost", "/count").await.text(), "1");
    // Too long an idle time is refused.
    let bad = berth
        .send(
            berth
                .admin_request(
                    Method::PATCH,
                    "/v1/namespaces/default/scripts/warm/settings",
                )
                .json(&json!({"reuse_idle_ms": 3_600_000})),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(
        bad.text().contains("reuse_idle_ms must be at most"),
        "{}",
        bad.text()
    );
}

#[tokio::test]
async fn a_kv_bucket_holds_no_more_than_its_quota() {
    let berth = Berth::start();
    deploy_limited(&berth, "kvq", json!({"kv_max_keys": 2, "kv_max_mb": 1})).await;
    let berth = &berth;
    let kv = |path: &'static str| async move { berth.get("kvq.localhost", path).await.text() };
    assert_eq!(kv("/kv/set?key=a&value=1").await, "ok");
    assert_eq!(kv("/kv/set?key=b&value=2").await, "ok");
    // The third key is refused inside the guest (its request still answers).
    let third = kv("/kv/set?key=c&value=3").await;
    assert!(
        third.starts_with("error:") && third.contains("kv-limit"),
        "{third}"
    );
    assert!(third.contains("keys"), "refused for its key count: {third}");
    assert_eq!(kv("/kv/get?key=c").await, "(none)");
    // Bytes: 600 KiB fits a 1 MiB bucket, 600 KiB more under another key
    // does not (each alone would)…
    assert_eq!(kv("/kv/delete?key=a").await, "ok");
    assert_eq!(kv("/kv/delete?key=b").await, "ok");
    assert_eq!(kv("/kv/big?kb=600&key=big").await, "ok");
    let second = kv("/kv/big?kb=600&key=big2").await;
    assert!(
        second.starts_with("error:") && second.contains("kv-limit"),
        "{second}"
    );
    assert!(
        second.contains("bytes of keys and values"),
        "refused for its bytes, not its key count: {second}"
    );
    assert_eq!(kv("/kv/get?key=big2").await, "(none)");
    // …and a freed key slot takes a small value again.
    assert_eq!(kv("/kv/set?key=c&value=3").await, "ok");
    assert_eq!(kv("/kv/keys").await, "big,c");
}

#[tokio::test]
async fn spinning_tenants_leave_a_core_for_light_ones() {
    let berth = Berth::start();
    deploy_limited(&berth, "spinner", json!({"cpu_ms": 1000})).await;
    berth.deploy("default", "light", wasm("hello")).await;
    let spinners: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(
                berth
                    .data_request(Method::GET, "spinner.localhost", "/spin")
                    .send(),
            )
        })
        .collect();
    until_stats(&berth, "the spinners run", |s| {
        s["pool"]["component_instances"].as_u64() >= Some(8)
    })
    .await;
    // Light requests go through, every one, while the spinners take turns
    // in the heavy lane.
    for i in 0..100 {
        let reply = berth.get("light.localhost", "/").await;
        assert_eq!(reply.status, 200, "light request {i}: {}", reply.text());
    }
    assert!(
        spinners.iter().any(|s| !s.is_finished()),
        "the spinners were still running while the light requests completed"
    );
    // And the spinners still get their limit.
    for spinner in spinners {
        let reply = spinner.await.unwrap().unwrap();
        assert_eq!(reply.status(), 503);
        assert_eq!(reply.headers()["x-berth-error"], "cpu-limit");
    }
}

/// The measured hole: 400 outgoing requests with 2 MiB written into each
/// body, never sent, grew the host by +711 MiB under memory_mb = 64. The
/// buffered bytes count against the instance's host-memory budget now: the
/// request fails with `memory-limit`, the process grows by less than the
/// budget, and every byte is given back when the instance goes.
#[tokio::test]
async fn host_memory_a_guest_hoards_is_counted_and_given_back() {
    const MIB: u64 = 1 << 20;
    let berth = start_with_config("[limits]\nmemory_mb = 64\nwall_ms = 30000\n");
    berth.deploy("default", "hoarder", wasm("tenant")).await;
    // Loaded and warmed up: idle from here.
    let small = berth.get("hoarder.localhost", "/hoard?n=2&kb=64").await;
    assert_eq!(small.text(), "hoarded 2 bodies, 131072 bytes\n");
    until_stats(&berth, "nothing held", |s| s["host_memory_bytes"] == 0).await;
    // The gauge does count a live hoard: an instance that keeps its bodies
    // after answering shows them until it goes.
    let held = berth
        .get("hoarder.localhost", "/hoard?n=2&kb=64&hold_ms=3000")
        .await;
    assert_eq!(held.text(), "hoarded 2 bodies, 131072 bytes\n");
    until_stats(&berth, "the live hoard counted", |s| {
        s["host_memory_bytes"].as_u64().unwrap_or(0) >= 131072
    })
    .await;
    until_stats(&berth, "nothing held", |s| s["host_memory_bytes"] == 0).await;
    let idle = berth.proc_status_bytes("VmRSS");
    berth.reset_peak_rss();

    let reply = berth.get("hoarder.localhost", "/hoard?n=400&kb=2048").await;
    assert_error(&reply, 503, "memory-limit", "Worker exceeded memory limit");
    let peak = berth.proc_status_bytes("VmHWM");
    assert!(
        peak < idle + 64 * MIB,
        "the host grew by {} MiB (idle {} MiB, peak {} MiB)",
        (peak - idle) / MIB,
        idle / MIB,
        peak / MIB
    );
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["memory_limit_hits"], 1, "{stats}");
    // Everything the instance held is given back with it.
    until_stats(&berth, "the hoard given back", |s| {
        s["host_memory_bytes"] == 0
    })
    .await;

    // The budget is the instance's, not the host's: the next request of
    // the same tenant gets all of it again, and a modest hoard passes.
    let again = berth.get("hoarder.localhost", "/hoard?n=4&kb=2048").await;
    assert_eq!(again.text(), "hoarded 4 bodies, 8388608 bytes\n");
    // A script can lower its own budget below what it needs.
    deploy_limited(&berth, "frugal", json!({"host_memory_mb": 4})).await;
    let frugal = berth.get("frugal.localhost", "/hoard?n=4&kb=2048").await;
    assert_error(&frugal, 503, "memory-limit", "Worker exceeded memory limit");
}

/// Handles are host memory too: a guest that opens header maps without
/// end runs out of table slots (its share of the budget) and fails with
/// `memory-limit`, not with a million entries.
#[tokio::test]
async fn host_memory_counts_handles() {
    let berth = start_with_config("[limits]\nmemory_mb = 16\n");
    berth.deploy("default", "handles", wasm("tenant")).await;
    let reply = berth
        .get("handles.localhost", "/hoard-fields?n=100000")
        .await;
    assert_error(&reply, 503, "memory-limit", "Worker exceeded memory limit");
    let fine = berth.get("handles.localhost", "/hoard-fields?n=100").await;
    assert_eq!(fine.text(), "kept 100 header maps\n");
}

/// The quota counts bytes as stored: sled keeps an overwritten value on
/// disk until it cleans its segment, so re-setting one key again and again
/// (the measured case grew the store to 534 MiB) stops at the quota even
/// though only one value is live.
#[tokio::test]
async fn a_kv_bucket_cannot_grow_the_store_by_rewriting_one_key() {
    let berth = Berth::start();
    deploy_limited(&berth, "rewriter", json!({"kv_max_mb": 1})).await;
    let set = || async {
        berth
            .get("rewriter.localhost", "/kv/big?kb=400")
            .await
            .text()
    };
    assert_eq!(set().await, "ok", "400 KiB stored");
    assert_eq!(set().await, "ok", "800 KiB stored, 400 KiB live");
    let third = set().await;
    assert!(
        third.starts_with("error:") && third.contains("kv-limit"),
        "1.2 MiB would be stored: {third}"
    );
    assert!(third.contains("overwritten or deleted"), "{third}");
}

/// Busy processes beside the host (`yes > /dev/null`, two per core),
/// killed when dropped.
struct CpuPressure(Vec<std::process::Child>);

impl CpuPressure {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(
            (0..cores * 4)
                .map(|_| {
                    std::process::Command::new("yes")
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .expect("spawn yes")
                })
                .collect(),
        )
    }
}

impl Drop for CpuPressure {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU seconds the metrics charged to `script` so far.
async fn cpu_seconds(berth: &Berth, script: &str) -> f64 {
    let metrics = berth.admin_get("/metrics").await.text();
    let prefix = format!(r#"berth_cpu_seconds_total{{namespace="default",script="{script}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The CPU meter charges the guest's thread CPU time (past its first few
/// milliseconds), not wall time: when other processes keep every core
/// busy, a request that needs about a third of its cpu_ms is not cut,
/// however long it waits for a core. (Calibrated on the slowest of three
/// runs, because the rest of the suite loads the machine too; with four
/// busy processes per core a wall-clock meter would charge it ~5× its CPU
/// time and cut it.)
#[tokio::test]
async fn outside_cpu_pressure_does_not_push_a_modest_request_over_its_cap() {
    const CPU_MS: f64 = 200.0;
    let berth = Berth::start();
    deploy_limited(&berth, "calib", json!({"cpu_ms": 30000})).await;
    // Calibrate on this machine: CPU per unit of work, most of three.
    let mut per_unit: f64 = 0.0;
    for _ in 0..3 {
        let before = cpu_seconds(&berth, "calib").await;
        let reply = berth.get("calib.localhost", "/work?n=20").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let used = cpu_seconds(&berth, "calib").await - before;
        per_unit = per_unit.max(used * 1000.0 / 20.0);
    }
    let n = ((CPU_MS / 3.0) / per_unit).round().max(1.0) as u64;
    deploy_limited(&berth, "modest", json!({"cpu_ms": CPU_MS as u64})).await;
    let path = format!("/work?n={n}");
    assert_eq!(berth.get("modest.localhost", &path).await.status, 200);

    let pressure = CpuPressure::start();
    // Let the scheduler see the busy processes first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        let reply = berth.get("modest.localhost", &path).await;
        assert_eq!(
            reply.status,
            200,
            "run {i} ({n} units at ~{per_unit:.2} ms each, under {} busy processes): {}",
            pressure.0.len(),
            reply.text()
        );
    }
    drop(pressure);
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["cpu_limit_hits"], 0, "{stats}");
}

/// A guest past its first slice of CPU yields at most once per epoch tick
/// (5 ms by default): the yield happens inside Wasmtime's epoch libcall,
/// which the CPU meter's call hooks see as a host call spanning polls, and
/// once that counted as a host call that waited, the guest went back to the
/// heavy lane at every epoch check after — thousands of yields in a 60 ms
/// computation, ~100× its run time spent in the scheduler. The bound is
/// counted, not timed: yields ≤ ticks in the request's wall time, plus a
/// few for host calls that waited (207 in 14 ticks before the fix).
#[tokio::test]
async fn a_long_computation_yields_once_per_tick_not_at_every_epoch_check() {
    const TICK_MS: f64 = 5.0;
    let berth = Berth::start();
    deploy_limited(&berth, "long", json!({"cpu_ms": 30000})).await;
    let before = cpu_seconds(&berth, "long").await;
    let reply = berth.get("long.localhost", "/work?n=5").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let per_unit_ms = (cpu_seconds(&berth, "long").await - before) * 1000.0 / 5.0;
    // Enough work for ~60 ms of CPU: several slices past the first 10 ms.
    let n = (60.0 / per_unit_ms).ceil().max(1.0) as u64;
    let yields_before = berth.runtime_stats().await["cpu_yields"].as_u64().unwrap();
    let cpu_before = cpu_seconds(&berth, "long").await;
    let started = std::time::Instant::now();
    let reply = berth.get("long.localhost", &format!("/work?n={n}")).await;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let cpu_ms = (cpu_seconds(&berth, "long").await - cpu_before) * 1000.0;
    let yields = berth.runtime_stats().await["cpu_yields"].as_u64().unwrap() - yields_before;
    assert!(
        cpu_ms >= 20.0,
        "the request must run past its first slice to test anything: {cpu_ms:.1} ms"
    );
    assert!(yields >= 1, "{cpu_ms:.1} ms of CPU without a yield");
    // One yield per tick at most, plus one after each host call that
    // waited: the response's writes may (a few at most).
    let ticks = (wall_ms / TICK_MS).ceil() as u64 + 1;
    assert!(
        yields <= ticks + 3,
        "{yields} yields in {wall_ms:.0} ms ({ticks} ticks) for {cpu_ms:.1} ms of CPU"
    );
}

/// Freed instance memory is reset (host/vendor/README.md: the pooling
/// allocator keeps written pages resident and copies them back from the
/// image, resuming its dirty-page scan past 32 regions). `/scatter` dirties
/// every other page (one region per page: 256 regions at 2 MiB, all kept
/// resident; 1,536 at 12 MiB, past the default 2 MiB `memory_keep_resident_kb`, so
/// the rest is decommitted). No later request — of the same script or of
/// another with the same component, which takes the same warm slot — may
/// find the marker. The reuse case proves the scan would find it.
#[tokio::test]
async fn freed_instance_memory_is_reset_between_requests_and_tenants() {
    let berth = Berth::start();
    deploy_limited(&berth, "writer", json!({})).await;
    deploy_limited(&berth, "reader", json!({})).await;
    let mut marker = 0x5eed_0000_0000_u64;
    for mib in [2, 12] {
        for round in 0..3 {
            marker += 1;
            let query = format!("?marker={marker}&mib={mib}");
            let wrote = berth
                .get("writer.localhost", &format!("/scatter{query}"))
                .await;
            assert_eq!(wrote.status, 200, "{}", wrote.text());
            assert_eq!(wrote.text(), format!("scattered {} pages", mib * 128));
            for host in ["writer.localhost", "reader.localhost"] {
                let scan = berth.get(host, &format!("/scan{query}")).await;
                assert_eq!(scan.status, 200, "{}", scan.text());
                assert!(
                    scan.text().starts_with("found 0 in "),
                    "{mib} MiB round {round}, {host}: {}",
                    scan.text()
                );
            }
        }
    }

    // With reuse the same instance serves the scan: the marker is there.
    deploy_limited(&berth, "keeper", json!({})).await;
    let patch = berth
        .patch_settings("default", "keeper", json!({"isolation": "reuse"}))
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    let query = "?marker=77&mib=2";
    let wrote = berth
        .get("keeper.localhost", &format!("/scatter{query}"))
        .await;
    assert_eq!(wrote.status, 200, "{}", wrote.text());
    let scan = berth
        .get("keeper.localhost", &format!("/scan{query}"))
        .await;
    let found: u64 = scan
        .text()
        .strip_prefix("found ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", scan.text()));
    // The allocator may reuse a word or two of the freed block.
    assert!(
        found >= 128,
        "the scan sees a reused instance's pages: {}",
        scan.text()
    );
}

/// A reused instance that ends a request still holding more than a quarter
/// of its resource table (handles it never dropped) is retired instead of
/// reused, so leaks cannot add up across requests into a `memory-limit`
/// failure. `host_memory_mb = 2` leaves 32 table slots (half the budget at
/// 32 KiB each): five requests leaking 6 handles each would exhaust them.
#[tokio::test]
async fn reused_instances_that_leak_handles_are_retired_not_failed() {
    let berth = Berth::start();
    deploy_limited(&berth, "leaky", json!({"host_memory_mb": 2})).await;
    let patch = berth
        .patch_settings("default", "leaky", json!({"isolation": "reuse"}))
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    let count = || async { berth.get("leaky.localhost", "/count").await.text() };
    assert_eq!(count().await, "1");
    assert_eq!(count().await, "2", "reused while it holds nothing");
    for i in 0..12 {
        let hoard = berth.get("leaky.localhost", "/hoard-fields?n=6").await;
        assert_eq!(hoard.status, 200, "request {i}: {}", hoard.text());
        assert_eq!(hoard.text(), "kept 6 header maps\n");
    }
    // Ten leaked handles is more than a quarter of 32: that instance is
    // gone, the next request starts a new one.
    let hoard = berth.get("leaky.localhost", "/hoard-fields?n=10").await;
    assert_eq!(hoard.status, 200, "{}", hoard.text());
    assert_eq!(count().await, "1");
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["memory_limit_hits"], 0, "{stats}");
}
