//! The `berth` CLI as a client of a running server.

use crate::harness::{Berth, ok, wasm_path};

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

    // JavaScript is built by the host; this server has no JS engine, and
    // the CLI passes on the host's answer naming the key to set.
    let js_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/js-hello/src/worker.js");
    let js = berth.cli(&["deploy", "js", js_file.to_str().unwrap()]);
    assert!(!js.status.success());
    let stderr = String::from_utf8_lossy(&js.stderr);
    assert!(
        stderr.contains("js_unavailable") && stderr.contains("engine_dir"),
        "{stderr}"
    );
    // Neither a component nor JavaScript: refused before anything is sent.
    let other = berth.cli(&["deploy", "notes", "README.md"]);
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains("neither a .wasm component nor a .js module"),
        "{stderr}"
    );

    let refused = berth.cli(&["namespace", "delete", "staging"]);
    assert!(!refused.status.success());
    ok(berth.cli(&["namespace", "delete", "staging", "--force"]));
}

#[tokio::test]
async fn cli_manages_tags_secrets_hostnames_assets_and_kv() {
    let berth = Berth::start();
    let tenant = wasm_path("tenant");
    let tenant = tenant.to_str().unwrap();
    ok(berth.cli(&["deploy", "app", tenant, "--tag", "plan-pro"]));
    ok(berth.cli(&["deploy", "free", tenant, "--tag", "plan-free"]));

    ok(berth.cli(&["tags", "add", "app", "eu"]));
    let pro = ok(berth.cli(&["script", "list", "--tags", "eu:yes", "--json"]));
    let pro: serde_json::Value = serde_json::from_str(&pro).unwrap();
    assert_eq!(pro.as_array().unwrap().len(), 1);
    assert_eq!(pro[0]["tags"], serde_json::json!(["plan-pro", "eu"]));

    let mut put = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    put.args(["secret", "put", "app", "TOKEN"])
        .env("BERTH_ADMIN_URL", format!("http://{}", berth.admin))
        .env("BERTH_ADMIN_TOKEN", crate::harness::TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = put.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"from-stdin\n")
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(ok(berth.cli(&["secret", "list", "app"])).trim(), "TOKEN");
    let echo = berth.get("app.localhost", "/echo").await.json();
    assert_eq!(echo["env"]["TOKEN"], "from-stdin");

    ok(berth.cli(&["hostname", "put", "shop.example.org", "app"]));
    assert!(ok(berth.cli(&["hostname", "list"])).contains("shop.example.org → app"));
    assert_eq!(
        berth
            .get("shop.example.org", "/echo")
            .await
            .header("x-fixture")
            .as_deref(),
        Some("tenant")
    );

    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("css")).unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>cli</h1>").unwrap();
    std::fs::write(site.path().join("css/site.css"), "h1{}").unwrap();
    let published = ok(berth.cli(&["assets", "upload", "app", site.path().to_str().unwrap()]));
    assert!(
        published.contains("2 files published (2 new)"),
        "{published}"
    );
    assert_eq!(berth.get("app.localhost", "/").await.text(), "<h1>cli</h1>");
    assert_eq!(
        berth.get("app.localhost", "/css/site.css").await.text(),
        "h1{}"
    );
    let again = ok(berth.cli(&["assets", "upload", "free", site.path().to_str().unwrap()]));
    assert!(
        again.contains("(0 new)"),
        "content is de-duplicated: {again}"
    );

    berth.get("app.localhost", "/kv/set?key=k&value=v").await;
    assert_eq!(ok(berth.cli(&["kv", "list", "app"])).trim(), "k");
    assert_eq!(ok(berth.cli(&["kv", "get", "app", "k"])), "v");
    ok(berth.cli(&["kv", "delete", "app", "k"]));
    assert!(!berth.cli(&["kv", "get", "app", "k"]).status.success());

    let deleted = ok(berth.cli(&["tags", "delete-scripts", "plan-free:yes"]));
    assert!(deleted.contains("free"), "{deleted}");
    assert_eq!(berth.get("free.localhost", "/echo").await.status, 404);
}
