//! The `berth` CLI as a client of a running server.

use crate::harness::{Berth, wasm_path};

fn ok(output: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "berth failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn cli_creates_namespaces_and_deploys_scripts() {
    let berth = Berth::start();
    let hello = wasm_path("hello");
    let hello = hello.to_str().unwrap();

    ok(berth.cli(&["namespace", "create", "staging"]));
    let list = ok(berth.cli(&["namespace", "list"]));
    assert!(
        list.contains("staging") && list.contains("default"),
        "{list}"
    );

    let out = ok(berth.cli(&[
        "deploy",
        "web",
        hello,
        "--tag",
        "plan-free",
        "--var",
        "GREETING=Howdy!",
    ]));
    assert!(out.contains("default/web"), "{out}");
    let reply = berth.get("web.localhost", "/cli").await;
    assert_eq!(reply.text(), "Howdy! You requested /cli\n");

    ok(berth.cli(&["deploy", "--namespace", "staging", "web", hello]));
    let scripts = ok(berth.cli(&["script", "list", "--namespace", "staging", "--json"]));
    let scripts: serde_json::Value = serde_json::from_str(&scripts).expect("--json prints JSON");
    assert_eq!(scripts[0]["name"], "web");

    let info = ok(berth.cli(&["script", "get", "web", "--json"]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["tags"], serde_json::json!(["plan-free"]));

    let settings = ok(berth.cli(&[
        "script",
        "settings",
        "web",
        r#"{"limits": {"cpu_ms": 75}}"#,
        "--json",
    ]));
    let settings: serde_json::Value = serde_json::from_str(&settings).unwrap();
    assert_eq!(settings["limits"]["cpu_ms"], 75);
    assert_eq!(settings["vars"]["GREETING"], "Howdy!");
    let shown = ok(berth.cli(&["script", "settings", "web"]));
    assert!(shown.contains("\"cpu_ms\": 75"), "{shown}");
    let bad = berth.cli(&["script", "settings", "web", r#"{"limits": {"cpu": 1}}"#]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cpu"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let ns = ok(berth.cli(&[
        "namespace",
        "settings",
        "staging",
        r#"{"egress": {"deny": ["*"]}}"#,
        "--json",
    ]));
    assert!(ns.contains("\"*\""), "{ns}");
    let limited = ok(berth.cli(&[
        "deploy",
        "capped",
        hello,
        "--limits",
        r#"{"memory_mb": 16}"#,
        "--json",
    ]));
    assert!(limited.contains("capped"), "{limited}");
    let capped = ok(berth.cli(&["script", "settings", "capped", "--json"]));
    assert!(capped.contains("\"memory_mb\": 16"), "{capped}");

    ok(berth.cli(&["script", "delete", "web"]));
    assert_eq!(berth.get("web.localhost", "/").await.status, 404);

    let failed = berth.cli(&["deploy", "bad", wasm_path("cli").to_str().unwrap()]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("invalid_component") || stderr.contains("incoming-handler"),
        "{stderr}"
    );

    let refused = berth.cli(&["namespace", "delete", "staging"]);
    assert!(!refused.status.success());
    ok(berth.cli(&["namespace", "delete", "staging", "--force"]));
}
