//! The data plane: routing, responses, streaming, guest isolation and
//! failure codes.

use serde_json::json;

use crate::harness::{Berth, wasm};

#[tokio::test]
async fn upload_then_request_is_served_by_the_component() {
    let berth = Berth::start();
    let info = berth.deploy("default", "hello", wasm("hello")).await;
    assert_eq!(info["version"], 1);
    assert_eq!(info["size"], wasm("hello").len());

    let reply = berth.get("hello.example.com", "/some/path?q=1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "Hello from Berth! You requested /some/path?q=1\n"
    );
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn unknown_hosts_get_worker_not_found() {
    let berth = Berth::start();
    berth.deploy("default", "hello", wasm("hello")).await;

    let missing = berth.get("nobody.example.com", "/").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code().as_deref(), Some("worker-not-found"));
    assert!(missing.text().contains("nobody"), "{}", missing.text());
    assert_eq!(missing.text().lines().count(), 1);

    // An IP address has no subdomain label to route on.
    let by_ip = berth.get("127.0.0.1", "/").await;
    assert_eq!(by_ip.status, 404);
    assert_eq!(by_ip.error_code().as_deref(), Some("worker-not-found"));
}

#[tokio::test]
async fn admin_routes_are_absent_from_the_data_plane() {
    let berth = Berth::start();
    berth.deploy("default", "hello", wasm("hello")).await;
    for path in [
        "/v1/namespaces",
        "/v1/runtime",
        "/v1/namespaces/default/scripts/hello/content",
    ] {
        let host = berth.data.to_string();
        let request = berth
            .data_request(reqwest::Method::GET, &host, path)
            .bearer_auth(crate::harness::TOKEN);
        let reply = berth.send(request).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("worker-not-found"));
        assert!(
            !reply.text().contains("\"success\""),
            "{path} leaked the admin API"
        );
    }
    // And a script's own host cannot reach them either: the guest answers.
    let reply = berth.get("hello.localhost", "/v1/namespaces").await;
    assert_eq!(
        reply.text(),
        "Hello from Berth! You requested /v1/namespaces\n"
    );
}

