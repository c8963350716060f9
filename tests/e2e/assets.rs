//! Static assets: upload, serving before the worker, ETag/304, html and
//! not-found handling, worker-first, de-duplication.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Berth, Reply, wasm};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Uploads `files` (path, content) as the script's assets, sending the
/// content of those whose hash is in `send`.
async fn upload(berth: &Berth, script: &str, files: &[(&str, &[u8])], send_all: bool) -> Reply {
    let manifest: serde_json::Map<String, Value> = files
        .iter()
        .map(|(path, content)| {
            (
                path.to_string(),
                json!({"sha256": sha(content), "size": content.len()}),
            )
        })
        .collect();
    let mut form =
        reqwest::multipart::Form::new().text("manifest", Value::Object(manifest).to_string());
    if send_all {
        let mut seen = std::collections::BTreeSet::new();
        for (_, content) in files {
            if seen.insert(sha(content)) {
                form = form.part(
                    sha(content),
                    reqwest::multipart::Part::bytes(content.to_vec()),
                );
            }
        }
    }
    let path = format!("/v1/namespaces/default/scripts/{script}/assets");
    berth
        .send(berth.admin_request(Method::PUT, &path).multipart(form))
        .await
}

const INDEX: &[u8] = b"<h1>home</h1>";
const ABOUT: &[u8] = b"<h1>about</h1>";
const CSS: &[u8] = b"body{color:red}";
const NOT_FOUND: &[u8] = b"<h1>not here</h1>";

#[tokio::test]
async fn assets_are_served_before_the_worker_with_etags() {
    let berth = Berth::start();
    berth.deploy("default", "site", wasm("tenant")).await;
    let files: [(&str, &[u8]); 4] = [
        ("/index.html", INDEX),
        ("/about.html", ABOUT),
        ("/static/app.css", CSS),
        ("/404.html", NOT_FOUND),
    ];
    let reply = upload(&berth, "site", &files, true).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["result"]["count"], 4);

    let home = berth.get("site.localhost", "/").await;
    assert_eq!(home.status, 200);
    assert_eq!(home.body, INDEX);
    assert_eq!(
        home.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(berth.get("site.localhost", "/about").await.body, ABOUT);
    let css = berth.get("site.localhost", "/static/app.css").await;
    assert_eq!(
        css.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    let etag = css.header("etag").unwrap();
    assert_eq!(etag, format!("\"{}\"", sha(CSS)));
    let cached = berth
        .send(
            berth
                .data_request(Method::GET, "site.localhost", "/static/app.css")
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let head = berth
        .send(berth.data_request(Method::HEAD, "site.localhost", "/about"))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("14"));

    // Not an asset: the worker answers (not_found_handling = none).
    let api = berth.get("site.localhost", "/echo").await;
    assert_eq!(api.header("x-fixture").as_deref(), Some("tenant"));
    // Writes never hit assets.
    let post = berth
        .send(berth.data_request(Method::POST, "site.localhost", "/about"))
        .await;
    assert_eq!(post.status, 404);
    assert_eq!(post.header("x-fixture").as_deref(), Some("tenant"));
}

#[tokio::test]
async fn not_found_handling_and_worker_first() {
    let berth = Berth::start();
    berth.deploy("default", "site", wasm("tenant")).await;
    let files: [(&str, &[u8]); 3] = [
        ("/index.html", INDEX),
        ("/about.html", ABOUT),
        ("/404.html", NOT_FOUND),
    ];
    assert_eq!(upload(&berth, "site", &files, true).await.status, 200);
    let settings = "/v1/namespaces/default/scripts/site/settings";
    let patch = |body: Value| berth.send(berth.admin_request(Method::PATCH, settings).json(&body));

    assert_eq!(
        patch(json!({"assets": {"not_found_handling": "single-page-application"}}))
            .await
            .status,
        200
    );
    let spa = berth.get("site.localhost", "/app/some/route").await;
    assert_eq!((spa.status, spa.body.as_slice()), (200, INDEX));

    assert_eq!(
        patch(json!({"assets": {"not_found_handling": "404-page"}}))
            .await
            .status,
        200
    );
    let missing = berth.get("site.localhost", "/nope").await;
    assert_eq!((missing.status, missing.body.as_slice()), (404, NOT_FOUND));

    assert_eq!(
        patch(json!({"assets": {"not_found_handling": "none", "run_worker_first": true}}))
            .await
            .status,
        200
    );
    let worker = berth.get("site.localhost", "/echo").await;
    assert_eq!(worker.header("x-fixture").as_deref(), Some("tenant"));
    // The worker has no /about route (404): the asset answers.
    let about = berth.get("site.localhost", "/about").await;
    assert_eq!((about.status, about.body.as_slice()), (200, ABOUT));

    assert_eq!(
        patch(json!({"assets": {"html_handling": "none"}}))
            .await
            .status,
        200
    );
    assert_eq!(
        berth.get("site.localhost", "/about").await.status,
        404,
        "exact paths only"
    );
    let bad = patch(json!({"assets": {"not_found_handling": "sometimes"}})).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("not_found_handling"), "{}", bad.text());
}

