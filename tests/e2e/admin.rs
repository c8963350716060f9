//! The admin API: authentication, validation of uploads and names, and the
//! namespace and script endpoints.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Berth, TOKEN, raw_head, wasm};

#[tokio::test]
async fn admin_requires_the_bearer_token() {
    let berth = Berth::start();
    let url = format!("http://{}/v1/namespaces", berth.admin);
    let client = reqwest::Client::new();

    for request in [
        client.get(&url),
        client.get(&url).bearer_auth("wrong-token"),
        client.get(&url).bearer_auth(format!("{TOKEN}x")),
        client.get(&url).header("authorization", TOKEN),
    ] {
        let reply = berth.send(request).await;
        assert_eq!(reply.status, 401, "{}", reply.text());
        let body = reply.json();
        assert_eq!(body["success"], false);
        assert_eq!(body["errors"][0]["code"], "unauthorized");
    }
    // Unauthenticated writes change nothing. (A fresh client: the server
    // closes a connection whose body it refused to read.)
    let reply = berth
        .send(
            reqwest::Client::new()
                .put(format!(
                    "http://{}/v1/namespaces/default/scripts/x",
                    berth.admin
                ))
                .body(wasm("hello")),
        )
        .await;
    assert_eq!(reply.status, 401);

    let ok = berth.send(client.get(&url).bearer_auth(TOKEN)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["success"], true);
    assert_eq!(ok.json()["result"][0]["name"], "default");
    assert_eq!(ok.json()["result"][0]["script_count"], 0);
}

#[tokio::test]
async fn invalid_components_are_rejected_and_nothing_is_stored() {
    let berth = Berth::start();
    // A good version exists first: a bad upload must not replace it.
    berth.deploy("default", "app", wasm("hello")).await;

    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage",
            b"this is not wasm at all".to_vec(),
            "failed to parse",
        ),
        ("core module", core_module, "component"),
        ("wrong world", wasm("cli"), "wasi:http/incoming-handler"),
        ("empty", Vec::new(), "the component is empty"),
    ];
    for (what, bytes, needle) in cases {
        for name in ["app", "fresh"] {
            let reply = berth.upload("default", name, bytes.clone()).await;
            assert_eq!(reply.status, 400, "{what}: {}", reply.text());
            let body = reply.json();
            assert_eq!(body["success"], false);
            let code = body["errors"][0]["code"].as_str().unwrap();
            assert!(
                code == "invalid_component" || code == "invalid_request",
                "{what}: {code}"
            );
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{what}: {message}");
        }
    }
    let fresh = berth
        .admin_get("/v1/namespaces/default/scripts/fresh")
        .await;
    assert_eq!(fresh.status, 404);
    assert_eq!(fresh.json()["errors"][0]["code"], "script_not_found");
    let list = berth.admin_get("/v1/namespaces/default/scripts").await;
    let names: Vec<_> = list.json()["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("app")]);
    let app = berth.admin_get("/v1/namespaces/default/scripts/app").await;
    assert_eq!(app.json()["result"]["version"], 1);
    let content = berth
        .admin_get("/v1/namespaces/default/scripts/app/content")
        .await;
    assert_eq!(content.body, wasm("hello"));
    let served = berth.get("app.localhost", "/").await;
    assert_eq!(served.status, 200);
}

