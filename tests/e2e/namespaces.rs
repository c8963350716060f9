//! Namespace features: tags and bulk operations, pagination, vars and
//! secrets, trusted/untrusted mode, hostname routing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Berth, start_with_config, wasm, wasm_path};

async fn send_json(
    berth: &Berth,
    method: Method,
    path: &str,
    body: Value,
) -> crate::harness::Reply {
    berth
        .send(berth.admin_request(method, path).json(&body))
        .await
}

fn names(reply: &crate::harness::Reply) -> Vec<String> {
    reply.json()["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text()))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tags_filter_bulk_delete_and_pagination() {
    let berth = Berth::start();
    for (name, tags) in [
        ("a", json!(["plan-pro", "eu"])),
        ("b", json!(["plan-free", "eu"])),
        ("c", json!(["plan-free", "us"])),
        ("d", json!(["plan-pro", "us"])),
        ("e", json!([])),
    ] {
        let reply = berth
            .upload_with_metadata("default", name, wasm("hello"), json!({"tags": tags}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let scripts = "/v1/namespaces/default/scripts";
    assert_eq!(
        names(&berth.admin_get(&format!("{scripts}?tags=eu:yes")).await),
        ["a", "b"]
    );
    assert_eq!(
        names(
            &berth
                .admin_get(&format!("{scripts}?tags=plan-free:yes,us:no"))
                .await
        ),
        ["b"]
    );
    assert_eq!(
        names(&berth.admin_get(&format!("{scripts}?tags=plan-pro")).await),
        ["a", "d"]
    );

    // Pagination: cursor until null.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{scripts}?limit=2&cursor={c}"),
            None => format!("{scripts}?limit=2"),
        };
        let reply = berth.admin_get(&path).await;
        let page = names(&reply);
        assert!(page.len() <= 2);
        seen.extend(page);
        match reply.json()["result_info"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    for bad in ["?limit=0", "?limit=5000", "?tags=a:maybe", "?tags=a%26b"] {
        let reply = berth.admin_get(&format!("{scripts}{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }

    // Tag edits.
    let tags = |name: &str| format!("{scripts}/{name}/tags");
    let replaced = send_json(&berth, Method::PUT, &tags("e"), json!(["x", "y", "x"])).await;
    assert_eq!(replaced.json()["result"], json!(["x", "y"]));
    let added = berth
        .send(berth.admin_request(Method::PUT, &format!("{}/z", tags("e"))))
        .await;
    assert_eq!(added.json()["result"], json!(["x", "y", "z"]));
    let removed = berth
        .send(berth.admin_request(Method::DELETE, &format!("{}/x", tags("e"))))
        .await;
    assert_eq!(removed.json()["result"], json!(["y", "z"]));
    let too_many = send_json(
        &berth,
        Method::PUT,
        &tags("e"),
        json!(["1", "2", "3", "4", "5", "6", "7", "8", "9"]),
    )
    .await;
    assert_eq!(too_many.status, 400, "{}", too_many.text());
    for bad in [
        json!(["a,b"]),
        json!(["a&b"]),
        json!([""]),
        json!("notalist"),
    ] {
        let reply = send_json(&berth, Method::PUT, &tags("e"), bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }
    let info = berth.admin_get(&format!("{scripts}/e")).await;
    assert_eq!(
        info.json()["result"]["tags"],
        json!(["y", "z"]),
        "failed edits change nothing"
    );

    // Bulk delete by tag returns the names; a filter is required.
    let refused = berth
        .send(berth.admin_request(Method::DELETE, scripts))
        .await;
    assert_eq!(refused.status, 400);
    let deleted = berth
        .send(berth.admin_request(Method::DELETE, &format!("{scripts}?tags=plan-free:yes")))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["result"]["deleted"], json!(["b", "c"]));
    assert_eq!(names(&berth.admin_get(scripts).await), ["a", "d", "e"]);
    assert_eq!(berth.get("b.localhost", "/").await.status, 404);
}

#[tokio::test]
async fn secrets_reach_the_guest_but_never_leave_the_host() {
    let berth = Berth::start();
    let reply = berth
        .upload_with_metadata(
            "default",
            "app",
            wasm("tenant"),
            json!({"vars": {"PLAN": "pro"}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let secret_value = "s3cr3t-value-that-must-not-leak";
    let base = "/v1/namespaces/default/scripts/app";
    let set = send_json(
        &berth,
        Method::PUT,
        &format!("{base}/secrets/API_KEY"),
        json!({"value": secret_value}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text());

    let echo = berth.get("app.localhost", "/echo").await.json();
    assert_eq!(
        echo["env"],
        json!({"PLAN": "pro", "API_KEY": secret_value}),
        "host env must not leak"
    );

    let listed = berth.admin_get(&format!("{base}/secrets")).await;
    assert_eq!(listed.json()["result"], json!([{"name": "API_KEY"}]));
    for path in [
        base.to_string(),
        format!("{base}/settings"),
        format!("{base}/secrets"),
        "/v1/namespaces/default/scripts".to_string(),
    ] {
        let text = berth.admin_get(&path).await.text();
        assert!(
            !text.contains(secret_value),
            "{path} leaked the secret: {text}"
        );
    }
    // A redeploy keeps secrets.
    berth.deploy("default", "app", wasm("tenant")).await;
    let echo = berth.get("app.localhost", "/echo").await.json();
    assert_eq!(echo["env"]["API_KEY"], secret_value);
    assert_eq!(
        echo["env"]["PLAN"], "pro",
        "a raw upload keeps the previous vars"
    );

    // A name is a var or a secret, not both.
    let clash = send_json(
        &berth,
        Method::PUT,
        &format!("{base}/secrets/PLAN"),
        json!({"value": "x"}),
    )
    .await;
    assert_eq!(clash.status, 400, "{}", clash.text());
    let clash = send_json(
        &berth,
        Method::PATCH,
        &format!("{base}/settings"),
        json!({"vars": {"API_KEY": "x"}}),
    )
    .await;
    assert_eq!(clash.status, 400, "{}", clash.text());
    let bad_name = send_json(
        &berth,
        Method::PUT,
        &format!("{base}/secrets/1BAD"),
        json!({"value": "x"}),
    )
    .await;
    assert_eq!(bad_name.status, 400);

    let gone = berth
        .send(berth.admin_request(Method::DELETE, &format!("{base}/secrets/API_KEY")))
        .await;
    assert_eq!(gone.status, 200);
    let again = berth
        .send(berth.admin_request(Method::DELETE, &format!("{base}/secrets/API_KEY")))
        .await;
    assert_eq!(again.status, 404);
    let echo = berth.get("app.localhost", "/echo").await.json();
    assert!(echo["env"].get("API_KEY").is_none());
    assert!(!berth.log().contains(secret_value), "the secret was logged");
}

#[tokio::test]
async fn untrusted_namespaces_strip_platform_headers_and_trusted_ones_get_them() {
    let berth =
        start_with_config("[server]\ntrusted_headers = { \"berth-region\" = \"test-1\" }\n");
    berth.deploy("default", "app", wasm("tenant")).await;
    let spoofed = |berth: &Berth| {
        berth
            .data_request(Method::GET, "app.localhost", "/echo")
            .header("berth-client-ip", "6.6.6.6")
            .header("berth-request-id", "forged")
            .header("x-berth-error", "forged")
            .header("x-keep", "yes")
    };
    let header = |echo: &Value, name: &str| {
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
    };

    let untrusted = berth.send(spoofed(&berth)).await.json();
    for name in [
        "berth-client-ip",
        "berth-request-id",
        "x-berth-error",
        "berth-region",
    ] {
        assert_eq!(
            header(&untrusted, name),
            None,
            "{name} reached an untrusted worker"
        );
    }
    assert_eq!(header(&untrusted, "x-keep").as_deref(), Some("yes"));

    let patch = send_json(
        &berth,
        Method::PATCH,
        "/v1/namespaces/default/settings",
        json!({"trusted": true}),
    )
    .await;
    assert_eq!(patch.json()["result"]["trusted"], true, "{}", patch.text());
    let trusted = berth.send(spoofed(&berth)).await.json();
    assert_eq!(
        header(&trusted, "berth-client-ip").as_deref(),
        Some("127.0.0.1")
    );
    let id = header(&trusted, "berth-request-id").unwrap();
    assert!(id.len() == 16 && id != "forged", "{id}");
    assert_eq!(header(&trusted, "berth-region").as_deref(), Some("test-1"));
    assert_eq!(header(&trusted, "x-berth-error"), None);
}

#[tokio::test]
async fn dispatched_user_workers_follow_the_namespace_mode() {
    let probe = wasm_path("probe");
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"*.untrusted.test\"]\nworker = \"{p}\"\nnamespace = \"open\"\n\n[[dispatch]]\nhostnames = [\"*.trusted.test\"]\nworker = \"{p}\"\nnamespace = \"inner\"\n",
        p = probe.display()
    ));
    let created = send_json(
        &berth,
        Method::PATCH,
        "/v1/namespaces/inner/settings",
        json!({"trusted": true}),
    )
    .await;
    assert_eq!(created.status, 200);
    berth.deploy("open", "app", wasm("tenant")).await;
    berth.deploy("inner", "app", wasm("tenant")).await;
    let has = |echo: &Value, name: &str| {
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == name)
    };
    let request = |host: &str| {
        berth
            .data_request(Method::GET, host, "/echo")
            .header("berth-client-ip", "6.6.6.6")
    };
    let open = berth.send(request("app.untrusted.test")).await.json();
    assert!(
        !has(&open, "berth-client-ip") && !has(&open, "berth-request-id"),
        "{open}"
    );
    let inner = berth.send(request("app.trusted.test")).await.json();
    let ip = inner["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "berth-client-ip")
        .unwrap()[1]
        .clone();
    assert_eq!(ip, "127.0.0.1");
    assert!(has(&inner, "berth-request-id"));
}

#[tokio::test]
async fn hostname_table_routes_custom_hostnames_with_wildcard_precedence() {
    let probe = wasm_path("probe");
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"probe.test\"]\nworker = \"{}\"\nnamespace = \"lookups\"\n",
        probe.display()
    ));
    // The built-in router serves `default`; the probe dispatch worker is
    // bound to `lookups` (a dispatch namespace the built-in router also
    // served would let clients bypass its dispatch worker). Both get the
    // same table.
    for ns in ["default", "lookups"] {
        for (name, greeting) in [("shop", "Shop!"), ("eu", "EU!"), ("any", "Any!")] {
            let reply = berth
                .upload_with_metadata(
                    ns,
                    name,
                    wasm("hello"),
                    json!({"vars": {"GREETING": greeting}}),
                )
                .await;
            assert_eq!(reply.status, 200);
        }
        for (host, script, status) in [
            ("shop.customer.com", "shop", 200),
            ("*.eu.customer.com", "eu", 200),
            ("*.customer.com", "any", 200),
            ("bad..host", "shop", 400),
            ("x.customer.com", "ghost", 404),
        ] {
            let path = format!("/v1/namespaces/{ns}/hostnames/{host}");
            let reply = send_json(&berth, Method::PUT, &path, json!({"script": script})).await;
            assert_eq!(reply.status, status, "{host}: {}", reply.text());
        }
    }
    for (host, expected) in [
        ("shop.customer.com", "Shop! You requested /\n"),
        ("SHOP.customer.com:8787", "Shop! You requested /\n"),
        ("blog.eu.customer.com", "EU! You requested /\n"),
        ("www.customer.com", "Any! You requested /\n"),
        // No entry: the first label still names the script.
        ("eu.elsewhere.org", "EU! You requested /\n"),
    ] {
        assert_eq!(berth.get(host, "/").await.text(), expected, "{host}");
    }

    // Dispatch workers see the same table.
    assert_eq!(
        berth
            .get("probe.test", "/lookup?host=a.eu.customer.com")
            .await
            .text(),
        "eu"
    );
    assert_eq!(
        berth
            .get("probe.test", "/lookup?host=nothing.org")
            .await
            .text(),
        "none"
    );

    let listed = berth.admin_get("/v1/namespaces/default/hostnames").await;
    assert_eq!(listed.json()["result"].as_array().unwrap().len(), 3);
    let deleted = berth
        .send(berth.admin_request(
            Method::DELETE,
            "/v1/namespaces/default/hostnames/*.customer.com",
        ))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(berth.get("www.customer.com", "/").await.status, 404);
    let again = berth
        .send(berth.admin_request(
            Method::DELETE,
            "/v1/namespaces/default/hostnames/*.customer.com",
        ))
        .await;
    assert_eq!(again.status, 404);
}

async fn kv(berth: &Berth, host: &str, path: String) -> String {
    berth.get(host, &path).await.text()
}

#[tokio::test]
async fn kv_buckets_are_per_script_and_persist_across_restarts() {
    let berth = Berth::start();
    berth.deploy("default", "one", wasm("tenant")).await;
    berth.deploy("default", "two", wasm("tenant")).await;
    assert_eq!(
        kv(
            &berth,
            "one.localhost",
            "/kv/set?key=color&value=blue".into()
        )
        .await,
        "ok"
    );
    assert_eq!(
        kv(&berth, "one.localhost", "/kv/set?key=size&value=xl".into()).await,
        "ok"
    );
    assert_eq!(
        kv(&berth, "one.localhost", "/kv/get?key=color".into()).await,
        "blue"
    );
    // The other script has its own, empty bucket.
    assert_eq!(
        kv(&berth, "two.localhost", "/kv/get?key=color".into()).await,
        "(none)"
    );
    assert_eq!(kv(&berth, "two.localhost", "/kv/keys".into()).await, "");
    assert_eq!(
        kv(
            &berth,
            "two.localhost",
            "/kv/set?key=color&value=red".into()
        )
        .await,
        "ok"
    );
    assert_eq!(
        kv(&berth, "one.localhost", "/kv/get?key=color".into()).await,
        "blue"
    );
    assert_eq!(
        kv(&berth, "one.localhost", "/kv/keys".into()).await,
        "color,size"
    );

    // Sizes are bounded, with an error naming the limit.
    let big = kv(&berth, "one.localhost", "/kv/big?kb=2048".into()).await;
    assert!(
        big.starts_with("error: value is 2097152 bytes; the limit is 1048576"),
        "{big}"
    );

    // The admin API sees the same bucket.
    let keys = berth
        .admin_get("/v1/namespaces/default/scripts/one/kv")
        .await;
    assert_eq!(
        keys.json()["result"],
        json!([{"name": "color"}, {"name": "size"}])
    );
    let page = berth
        .admin_get("/v1/namespaces/default/scripts/one/kv?limit=1")
        .await;
    assert_eq!(page.json()["result_info"]["cursor"], "color");
    let value = berth
        .admin_get("/v1/namespaces/default/scripts/one/kv/size")
        .await;
    assert_eq!(value.body, b"xl");
    let deleted = berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/one/kv/size"))
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        berth
            .admin_get("/v1/namespaces/default/scripts/one/kv/size")
            .await
            .status,
        404
    );

    // Persistence across a restart.
    let berth = berth.restart();
    assert_eq!(
        kv(&berth, "one.localhost", "/kv/get?key=color".into()).await,
        "blue"
    );
    assert_eq!(
        kv(&berth, "two.localhost", "/kv/get?key=color".into()).await,
        "red"
    );

    // Deleting a script deletes its bucket: a new script of the same name
    // starts empty.
    berth
        .send(berth.admin_request(Method::DELETE, "/v1/namespaces/default/scripts/one"))
        .await;
    berth.deploy("default", "one", wasm("tenant")).await;
    assert_eq!(kv(&berth, "one.localhost", "/kv/keys".into()).await, "");
}