#[tokio::test]
async fn asset_content_is_deduplicated_and_checked() {
    let berth = Berth::start();
    berth.deploy("default", "one", wasm("hello")).await;
    berth.deploy("default", "two", wasm("hello")).await;
    let files: [(&str, &[u8]); 2] = [("/index.html", INDEX), ("/copy.html", INDEX)];
    let first = upload(&berth, "one", &files, true).await;
    assert_eq!(
        first.json()["result"]["uploaded"].as_array().unwrap().len(),
        1,
        "one blob for two paths"
    );
    // The same content for another script: the manifest alone is enough.
    let second = upload(&berth, "two", &files, false).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(berth.get("two.localhost", "/copy.html").await.body, INDEX);

    // Content nobody uploaded: refused, naming the hashes; nothing changes.
    let unknown: [(&str, &[u8]); 1] = [("/new.html", b"brand new")];
    let refused = upload(&berth, "two", &unknown, false).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["errors"][0]["code"], "missing_assets");
    assert_eq!(
        refused.json()["errors"][0]["missing"],
        serde_json::json!([sha(b"brand new")]),
        "the hashes to upload, as data"
    );
    assert!(
        refused.text().contains(&sha(b"brand new")),
        "{}",
        refused.text()
    );
    assert_eq!(berth.get("two.localhost", "/copy.html").await.body, INDEX);

    for (files, needle) in [
        (vec![("../etc/passwd", INDEX)], "asset path"),
        (vec![("/dir/", INDEX)], "asset path"),
    ] {
        let reply = upload(&berth, "two", &files, true).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.text().contains(needle), "{}", reply.text());
    }
    // A part whose name is not its hash.
    let form = reqwest::multipart::Form::new()
        .text(
            "manifest",
            json!({"/a.txt": {"sha256": sha(b"a"), "size": 1}}).to_string(),
        )
        .part(sha(b"a"), reqwest::multipart::Part::bytes(b"b".to_vec()));
    let mismatch = berth
        .send(
            berth
                .admin_request(Method::PUT, "/v1/namespaces/default/scripts/two/assets")
                .multipart(form),
        )
        .await;
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.text().contains("hashes to"), "{}", mismatch.text());

    // Deleting one script keeps the shared content for the other.
    berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/one"))
        .await;
    assert_eq!(berth.get("two.localhost", "/index.html").await.body, INDEX);
}

/// PUT a manifest (and the given contents) for `ns/script`.
async fn upload_to(
    berth: &Berth,
    ns: &str,
    script: &str,
    manifest: Value,
    contents: &[&[u8]],
) -> Reply {
    let mut form = reqwest::multipart::Form::new().text("manifest", manifest.to_string());
    for content in contents {
        form = form.part(
            sha(content),
            reqwest::multipart::Part::bytes(content.to_vec()),
        );
    }
    let path = format!("/v1/namespaces/{ns}/scripts/{script}/assets");
    berth
        .send(berth.admin_request(Method::PUT, &path).multipart(form))
        .await
}

#[tokio::test]
async fn a_manifest_names_only_content_its_own_namespace_uploaded() {
    let berth = Berth::start();
    berth.deploy("default", "site", wasm("hello")).await;
    let private: &[u8] = b"<h1>tenant A's private page</h1>";
    let reply = upload(&berth, "site", &[("/private.html", private)], true).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Another namespace that learned the hash cannot publish the content.
    berth.create_namespace("other").await;
    berth.deploy("other", "thief", wasm("hello")).await;
    let stolen = json!({"/stolen.html": {"sha256": sha(private), "size": private.len()}});
    let refused = upload_to(&berth, "other", "thief", stolen.clone(), &[]).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["errors"][0]["code"], "missing_assets");
    assert_eq!(
        refused.json()["errors"][0]["missing"],
        json!([sha(private)])
    );

    // Nor can any namespace serve a component's bytes by naming its hash.
    let code = wasm("hello");
    let component = json!({"/code.wasm": {"sha256": sha(&code), "size": code.len()}});
    let refused = upload_to(&berth, "default", "site", component, &[]).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["errors"][0]["code"], "missing_assets");

    // Uploading the content itself is always fine (and stored once).
    let own = upload_to(&berth, "other", "thief", stolen, &[private]).await;
    assert_eq!(own.status, 200, "{}", own.text());
}

#[tokio::test]
async fn assets_count_against_the_scripts_concurrency() {
    let berth = crate::harness::start_with_config("[limits]\nmax_queue = 0\n");
    let reply = berth
        .upload_with_metadata(
            "default",
            "site",
            wasm("tenant"),
            json!({"limits": {"max_concurrency": 1}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = upload(&berth, "site", &[("/index.html", INDEX)], true).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A worker request holds the script's only slot…
    let slow = tokio::spawn(
        berth
            .data_request(Method::GET, "site.localhost", "/sleep?ms=3000")
            .send(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while berth.runtime_stats().await["pool"]["component_instances"].as_u64() < Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // …so an asset of the same script waits its turn like any request.
    let refused = berth.get("site.localhost", "/").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("overloaded"));
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    let served = berth.get("site.localhost", "/").await;
    assert_eq!((served.status, served.body.as_slice()), (200, INDEX));
}
