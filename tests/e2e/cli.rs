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