#[tokio::test]
async fn bad_names_missing_namespaces_and_bad_bodies_get_clear_4xx() {
    let berth = Berth::start();
    for bad in [
        "UPPER",
        "-lead",
        "trail-",
        "under_score",
        "dot.ted",
        &"x".repeat(64),
    ] {
        let reply = berth.upload("default", bad, wasm("hello")).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["errors"][0]["code"], "invalid_name", "{bad}");
        let reply = berth
            .send(
                berth
                    .admin_request(Method::POST, "/v1/namespaces")
                    .json(&json!({"name": bad})),
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["errors"][0]["code"], "invalid_name");
    }
    let reply = berth.upload("nowhere", "app", wasm("hello")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["errors"][0]["code"], "namespace_not_found");

    let reply = berth
        .send(
            berth
                .admin_request(Method::POST, "/v1/namespaces")
                .body("{not json"),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["errors"][0]["code"], "invalid_request");

    let reply = berth
        .send(
            berth
                .admin_request(Method::PUT, "/v1/namespaces/default/scripts/app")
                .header("content-type", "text/plain")
                .body(wasm("hello")),
        )
        .await;
    assert_eq!(reply.status, 415, "{}", reply.text());
    assert_eq!(reply.json()["errors"][0]["code"], "unsupported_media_type");

    let reply = berth
        .upload_with_metadata(
            "default",
            "app",
            wasm("hello"),
            json!({"tags": ["a"], "colour": "blue"}),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["errors"][0]["code"], "invalid_metadata");
    assert!(reply.text().contains("colour"), "{}", reply.text());

    let reply = berth.admin_get("/v1/nothing-here").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["errors"][0]["code"], "not_found");
}

#[tokio::test]
async fn oversized_uploads_get_413_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[server]\nmax_upload_mb = 1\n").unwrap();
    let berth = Berth::start_with(dir, &["--config", config.to_str().unwrap()]);

    // Refused from the declared length alone, before any body byte is sent.
    for content_type in ["application/wasm", "multipart/form-data; boundary=x"] {
        let head = format!(
            "PUT /v1/namespaces/default/scripts/big HTTP/1.1\r\nhost: berth\r\n\
             authorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\n\r\n",
            1024 * 1024 + 1
        );
        let (status, answer) = raw_head(berth.admin, &head);
        assert_eq!(status, 413, "{answer}");
        assert!(
            answer.contains("payload_too_large") && answer.contains("max_upload_mb"),
            "{answer}"
        );
    }
    let reply = berth.admin_get("/v1/namespaces/default/scripts/big").await;
    assert_eq!(reply.status, 404);
    // Under the limit still works.
    berth.deploy("default", "small", wasm("hello")).await;
}

#[tokio::test]
async fn namespaces_and_scripts_round_trip() {
    let berth = Berth::start();
    berth.create_namespace("customers").await;
    let dup = berth
        .send(
            berth
                .admin_request(Method::POST, "/v1/namespaces")
                .json(&json!({"name": "customers"})),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json()["errors"][0]["code"], "namespace_exists");

    let reply = berth
        .upload_with_metadata(
            "customers",
            "shop",
            wasm("hello"),
            json!({"tags": ["plan-pro", "eu"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let info = reply.json()["result"].clone();
    assert_eq!(info["namespace"], "customers");
    assert_eq!(info["name"], "shop");
    assert_eq!(info["tags"], json!(["plan-pro", "eu"]));
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    assert!(info["created_on"].as_str().unwrap().ends_with('Z'));

    let ns = berth.admin_get("/v1/namespaces/customers").await;
    assert_eq!(ns.json()["result"]["script_count"], 1);
    let list = berth.admin_get("/v1/namespaces").await;
    assert_eq!(list.json()["result"].as_array().unwrap().len(), 2);

    // Scripts outside the default namespace are not reachable by the
    // built-in router.
    let reply = berth.get("shop.localhost", "/").await;
    assert_eq!(reply.status, 404);

    let delete = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/customers"))
        .await;
    assert_eq!(delete.status, 409, "{}", delete.text());
    assert_eq!(delete.json()["errors"][0]["code"], "namespace_not_empty");
    let delete = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/customers?force=true"))
        .await;
    assert_eq!(delete.status, 200, "{}", delete.text());
    let gone = berth.admin_get("/v1/namespaces/customers").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["errors"][0]["code"], "namespace_not_found");
    let scripts = berth
        .admin_get("/v1/namespaces/customers/scripts/shop")
        .await;
    assert_eq!(scripts.status, 404);

    let default = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default"))
        .await;
    assert_eq!(default.status, 409);
    assert_eq!(default.json()["errors"][0]["code"], "default_namespace");
}
