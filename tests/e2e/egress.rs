//! Egress end to end through the real binary. Denied addresses are refused
//! before any connection is attempted, so these tests never send a packet
//! to a non-loopback address; allowed traffic goes to loopback upstreams
//! opened with `[egress] allow_private`. (Address classification with a
//! recording connector, DNS rebinding and public targets are unit-tested in
//! `host/src/egress`.)

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::harness::{Berth, start_with_config, upstream, upstream_echo_host, wasm, wasm_path};

fn fetch_path(url: &str) -> String {
    format!("/fetch?url={url}")
}

/// What the guest script at `host` says about fetching `url`.
async fn via(berth: &Berth, host: &str, path: String) -> String {
    berth.get(host, &path).await.text()
}

#[tokio::test]
async fn private_metadata_and_loopback_targets_are_denied_in_every_spelling() {
    // Every port open, so each denial below is the address policy's.
    let berth = start_with_config("[egress]\nports = [\"1-65535\"]\n");
    berth.deploy("default", "t", wasm("tenant")).await;
    let admin_port = berth.admin.port();
    let urls = [
        format!("http://127.0.0.1:{admin_port}/v1/namespaces"),
        format!("http://localhost:{admin_port}/"),
        format!("http://[::1]:{admin_port}/"),
        format!("http://[::ffff:127.0.0.1]:{admin_port}/"),
        format!("http://127.1:{admin_port}/"),
        format!("http://0x7f000001:{admin_port}/"),
        format!("http://2130706433:{admin_port}/"),
        format!("http://0177.0.0.1:{admin_port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:169.254.169.254]/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://172.16.0.1/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://100.64.0.1/".to_string(),
        "http://[fd00::1]/".to_string(),
        "http://[fe80::1]/".to_string(),
        "http://0.0.0.0/".to_string(),
        "http://[::]/".to_string(),
        "http://224.0.0.1/".to_string(),
        "http://255.255.255.255/".to_string(),
        "https://10.0.0.1/".to_string(),
    ];
    assert!(urls.len() >= 20);
    for url in &urls {
        let reply = berth.get("t.localhost", &fetch_path(url)).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        assert_eq!(reply.text(), "error\nErrorCode::HttpRequestDenied", "{url}");
    }
    let log = berth.log();
    assert!(log.contains("subrequest denied"), "{log}");
    assert!(
        log.contains("host policy: loopback 127.0.0.0/8"),
        "the log names the rule: {log}"
    );
    assert!(
        log.contains("link-local 169.254.0.0/16 (cloud metadata)"),
        "{log}"
    );
    assert!(
        !log.contains("/latest/meta-data"),
        "paths must not be logged"
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_denied() {
    let berth = start_with_config(
        "[egress]\nports = [\"1-65535\"]\nhosts = { \"sneaky.test\" = [\"127.0.0.1\"] }\n",
    );
    berth.deploy("default", "t", wasm("tenant")).await;
    let port = berth.admin.port();
    let reply = berth
        .get(
            "t.localhost",
            &fetch_path(&format!("http://sneaky.test:{port}/")),
        )
        .await;
    assert_eq!(reply.text(), "error\nErrorCode::HttpRequestDenied");
}

#[tokio::test]
async fn loopback_upstreams_need_allow_private() {
    let up = upstream(Duration::ZERO).await;
    let closed = start_with_config("[egress]\nports = [\"1-65535\"]\n");
    closed.deploy("default", "t", wasm("tenant")).await;
    let denied = closed
        .get("t.localhost", &fetch_path(&format!("http://{up}/")))
        .await;
    assert_eq!(denied.text(), "error\nErrorCode::HttpRequestDenied");

    let open =
        start_with_config("[egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\n");
    open.deploy("default", "t", wasm("tenant")).await;
    let allowed = open
        .get("t.localhost", &fetch_path(&format!("http://{up}/")))
        .await;
    assert_eq!(allowed.text(), "200\nupstream ok");
    // Only the listed network: ::1 stays closed.
    let v6 = open
        .get(
            "t.localhost",
            &fetch_path(&format!("http://[::1]:{}/", up.port())),
        )
        .await;
    assert_eq!(v6.text(), "error\nErrorCode::HttpRequestDenied");
}

#[tokio::test]
async fn namespace_and_script_rules_narrow_the_policy() {
    let up = upstream(Duration::ZERO).await;
    let berth = start_with_config(
        "[egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\nhosts = { \"api.test\" = [\"127.0.0.1\"], \"other.test\" = [\"127.0.0.1\"], \"blocked.test\" = [\"127.0.0.1\"] }\n",
    );
    let port = up.port();
    let reply = berth
        .upload_with_metadata(
            "default",
            "t",
            wasm("tenant"),
            json!({"egress": {"allow": ["api.test", "blocked.test"]}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let get = |host: &str| {
        via(
            &berth,
            "t.localhost",
            fetch_path(&format!("http://{host}:{port}/")),
        )
    };
    assert_eq!(get("api.test").await, "200\nupstream ok");
    assert_eq!(
        get("other.test").await,
        "error\nErrorCode::HttpRequestDenied"
    );

    // The namespace denies what the script allows: deny wins.
    let patch = berth
        .send(
            berth
                .admin_request(Method::PATCH, "/v1/namespaces/default/settings")
                .json(&json!({"egress": {"deny": ["blocked.test"]}})),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text());
    assert_eq!(
        get("blocked.test").await,
        "error\nErrorCode::HttpRequestDenied"
    );
    assert_eq!(get("api.test").await, "200\nupstream ok");
    assert!(
        berth
            .log()
            .contains("namespace egress.deny \\\"blocked.test\\\"")
            || berth
                .log()
                .contains("namespace egress.deny \"blocked.test\""),
        "{}",
        berth.log()
    );

    // Rules cannot open what the host denies.
    let widen = berth
        .send(
            berth
                .admin_request(Method::PATCH, "/v1/namespaces/default/scripts/t/settings")
                .json(&json!({"egress": {"allow": ["*"]}})),
        )
        .await;
    assert_eq!(widen.status, 200);
    let metadata = berth
        .get("t.localhost", &fetch_path("http://169.254.169.254/"))
        .await;
    assert_eq!(metadata.text(), "error\nErrorCode::HttpRequestDenied");

    let bad = berth
        .send(
            berth
                .admin_request(Method::PATCH, "/v1/namespaces/default/settings")
                .json(&json!({"egress": {"deny": ["a.*.b"]}})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("a.*.b"), "{}", bad.text());
}

#[tokio::test]
async fn a_guest_cannot_smuggle_another_host_header() {
    let echo = upstream_echo_host().await;
    let berth =
        start_with_config("[egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\n");
    berth.deploy("default", "t", wasm("tenant")).await;
    let reply = berth
        .get(
            "t.localhost",
            &format!("/fetch?url=http://{echo}/&host=admin.internal"),
        )
        .await;
    let text = reply.text();
    assert!(!text.contains("admin.internal"), "smuggled: {text}");
    // Either the guest was refused the header, or the upstream saw the
    // checked authority and nothing else.
    assert!(
        text.contains("Forbidden") || text == format!("200\nhost={echo}"),
        "{text}"
    );
    let plain = berth
        .get("t.localhost", &fetch_path(&format!("http://{echo}/")))
        .await;
    assert_eq!(plain.text(), format!("200\nhost={echo}"));
}

#[tokio::test]
async fn the_outbound_worker_sees_parameters_blocks_rewrites_and_is_filtered_itself() {
    let up = upstream(Duration::ZERO).await;
    let berth = start_with_config(&format!(
        r#"
[egress]
ports = ["1-65535"]
allow_private = ["127.0.0.1/32"]

[[dispatch]]
hostnames = ["*.platform.test"]
worker = "{dispatcher}"
namespace = "customers"
outbound_worker = "{outbound}"
vars = {{ PLATFORM_DOMAIN = "platform.test" }}
"#,
        dispatcher = wasm_path("dispatcher").display(),
        outbound = wasm_path("tenant").display(),
    ));
    berth.deploy("customers", "acme", wasm("tenant")).await;
    let host = "acme.platform.test";

    // Parameters arrive as berth-outbound-* headers (the outbound worker
    // here is the tenant fixture, whose /echo shows its request).
    let seen = via(&berth, host, fetch_path("http://api.example.com/echo")).await;
    let (status, body) = seen.split_once('\n').unwrap();
    assert_eq!(status, "200", "{seen}");
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    let headers = echo["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "berth-outbound-customer" && h[1] == "acme"),
        "{headers:?}"
    );
    assert_eq!(echo["authority"], "api.example.com");

    // No bypass: even an allowed upstream is answered by the outbound worker.
    let blocked = via(&berth, host, fetch_path(&format!("http://{up}/"))).await;
    assert!(
        blocked.starts_with("404\ntenant has no route /"),
        "{blocked}"
    );

    // It can forward with its own request, which passes the egress filter…
    let forwarded = via(
        &berth,
        host,
        format!("/fetch?url=http://x.test/fetch%3Furl%3Dhttp://{up}/"),
    )
    .await;
    assert_eq!(forwarded, "200\n200\nupstream ok");
    // …so it cannot reach what the platform denies either.
    let denied = via(
        &berth,
        host,
        "/fetch?url=http://x.test/fetch%3Furl%3Dhttp://10.0.0.1/".to_string(),
    )
    .await;
    assert_eq!(denied, "200\nerror\nErrorCode::HttpRequestDenied");
}

#[tokio::test]
async fn outbound_timeouts_cut_slow_upstreams() {
    let slow = upstream(Duration::from_secs(3600)).await;
    let berth = start_with_config(
        "[egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\nfirst_byte_timeout_ms = 300\n",
    );
    berth.deploy("default", "t", wasm("tenant")).await;
    // The upstream accepts but never answers: the first-byte timeout fires
    // long before the request's wall limit.
    let reply = berth
        .get("t.localhost", &fetch_path(&format!("http://{slow}/")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "error\nErrorCode::ConnectionReadTimeout");
}
