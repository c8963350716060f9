//! Composition pipelines (docs/wit.md): a platform middleware
//! (`examples/security-headers`) composed with a tenant's component
//! (`examples/hello-handler`) by `wac plug` into `composed_hello.wasm`
//! (`make composed`, part of `make guests`) deploys and serves like any other
//! component.

use crate::harness::{Berth, ok, wasm, wasm_path};

/// What the middleware puts on every response.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("strict-transport-security", "max-age=63072000"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-middleware", "security-headers"),
];

/// The preamble of a component binary (a core module has version 1, layer 0).
const COMPONENT_PREAMBLE: &[u8] = b"\0asm\x0d\x00\x01\x00";

#[tokio::test]
async fn a_composed_middleware_and_tenant_deploy_and_serve_as_one_component() {
    let composed = wasm("composed_hello");
    assert!(
        composed.starts_with(COMPONENT_PREAMBLE),
        "composed_hello.wasm is not a component binary"
    );
    let berth = Berth::start();

    // Deployed exactly as the pipeline in docs/wit.md does: `berth deploy`.
    let path = wasm_path("composed_hello");
    let out = ok(berth.cli(&[
        "deploy",
        "shop",
        path.to_str().unwrap(),
        "--var",
        "GREETING=Welcome to the shop!",
    ]));
    assert!(out.contains("default/shop"), "{out}");
    // One script from one upload, stored as the very bytes wac wrote.
    let info = berth.admin_get("/v1/namespaces/default/scripts/shop").await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["result"]["version"], 1);
    assert_eq!(info.json()["result"]["size"], composed.len());
    let content = berth
        .admin_get("/v1/namespaces/default/scripts/shop/content")
        .await;
    assert_eq!(content.status, 200);
    assert!(
        content.body == composed,
        "stored bytes differ from the upload"
    );

    let reply = berth.get("shop.example.com", "/cart?item=7").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The tenant's answer (with the script's var, which reaches the tenant
    // inside the composition) …
    assert_eq!(
        reply.text(),
        "Welcome to the shop! You requested /cart?item=7\n"
    );
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    // … with the middleware's headers on it.
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(reply.header(name).as_deref(), Some(value), "{name}");
    }

    // Every request runs the whole pipeline, not just the first.
    for n in 0..5 {
        let reply = berth.get("shop.localhost", &format!("/n/{n}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.text(),
            format!("Welcome to the shop! You requested /n/{n}\n")
        );
        assert_eq!(
            reply.header("x-middleware").as_deref(),
            Some("security-headers")
        );
    }
}

#[tokio::test]
async fn the_headers_come_from_the_middleware_which_cannot_run_alone() {
    let berth = Berth::start();

    // The tenant's component also serves on its own: same body, no headers.
    berth
        .deploy("default", "plain", wasm("hello_handler"))
        .await;
    let plain = berth.get("plain.localhost", "/cart").await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.text(), "Hello from Berth! You requested /cart\n");
    for (name, _) in SECURITY_HEADERS {
        assert_eq!(plain.header(name), None, "{name} without the middleware");
    }

    // The middleware alone still imports berth:platform/handler, which no
    // host provides: refused at upload, nothing stored. The composed file
    // has that import filled in, so it is self-contained.
    let reply = berth
        .upload("default", "mw", wasm("security_headers"))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["success"], false);
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("berth:platform/handler"), "{message}");
    let stored = berth.admin_get("/v1/namespaces/default/scripts/mw").await;
    assert_eq!(stored.status, 404, "{}", stored.text());

    // The composition, deployed next to it, answers with the headers.
    berth
        .deploy("default", "shop", wasm("composed_hello"))
        .await;
    let reply = berth.get("shop.localhost", "/cart").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello from Berth! You requested /cart\n");
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(reply.header(name).as_deref(), Some(value), "{name}");
    }
}

#[test]
fn the_pieces_and_the_composition_target_their_worlds() {
    let tool = std::env::var("BERTH_WASM_TOOLS")
        .expect("BERTH_WASM_TOOLS must point at wasm-tools; run the tests with `make test`");
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let wit = wit.to_str().unwrap();
    let targets = |component: &str, world: &str| {
        let output = std::process::Command::new(&tool)
            .args(["component", "targets", wit])
            .arg(wasm_path(component))
            .args(["--world", world])
            .output()
            .expect("run wasm-tools");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for (component, world) in [
        ("security_headers", "middleware"),
        ("hello_handler", "inner-worker"),
        ("hello_handler", "user-worker"),
        // Proxy-shaped: the composition is a plain user worker.
        ("composed_hello", "user-worker"),
    ] {
        let (ok, text) = targets(component, world);
        assert!(ok, "{component} does not target {world}: {text}");
    }
    // The middleware alone is not a user worker (it imports the handler),
    // and a plain proxy component cannot be plugged into it.
    assert!(!targets("security_headers", "user-worker").0);
    assert!(!targets("hello", "inner-worker").0);
}
