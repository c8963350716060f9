//! Scale-out: several `berth` hosts over one real `nats-server` (JetStream,
//! ephemeral loopback port, temp store). Every wait polls with a generous
//! deadline; how fast changes propagate is `make bench`'s business.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Berth, Nats, cluster_host, eventually, ok, wasm, wasm_path};
use crate::observe::{next_event, open_tail};

/// The body `host` answers for `path` on `script.localhost`, if 200.
async fn body(host: &Berth, script: &str, path: &str) -> Option<String> {
    let reply = host.get(&format!("{script}.localhost"), path).await;
    (reply.status == 200).then(|| reply.text())
}

/// Waits until `host` serves `script` with the fixture `marker` header.
async fn serves(host: &Berth, script: &str, fixture: &str) {
    eventually(&format!("{script} served by {fixture}"), || async {
        let reply = host.get(&format!("{script}.localhost"), "/echo").await;
        (reply.status == 200 && reply.header("x-fixture").as_deref() == Some(fixture)).then_some(())
    })
    .await
}

#[tokio::test]
async fn deploys_redeploys_and_deletes_reach_every_host() {
    let nats = Nats::start();
    let hosts: Vec<Berth> = (0..3).map(|_| cluster_host(&nats, "prop", "")).collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);

    a.deploy("default", "app", wasm("hello")).await;
    for host in [b, c] {
        let text = eventually("hello on every host", || body(host, "app", "/")).await;
        assert!(text.starts_with("Hello from Berth"), "{text}");
    }

    // Redeploy on B: A and C drop their cached worker and serve the new one.
    b.deploy("default", "app", wasm("tenant")).await;
    for host in [a, c] {
        serves(host, "app", "tenant").await;
    }
    for host in [a, b, c] {
        eventually("version 2 everywhere", || async {
            let meta = host.admin_get("/v1/namespaces/default/scripts/app").await;
            (meta.status == 200 && meta.json()["result"]["version"] == 2).then_some(())
        })
        .await;
    }

    // Delete on C: worker-not-found everywhere.
    let deleted = c
        .send(c.admin_request(
            reqwest::Method::DELETE,
            "/v1/namespaces/default/scripts/app",
        ))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    for host in [a, b, c] {
        eventually("app gone everywhere", || async {
            let reply = host.get("app.localhost", "/").await;
            (reply.status == 404 && reply.error_code().as_deref() == Some("worker-not-found"))
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn namespace_features_written_on_one_host_are_read_on_another() {
    let nats = Nats::start();
    let (a, b) = (
        cluster_host(&nats, "feat", ""),
        cluster_host(&nats, "feat", ""),
    );
    let tenant = wasm_path("tenant");
    let tenant = tenant.to_str().unwrap();

    // Namespace create on A, listed on B.
    ok(a.cli(&["namespace", "create", "shop"]));
    eventually("namespace on B", || async {
        ok(b.cli(&["namespace", "list"]))
            .contains("shop")
            .then_some(())
    })
    .await;

    // Deploy with tags and vars on A; tags, vars and settings read on B.
    ok(a.cli(&[
        "deploy",
        "app",
        tenant,
        "--tag",
        "plan-pro",
        "--var",
        "COLOR=teal",
    ]));
    ok(a.cli(&["tags", "add", "app", "eu"]));
    eventually("tags on B", || async {
        let listed = ok(b.cli(&["script", "list", "--tags", "eu:yes", "--json"]));
        let listed: Value = serde_json::from_str(&listed).unwrap();
        (listed.as_array().map(Vec::len) == Some(1)
            && listed[0]["tags"] == json!(["plan-pro", "eu"]))
        .then_some(())
    })
    .await;
    let settings = a
        .send(
            a.admin_request(
                reqwest::Method::PATCH,
                "/v1/namespaces/default/scripts/app/settings",
            )
            .json(&json!({"limits": {"cpu_ms": 40}})),
        )
        .await;
    assert_eq!(settings.status, 200, "{}", settings.text());
    eventually("settings on B", || async {
        let got = b
            .admin_get("/v1/namespaces/default/scripts/app/settings")
            .await;
        (got.json()["result"]["limits"]["cpu_ms"] == 40).then_some(())
    })
    .await;

    // A secret put on A reaches the guest on B (sealed with the cluster's key).
    let put = a
        .send(
            a.admin_request(
                reqwest::Method::PUT,
                "/v1/namespaces/default/scripts/app/secrets/TOKEN",
            )
            .json(&json!({"value": "s3cret"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    eventually("var and secret in the guest on B", || async {
        let echo = b.get("app.localhost", "/echo").await.json();
        (echo["env"]["TOKEN"] == "s3cret" && echo["env"]["COLOR"] == "teal").then_some(())
    })
    .await;

    // Hostnames put on A route on B.
    ok(a.cli(&["hostname", "put", "shop.example.org", "app"]));
    eventually("hostname on B", || async {
        let reply = b.get("shop.example.org", "/echo").await;
        (reply.header("x-fixture").as_deref() == Some("tenant")).then_some(())
    })
    .await;

    // Assets published on A are served by B.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>cluster</h1>").unwrap();
    ok(a.cli(&["assets", "upload", "app", site.path().to_str().unwrap()]));
    eventually("assets on B", || async {
        (body(&b, "app", "/").await.as_deref() == Some("<h1>cluster</h1>")).then_some(())
    })
    .await;

    // Guest KV written through A is read through B.
    assert_eq!(
        body(&a, "app", "/kv/set?key=k&value=v1").await.as_deref(),
        Some("ok")
    );
    assert_eq!(
        body(&b, "app", "/kv/get?key=k").await.as_deref(),
        Some("v1")
    );
    assert_eq!(body(&b, "app", "/kv/keys").await.as_deref(), Some("k"));
    assert_eq!(ok(b.cli(&["kv", "get", "app", "k"])), "v1");

    // Namespace delete on A: gone on B, and so are its scripts.
    ok(a.cli(&["deploy", "-n", "shop", "cart", tenant]));
    eventually("cart on B", || async {
        (b.admin_get("/v1/namespaces/shop/scripts/cart").await.status == 200).then_some(())
    })
    .await;
    let gone = a
        .send(a.admin_request(reqwest::Method::DELETE, "/v1/namespaces/shop?force=true"))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    eventually("namespace gone on B", || async {
        let list = ok(b.cli(&["namespace", "list"]));
        (!list.contains("shop")).then_some(())
    })
    .await;
    assert_eq!(
        b.admin_get("/v1/namespaces/shop/scripts/cart").await.status,
        404
    );
}

#[tokio::test]
async fn tail_on_one_host_sees_requests_served_by_another() {
    let nats = Nats::start();
    let (b, c) = (
        cluster_host(&nats, "tail", ""),
        cluster_host(&nats, "tail", ""),
    );
    b.deploy("default", "t", wasm("tenant")).await;
    serves(&c, "t", "tenant").await;
    let mut tail = open_tail(&b, "default", "t").await;
    let mut buffer = Vec::new();
    // C learns of B's tail within about a second; until then its events
    // are not sent, so keep requesting until one arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let requests = {
        let (stop, url) = (stop.clone(), format!("http://{}/stdout?lines=1", c.data));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let _ = client.get(&url).header("host", "t.localhost").send().await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let event = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        next_event(&mut tail, &mut buffer),
    )
    .await
    .expect("an event from C reaches B's tail");
    stop.store(true, Ordering::Relaxed);
    let _ = requests.await;
    assert_eq!(event["script"], "t");
    assert_eq!(event["path"], "/stdout");
    assert_eq!(event["status"], 200);
    assert!(
        event["logs"].to_string().contains("stdout line 0"),
        "{event}"
    );
}

#[tokio::test]
async fn concurrent_deploys_from_two_hosts_converge_on_one_version() {
    let nats = Nats::start();
    let (a, b) = (
        cluster_host(&nats, "race", ""),
        cluster_host(&nats, "race", ""),
    );
    let rounds = 6;
    let mut uploads = Vec::new();
    for _ in 0..rounds {
        for (host, fixture) in [(&a, "hello"), (&b, "tenant")] {
            uploads.push(host.upload("default", "app", wasm(fixture)));
        }
    }
    let replies = futures::future::join_all(uploads).await;
    let mut versions: Vec<u64> = replies
        .iter()
        .map(|r| {
            assert_eq!(
                r.status,
                200,
                "every upload succeeds (retrying its compare-and-set): {}",
                r.text()
            );
            r.json()["result"]["version"].as_u64().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        (1..=2 * rounds as u64).collect::<Vec<_>>(),
        "one version per upload"
    );
    let final_sha = eventually("both hosts agree", || async {
        let x = a
            .admin_get("/v1/namespaces/default/scripts/app")
            .await
            .json()["result"]
            .clone();
        let y = b
            .admin_get("/v1/namespaces/default/scripts/app")
            .await
            .json()["result"]
            .clone();
        (x["version"] == 2 * rounds as u64 && x == y).then(|| x["sha256"].clone())
    })
    .await;
    let winner = replies
        .iter()
        .find(|r| r.json()["result"]["version"] == 2 * rounds as u64)
        .unwrap();
    assert_eq!(winner.json()["result"]["sha256"], final_sha);
    // And both serve the same component.
    let fixture_a = a.get("app.localhost", "/echo").await.header("x-fixture");
    let fixture_b = eventually("B serves the final version", || async {
        let f = b.get("app.localhost", "/echo").await.header("x-fixture");
        (f == fixture_a).then_some(f)
    })
    .await;
    assert_eq!(fixture_a, fixture_b);
}

#[tokio::test]
async fn a_killed_host_loses_nothing_and_catches_up_while_the_others_serve() {
    let nats = Nats::start();
    let a = cluster_host(&nats, "kill", "");
    let b = cluster_host(&nats, "kill", "");
    let c = cluster_host(&nats, "kill", "");
    a.deploy("default", "app", wasm("hello")).await;
    for host in [&b, &c] {
        eventually("hello everywhere", || body(host, "app", "/")).await;
    }
    // Load on A and C while B dies (both fixtures answer /echo with 200).
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for addr in [a.data, c.data] {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .get(format!("http://{addr}/echo"))
                    .header("host", "app.localhost")
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                let counter = if ok { &served } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // B acknowledged a deploy just before it dies: it is in JetStream.
    b.deploy("default", "second", wasm("tenant")).await;
    let b = b.crash_and_restart();
    // A deploy while B was down (and restarting) reaches it too.
    a.deploy("default", "app", wasm("tenant")).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "A and C kept answering");
    assert!(served.load(Ordering::Relaxed) > 0);
    serves(&b, "second", "tenant").await;
    serves(&b, "app", "tenant").await;
    serves(&c, "second", "tenant").await;
}

#[tokio::test]
async fn hosts_serve_from_cache_while_nats_is_down_and_catch_up_after() {
    let nats = Nats::start();
    let (a, b) = (
        cluster_host(&nats, "down", ""),
        cluster_host(&nats, "down", ""),
    );
    a.deploy("default", "app", wasm("hello")).await;
    eventually("B serves app", || body(&b, "app", "/")).await;
    let mut nats = nats;
    nats.stop();

    // Cached scripts keep being served on both hosts.
    for host in [&a, &b] {
        let text = body(host, "app", "/").await.expect("served from cache");
        assert!(text.starts_with("Hello from Berth"));
    }
    // Admin writes fail fast and say why.
    let refused = a.upload("default", "app", wasm("tenant")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["errors"][0]["code"], "store_unavailable");
    // The code's earlier spelling, in the header every Berth error carries.
    assert_eq!(refused.error_code().as_deref(), Some("store-unavailable"));
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));

    // NATS back (same port and store): a new deploy propagates.
    let _nats = nats.restart();
    let deployed = eventually("admin writes work again", || async {
        let reply = a.upload("default", "app", wasm("tenant")).await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert_eq!(deployed.json()["result"]["version"], 2);
    serves(&b, "app", "tenant").await;
}

#[tokio::test]
async fn shared_artifacts_load_only_with_a_valid_mac() {
    let nats = Nats::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("artifact.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let with_key = format!("artifact_key_file = {:?}", key.display().to_string());
    let a = cluster_host(&nats, "art", &with_key);
    a.deploy("default", "app", wasm("hello")).await;

    // B loads A's artifact instead of compiling.
    let b = cluster_host(&nats, "art", &with_key);
    eventually("B serves app", || body(&b, "app", "/")).await;
    let stats = b.runtime_stats().await;
    assert_eq!(stats["compiles"], 0, "{stats}");
    assert!(stats["artifact_loads"].as_u64().unwrap() >= 1, "{stats}");

    // Tamper with the shared artifact: a host without it cached refuses it
    // and compiles for itself.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let objects = js.get_object_store("art-blobs").await.unwrap();
    let mut list = objects.list().await.unwrap();
    let mut tampered = 0;
    while let Some(info) = list.next().await {
        let info = info.unwrap();
        if info.name.starts_with("artifact/") {
            let mut forged = vec![0u8; 32];
            forged.extend_from_slice(b"\x7fELF not what it claims");
            objects
                .put(info.name.as_str(), &mut forged.as_slice())
                .await
                .unwrap();
            tampered += 1;
        }
    }
    assert!(tampered >= 1, "A shared its artifact");
    let c = cluster_host(&nats, "art", &with_key);
    eventually("C serves app", || body(&c, "app", "/")).await;
    let stats = c.runtime_stats().await;
    assert_eq!(stats["artifact_loads"], 0, "{stats}");
    assert_eq!(stats["compiles"], 1, "{stats}");
    assert!(c.log().contains("failed its HMAC check"), "{}", c.log());

    // Without a key, a host never loads shared native code.
    let d = cluster_host(&nats, "art", "");
    eventually("D serves app", || body(&d, "app", "/")).await;
    assert_eq!(d.runtime_stats().await["compiles"], 1);
}

#[tokio::test]
async fn guest_kv_keeps_quotas_and_isolation_across_hosts() {
    let nats = Nats::start();
    let (a, b) = (
        cluster_host(&nats, "kvq", ""),
        cluster_host(&nats, "kvq", ""),
    );
    let limited = a
        .upload_with_metadata(
            "default",
            "app",
            wasm("tenant"),
            json!({"limits": {"kv_max_keys": 2, "kv_max_mb": 1}}),
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.text());
    a.deploy("default", "other", wasm("tenant")).await;
    serves(&b, "app", "tenant").await;
    serves(&b, "other", "tenant").await;

    // Two keys, one written through each host: the quota is the bucket's,
    // not a host's.
    assert_eq!(
        body(&a, "app", "/kv/set?key=a&value=1").await.as_deref(),
        Some("ok")
    );
    assert_eq!(
        body(&b, "app", "/kv/set?key=b&value=2").await.as_deref(),
        Some("ok")
    );
    let third = body(&a, "app", "/kv/set?key=c&value=3").await.unwrap();
    assert!(
        third.starts_with("error:") && third.contains("kv-limit"),
        "{third}"
    );
    assert_eq!(
        body(&b, "app", "/kv/delete?key=b").await.as_deref(),
        Some("ok")
    );
    let big = body(&b, "app", "/kv/big?kb=1024").await.unwrap();
    assert!(big.contains("kv-limit"), "{big}");
    assert_eq!(
        body(&a, "app", "/kv/set?key=c&value=3").await.as_deref(),
        Some("ok")
    );
    assert_eq!(body(&b, "app", "/kv/keys").await.as_deref(), Some("a,c"));

    // Another script sees none of it.
    assert_eq!(body(&b, "other", "/kv/keys").await.as_deref(), Some(""));
    assert_eq!(
        body(&b, "other", "/kv/get?key=a").await.as_deref(),
        Some("(none)")
    );

    // A script deleted and deployed again starts with an empty bucket.
    let deleted = b
        .send(b.admin_request(
            reqwest::Method::DELETE,
            "/v1/namespaces/default/scripts/app",
        ))
        .await;
    assert_eq!(deleted.status, 200);
    b.deploy("default", "app", wasm("tenant")).await;
    serves(&a, "app", "tenant").await;
    eventually("a fresh bucket", || async {
        (body(&a, "app", "/kv/keys").await.as_deref() == Some("")).then_some(())
    })
    .await;
}