#[tokio::test]
async fn guest_sees_only_its_own_vars_no_args_no_files() {
    let berth = Berth::start();
    let reply = berth
        .upload_with_metadata(
            "default",
            "echo",
            wasm("tenant"),
            json!({"vars": {"VERSION": "7", "PLAN": "pro"}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let body = vec![b'z'; 3 * 1024 * 1024 + 17];
    let request = berth
        .data_request(reqwest::Method::POST, "echo.example.com", "/echo?a=b")
        .header("x-custom", "yes")
        .body(body.clone());
    let reply = berth.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-version").as_deref(), Some("7"));
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "a=b");
    assert_eq!(echo["authority"], "echo.example.com");
    assert_eq!(echo["body_bytes"], body.len());
    assert_eq!(
        echo["env"],
        json!({"VERSION": "7", "PLAN": "pro"}),
        "host environment leaked"
    );
    assert_eq!(echo["args"], json!([]), "guest got arguments");
    assert_eq!(echo["root_entries"], -1, "guest can list a filesystem");
    let headers = echo["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(|h| h[0] == "x-custom" && h[1] == "yes"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn response_bodies_stream_while_the_guest_is_still_writing() {
    let berth = Berth::start();
    berth.deploy("default", "streamer", wasm("tenant")).await;
    // Two chunks 10 minutes apart: with buffering, no byte would arrive
    // before the request deadline cuts the response.
    let request = berth.data_request(
        reqwest::Method::GET,
        "streamer.localhost",
        "/stream?chunks=2&size=32&delay_ms=600000",
    );
    let mut response = request.send().await.expect("request");
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("first chunk")
        .expect("some bytes");
    assert!(first.starts_with(b"chunk 0\n"), "{first:?}");
    assert_eq!(first.len(), 32);
    drop(response);

    // Larger streams arrive complete and in order.
    let reply = berth
        .get(
            "streamer.localhost",
            "/stream?chunks=50&size=10000&delay_ms=1",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 500_000);
    assert!(reply.text().contains("chunk 49\n"));
}

#[tokio::test]
async fn a_trapping_guest_gets_500_exception_and_the_server_keeps_serving() {
    let berth = Berth::start();
    berth.deploy("default", "tenant", wasm("tenant")).await;
    berth.deploy("default", "hello", wasm("hello")).await;

    let trap = berth.get("tenant.localhost", "/trap").await;
    assert_eq!(trap.status, 500);
    assert_eq!(trap.error_code().as_deref(), Some("exception"));
    // The trap text stays private (it can carry a tenant's internals);
    // the log has it.
    assert!(!trap.text().contains("unreachable"), "{}", trap.text());
    assert_eq!(trap.text().trim_end().lines().count(), 1, "{}", trap.text());

    let panic = berth.get("tenant.localhost", "/panic").await;
    assert_eq!(panic.status, 500);
    assert_eq!(panic.error_code().as_deref(), Some("exception"));
    assert!(
        !panic.text().contains("tenant panicked on purpose"),
        "{}",
        panic.text()
    );
    let log = berth.log();
    assert!(log.contains("unreachable"), "{log}");
    assert!(log.contains("tenant panicked on purpose"), "{log}");

    let none = berth.get("tenant.localhost", "/no-response").await;
    assert_eq!(none.status, 502);
    assert_eq!(none.error_code().as_deref(), Some("no-response"));

    // The same script and its neighbours still serve.
    let echo = berth.get("tenant.localhost", "/echo").await;
    assert_eq!(echo.status, 200, "{}", echo.text());
    let hello = berth.get("hello.localhost", "/").await;
    assert_eq!(hello.status, 200);
}

#[tokio::test]
async fn two_hundred_concurrent_requests_across_twenty_scripts_all_succeed() {
    let berth = Berth::start();
    for i in 0..20 {
        let reply = berth
            .upload_with_metadata(
                "default",
                &format!("s{i}"),
                wasm("tenant"),
                json!({"vars": {"VERSION": i.to_string()}}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let berth = std::sync::Arc::new(berth);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let berth = berth.clone();
        tasks.push(tokio::spawn(async move {
            let script = n % 20;
            let reply = berth
                .get(&format!("s{script}.localhost"), &format!("/echo?n={n}"))
                .await;
            (script, n, reply)
        }));
    }
    for task in tasks {
        let (script, n, reply) = task.await.expect("task");
        assert_eq!(reply.status, 200, "request {n}: {}", reply.text());
        assert_eq!(
            reply.header("x-version"),
            Some(script.to_string()),
            "request {n} reached the wrong script"
        );
        assert_eq!(reply.json()["query"], format!("n={n}"));
    }
}

#[tokio::test]
async fn components_built_against_older_wasi_http_0_2_releases_are_served() {
    let berth = Berth::start();
    // old_wasi imports/exports wasi:http@0.2.4; the host implements 0.2.12.
    let info = berth.deploy("default", "old", wasm("old_wasi")).await;
    assert_eq!(info["version"], 1);
    let reply = berth.get("old.localhost", "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "old wasi\n");
}

#[tokio::test]
async fn guest_output_is_captured_attributed_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[runtime]\nstdio_capture_kb = 1\n").unwrap();
    let berth = Berth::start_with(dir, &["--config", config.to_str().unwrap()]);
    berth.deploy("default", "chatty", wasm("tenant")).await;
    let reply = berth.get("chatty.localhost", "/stdout?lines=3").await;
    assert_eq!(reply.text(), "printed 3");
    let log = berth.log();
    let line = log
        .lines()
        .find(|l| l.contains("stdout line 2"))
        .unwrap_or_else(|| panic!("guest output not logged: {log}"));
    assert!(
        line.contains("berth::guest")
            && line.contains("script=chatty")
            && line.contains("namespace=default"),
        "{line}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("stderr line 0") && l.contains("stream=\"stderr\"")),
        "{log}"
    );

    // 1 KiB per stream: a flood is cut and the drop is reported.
    let flood = berth.get("chatty.localhost", "/stdout?lines=5000").await;
    assert_eq!(flood.text(), "printed 5000");
    // The capture is logged when the instance is done, which can be just
    // after the response went out.
    let log = crate::harness::eventually("the dropped-output report", || async {
        let log = berth.log();
        log.contains("guest output over the capture limit was dropped")
            .then_some(log)
    })
    .await;
    assert!(!log.contains("stdout line 4999"), "capture is not bounded");
}
