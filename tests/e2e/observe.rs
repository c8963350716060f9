//! Observability: metrics, live tail, health endpoints, JSON logs with
//! request ids.

use std::io::{BufRead, BufReader};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Berth, TOKEN, start_with_config, wasm, wasm_path};

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_reflect_a_known_sequence_of_requests() {
    let berth = Berth::start();
    berth.deploy("default", "m1", wasm("tenant")).await;
    let reply = berth
        .upload_with_metadata(
            "default",
            "m2",
            wasm("tenant"),
            json!({"limits": {"cpu_ms": 50}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    for _ in 0..3 {
        assert_eq!(berth.get("m1.localhost", "/echo").await.status, 200);
    }
    assert_eq!(berth.get("m1.localhost", "/trap").await.status, 500);
    for _ in 0..2 {
        assert_eq!(berth.get("m2.localhost", "/spin").await.status, 503);
    }

    let unauthenticated = reqwest::get(format!("http://{}/metrics", berth.admin))
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let reply = berth.admin_get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = reply.text();
    let req = |script: &str, status: &str, code: &str| {
        metric(
            &text,
            &format!(
                r#"berth_requests_total{{namespace="default",script="{script}",status="{status}",code="{code}"}}"#
            ),
        )
    };
    assert_eq!(req("m1", "2xx", ""), Some(3.0), "{text}");
    assert_eq!(req("m1", "5xx", "exception"), Some(1.0), "{text}");
    assert_eq!(req("m2", "5xx", "cpu-limit"), Some(2.0), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"berth_limit_hits_total{namespace="default",script="m2",kind="cpu"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"berth_request_duration_seconds_count{namespace="default",script="m1"}"#
        ),
        Some(4.0)
    );
    assert!(
        metric(
            &text,
            r#"berth_cpu_seconds_total{namespace="default",script="m2"}"#
        )
        .unwrap()
            >= 0.1,
        "{text}"
    );
    assert!(metric(&text, r#"berth_worker_cache_total{result="miss"}"#).unwrap() >= 2.0);
    assert!(
        text.contains("berth_pool_slots_in_use{kind=\"memories\"}"),
        "{text}"
    );
    assert!(text.contains("berth_admission_queue_depth"), "{text}");
    assert!(text.contains("berth_instantiation_seconds_count"), "{text}");
}

/// Opens a tail and waits for its greeting line.
pub(crate) async fn open_tail(berth: &Berth, ns: &str, script: &str) -> reqwest::Response {
    let mut response = berth
        .admin_request(
            Method::GET,
            &format!("/v1/namespaces/{ns}/scripts/{script}/tail"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    let hello: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(hello["tail"], format!("{ns}/{script}"));
    response
}

/// The next NDJSON event of a tail.
pub(crate) async fn next_event(tail: &mut reqwest::Response, buffer: &mut Vec<u8>) -> Value {
    loop {
        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            return serde_json::from_slice(&line).unwrap();
        }
        let chunk = tail.chunk().await.unwrap().expect("tail ended");
        buffer.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn tail_streams_events_and_guest_output_of_its_script_only() {
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"*.probe.test\"]\nworker = \"{}\"\nnamespace = \"other\"\n",
        wasm_path("probe").display()
    ));
    berth.deploy("default", "t1", wasm("tenant")).await;
    berth.deploy("default", "t2", wasm("tenant")).await;
    berth.deploy("other", "t1", wasm("tenant")).await;
    let mut tail = open_tail(&berth, "default", "t1").await;
    let mut other = open_tail(&berth, "other", "t1").await;
    let (mut buf, mut other_buf) = (Vec::new(), Vec::new());

    let reply = berth
        .get("t1.localhost", "/stdout?lines=2&secret=hunter2")
        .await;
    let request_id = reply.header("berth-request-id").unwrap();
    berth.get("t2.localhost", "/echo").await;
    let event = next_event(&mut tail, &mut buf).await;
    assert_eq!(event["namespace"], "default");
    assert_eq!(event["script"], "t1");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["path"], "/stdout", "no query string in the tail");
    assert_eq!(event["status"], 200);
    assert_eq!(event["outcome"], "ok");
    assert_eq!(event["request_id"], request_id.as_str());
    let logs = event["logs"].as_array().unwrap();
    assert!(
        logs.contains(&json!({"stream": "stdout", "line": "stdout line 0"})),
        "{logs:?}"
    );
    assert!(
        logs.contains(&json!({"stream": "stderr", "line": "stderr line 1"})),
        "{logs:?}"
    );
    assert!(!event.to_string().contains("hunter2"));

    // The t2 request never shows up here: the next event is t1's trap.
    berth.get("t1.localhost", "/trap").await;
    let trap = next_event(&mut tail, &mut buf).await;
    assert_eq!(
        (
            trap["script"].as_str(),
            trap["status"].as_u64(),
            trap["outcome"].as_str()
        ),
        (Some("t1"), Some(500), Some("exception"))
    );

    // Same script name, other namespace: its tail saw none of the above.
    berth.get("t1.probe.test", "/echo").await;
    let event = next_event(&mut other, &mut other_buf).await;
    assert_eq!(
        (event["namespace"].as_str(), event["path"].as_str()),
        (Some("other"), Some("/echo"))
    );

    let missing = berth
        .admin_get("/v1/namespaces/default/scripts/ghost/tail")
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn health_endpoints_need_no_token() {
    let berth = Berth::start();
    for path in ["/healthz", "/readyz"] {
        let reply = reqwest::get(format!("http://{}{path}", berth.admin))
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{path}");
    }
    let ready: Value = reqwest::get(format!("http://{}/readyz", berth.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    // Everything else still needs it.
    let other = reqwest::get(format!("http://{}/v1/runtime", berth.admin))
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    let _ = TOKEN;
}

#[tokio::test]
async fn json_logs_parse_and_carry_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let berth = Berth::start_with(dir, &["--log-format", "json"]);
    berth.deploy("default", "t", wasm("tenant")).await;
    let reply = berth.get("t.localhost", "/stdout?lines=1").await;
    let request_id = reply
        .header("berth-request-id")
        .expect("every response names its request");
    assert_eq!(request_id.len(), 16);
    berth.get("t.localhost", "/trap").await;

    let log = berth.log();
    let mut guest_line = None;
    for line in BufReader::new(log.as_bytes()).lines() {
        let line = line.unwrap();
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if value["fields"]["message"] == "stdout line 0" {
            guest_line = Some(value);
        }
    }
    let guest_line = guest_line.expect("guest output logged");
    assert_eq!(guest_line["target"], "berth::guest");
    assert_eq!(
        guest_line["span"]["request_id"],
        request_id.as_str(),
        "{guest_line}"
    );
}

/// `[runtime] profiler = "perfmap"` (docs/config.md): Wasmtime names every
/// compiled guest function in `/tmp/perf-<pid>.map`, where `perf report`
/// looks for them; without the key no map is written.
#[tokio::test]
async fn the_perfmap_profiler_names_guest_functions_for_perf() {
    for (config, mapped) in [("[runtime]\nprofiler = \"perfmap\"\n", true), ("", false)] {
        let berth = start_with_config(config);
        berth.deploy("default", "hello", wasm("hello")).await;
        assert_eq!(berth.get("hello.localhost", "/").await.status, 200);
        let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", berth.pid()));
        let text = std::fs::read_to_string(&map).unwrap_or_default();
        let _ = std::fs::remove_file(&map);
        // `<address> <size> <name>`, one per compiled function.
        let functions = text
            .lines()
            .filter(|line| line.starts_with("0x") && line.split(' ').count() >= 3)
            .count();
        assert_eq!(
            functions > 0,
            mapped,
            "{config:?}: {functions} functions in {}",
            map.display()
        );
    }
}
