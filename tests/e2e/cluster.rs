//! Scale-out: several `berth` hosts over one real `nats-server` (JetStream,
//! ephemeral loopback port, temp store). Every wait polls with a generous
//! deadline; how fast changes propagate is `make bench`'s business.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::harness::{
    Berth, Nats, NatsLink, cluster_config, cluster_host, eventually, ok, start_with_config, wasm,
    wasm_path,
};
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

/// The sha256 of `bytes`, hex.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Whether `reply` is the answer of `fixture` to `/echo`: tenant says so in
/// `x-fixture`, hello greets.
fn answered_by(reply: &crate::harness::Reply, fixture: &str) -> bool {
    reply.status == 200
        && match fixture {
            "tenant" => reply.header("x-fixture").as_deref() == Some("tenant"),
            "hello" => {
                reply.header("x-fixture").is_none() && reply.text().starts_with("Hello from Berth")
            }
            other => panic!("no answer known for {other}"),
        }
}

#[tokio::test]
async fn concurrent_deploys_from_two_hosts_converge_on_one_version() {
    let nats = Nats::start();
    let (a, b) = (
        cluster_host(&nats, "race", ""),
        cluster_host(&nats, "race", ""),
    );
    // Before the race both hosts have loaded a third component, so each
    // must drop it for the winner.
    a.deploy("default", "app", wasm("old_wasi")).await;
    for host in [&a, &b] {
        let before = eventually("old_wasi on both hosts", || body(host, "app", "/echo")).await;
        assert_eq!(before, "old wasi\n");
    }
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
    let last = 1 + 2 * rounds as u64;
    assert_eq!(
        versions,
        (2..=last).collect::<Vec<_>>(),
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
        (x["version"] == last && x == y).then(|| x["sha256"].clone())
    })
    .await;
    let winner = replies
        .iter()
        .find(|r| r.json()["result"]["version"] == last)
        .unwrap();
    assert_eq!(winner.json()["result"]["sha256"], final_sha);
    // The winning bytes name the fixture both hosts must serve.
    let fixture = ["hello", "tenant"]
        .into_iter()
        .find(|f| final_sha == sha256_hex(&wasm(f)).as_str())
        .unwrap_or_else(|| panic!("{final_sha} is neither upload"));
    for host in [&a, &b] {
        eventually(&format!("{fixture} served by every host"), || async {
            answered_by(&host.get("app.localhost", "/echo").await, fixture).then_some(())
        })
        .await;
    }
}

/// B is killed while A and C are under load and stays dead while A deploys;
/// A and C answer every request meanwhile, and B, restarted, serves both
/// the deploy it acknowledged before dying and the one it missed. The
/// runtime has threads of its own for the load, so it runs on while the
/// test kills and restarts B (blocking calls, on a blocking thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_host_loses_nothing_and_catches_up_while_the_others_serve() {
    let nats = Nats::start();
    let a = cluster_host(&nats, "kill", "");
    let mut b = cluster_host(&nats, "kill", "");
    let c = cluster_host(&nats, "kill", "");
    a.deploy("default", "app", wasm("hello")).await;
    for host in [&b, &c] {
        eventually("hello everywhere", || body(host, "app", "/")).await;
    }
    // Load on A and C (both fixtures answer /echo with 200). A reply counts
    // for B's downtime only if its request started after the kill and it
    // was answered before the restart began.
    const UP: u8 = 0;
    const DOWN: u8 = 1;
    const BACK: u8 = 2;
    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let during = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let mut load = Vec::new();
    for (addr, during) in [(a.data, during[0].clone()), (c.data, during[1].clone())] {
        let (stop, phase, failed) = (stop.clone(), phase.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                let started = phase.load(Ordering::SeqCst);
                let ok = client
                    .get(format!("http://{addr}/echo"))
                    .header("host", "app.localhost")
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if !ok {
                    failed.fetch_add(1, Ordering::SeqCst);
                } else if started == DOWN && phase.load(Ordering::SeqCst) == DOWN {
                    during.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // B acknowledged a deploy just before it dies: it is in JetStream.
    b.deploy("default", "second", wasm("tenant")).await;
    let mut b = tokio::task::spawn_blocking(move || {
        b.kill();
        b
    })
    .await
    .unwrap();
    phase.store(DOWN, Ordering::SeqCst);
    // A deploy while B is down.
    a.deploy("default", "app", wasm("tenant")).await;
    serves(&c, "app", "tenant").await;
    // Both A and C keep answering while B is dead.
    eventually("A and C answer while B is down", || async {
        (during.iter().all(|n| n.load(Ordering::SeqCst) >= 20)).then_some(())
    })
    .await;
    phase.store(BACK, Ordering::SeqCst);
    b = tokio::task::spawn_blocking(move || b.start_again())
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "A and C kept answering");
    // Restarted, B serves what it acknowledged and what it missed.
    serves(&b, "second", "tenant").await;
    serves(&b, "app", "tenant").await;
    serves(&c, "second", "tenant").await;
    serves(&a, "app", "tenant").await;
}

/// docs/scale-out.md, "Failure modes": while NATS is unreachable, loaded
/// scripts are served, a script this host never loaded answers `internal`,
/// guest KV fails inside the guest, admin writes are refused, and a host
/// starting meanwhile says so and exits; once NATS is back, writes work and
/// propagate again.
#[tokio::test]
async fn hosts_serve_from_cache_while_nats_is_down_and_catch_up_after() {
    let nats = Nats::start();
    let short = "timeout_ms = 1000";
    let (a, b) = (
        cluster_host(&nats, "down", short),
        cluster_host(&nats, "down", short),
    );
    a.deploy("default", "app", wasm("hello")).await;
    a.deploy("default", "store", wasm("tenant")).await;
    // Deployed, never requested on B: its bytes (a component no other
    // script here uses) are not in B's cache.
    a.deploy("default", "cold", wasm("old_wasi")).await;
    eventually("B serves app", || body(&b, "app", "/")).await;
    serves(&b, "store", "tenant").await;
    eventually("B knows cold", || async {
        (b.admin_get("/v1/namespaces/default/scripts/cold")
            .await
            .status
            == 200)
            .then_some(())
    })
    .await;
    let mut nats = nats;
    nats.stop();

    // Cached scripts keep being served on both hosts.
    for host in [&a, &b] {
        let text = body(host, "app", "/").await.expect("served from cache");
        assert!(text.starts_with("Hello from Berth"));
    }
    // Guest KV fails inside the guest, which answers with the reason.
    let kv = b.get("store.localhost", "/kv/set?key=k&value=v").await;
    assert_eq!(kv.status, 200, "{}", kv.text());
    assert!(
        kv.text().starts_with("error:") && kv.text().contains("unreachable"),
        "{}",
        kv.text()
    );
    // A script B never loaded cannot be fetched.
    let cold = b.get("cold.localhost", "/").await;
    assert_eq!(cold.status, 500, "{}", cold.text());
    assert_eq!(cold.error_code().as_deref(), Some("internal"));
    // Admin writes fail fast and say why.
    let refused = a.upload("default", "app", wasm("tenant")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["errors"][0]["code"], "store_unavailable");
    // The code's earlier spelling, in the header every Berth error carries.
    assert_eq!(refused.error_code().as_deref(), Some("store-unavailable"));
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    // A host starting now has nothing to serve: it says so and exits.
    let (status, output) =
        serve_until_exit(&cluster_config(&nats.url(), "down", "timeout_ms = 500"));
    assert!(!status.success(), "{status}: {output}");
    assert!(
        output.contains(&format!("cannot connect to NATS at {}", nats.url())),
        "{output}"
    );

    // NATS back (same port and store): a new deploy propagates.
    let _nats = nats.restart();
    let deployed = eventually("admin writes work again", || async {
        let reply = a.upload("default", "app", wasm("tenant")).await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert_eq!(deployed.json()["result"]["version"], 2);
    serves(&b, "app", "tenant").await;
    assert_eq!(
        body(&b, "store", "/kv/set?key=k&value=v").await.as_deref(),
        Some("ok")
    );
}

/// Runs `berth serve` with `config` until it exits by itself (it must,
/// within 60 s): its exit status and everything it printed.
fn serve_until_exit(config: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&path)
        .env("BERTH_ADMIN_TOKEN", crate::harness::TOKEN)
        .env_remove("BERTH_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "berth serve still runs without NATS: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// One host cut off from NATS (a proxy between them closes) while another
/// deploys, redeploys and deletes: once the link is back, the watch
/// resumes from the last revision the host applied and it catches up on
/// everything it missed.
#[tokio::test]
async fn a_host_cut_off_from_nats_catches_up_on_what_it_missed() {
    let nats = Nats::start();
    let link = NatsLink::to(&nats);
    let a = cluster_host(&nats, "cut", "");
    let b = start_with_config(&cluster_config(&link.url(), "cut", "timeout_ms = 1000"));
    a.deploy("default", "app", wasm("hello")).await;
    a.deploy("default", "doomed", wasm("hello")).await;
    for script in ["app", "doomed"] {
        eventually("B serves hello", || body(&b, script, "/")).await;
    }
    link.cut();
    // B knows it is cut off: it refuses admin writes.
    eventually("B notices the cut", || async {
        (b.upload("default", "probe", wasm("hello")).await.status == 503).then_some(())
    })
    .await;
    a.deploy("default", "app", wasm("tenant")).await;
    a.deploy("default", "added", wasm("tenant")).await;
    let deleted = a
        .send(a.admin_request(
            reqwest::Method::DELETE,
            "/v1/namespaces/default/scripts/doomed",
        ))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    // Still cut off: B serves what it had.
    let old = body(&b, "app", "/").await.expect("served from cache");
    assert!(old.starts_with("Hello from Berth"), "{old}");
    link.restore();
    serves(&b, "app", "tenant").await;
    serves(&b, "added", "tenant").await;
    eventually("doomed gone on B", || async {
        let reply = b.get("doomed.localhost", "/").await;
        (reply.status == 404 && reply.error_code().as_deref() == Some("worker-not-found"))
            .then_some(())
    })
    .await;
    assert!(
        b.log().contains("lost the connection to NATS"),
        "{}",
        b.log()
    );
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

    // Tamper with the shared artifact: keep A's valid native code, change
    // its tag (what a writer without the key can do). A host without it
    // cached refuses it and compiles for itself…
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let objects = js.get_object_store("art-blobs").await.unwrap();
    let artifacts = artifact_names(&objects).await;
    assert_eq!(artifacts.len(), 1, "A shared its artifact: {artifacts:?}");
    // The tag is the first 32 bytes: flip one bit of it.
    let mut forged = read_object(&objects, &artifacts[0]).await;
    forged[0] ^= 0x01;
    objects
        .put(artifacts[0].as_str(), &mut forged.as_slice())
        .await
        .unwrap();
    let c = cluster_host(&nats, "art", &with_key);
    eventually("C serves app", || body(&c, "app", "/")).await;
    let stats = c.runtime_stats().await;
    assert_eq!(stats["artifact_loads"], 0, "{stats}");
    assert_eq!(stats["compiles"], 1, "{stats}");
    assert!(c.log().contains("failed its HMAC check"), "{}", c.log());

    // …and shares a correctly tagged one again, which the next host loads.
    let reshared = read_object(&objects, &artifacts[0]).await;
    assert_ne!(reshared, forged, "C replaced the forged artifact");
    let e = cluster_host(&nats, "art", &with_key);
    eventually("E serves app", || body(&e, "app", "/")).await;
    let stats = e.runtime_stats().await;
    assert_eq!(stats["compiles"], 0, "{stats}");
    assert_eq!(stats["artifact_loads"], 1, "{stats}");

    // Without a key, a host never loads shared native code.
    let d = cluster_host(&nats, "art", "");
    eventually("D serves app", || body(&d, "app", "/")).await;
    assert_eq!(d.runtime_stats().await["compiles"], 1);
}

/// The names of the artifacts in an object store.
async fn artifact_names(objects: &async_nats::jetstream::object_store::ObjectStore) -> Vec<String> {
    let mut list = objects.list().await.unwrap();
    let mut names = Vec::new();
    while let Some(info) = list.next().await {
        let info = info.unwrap();
        if info.name.starts_with("artifact/") {
            names.push(info.name);
        }
    }
    names
}

/// An object's bytes.
async fn read_object(
    objects: &async_nats::jetstream::object_store::ObjectStore,
    name: &str,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut object = objects.get(name).await.unwrap();
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.unwrap();
    bytes
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
    assert!(third.contains("keys"), "refused for its key count: {third}");
    // Bytes: 600 KiB through A fits the 1 MiB quota, 600 KiB more under
    // another key through B does not.
    for (host, key) in [(&b, "b"), (&a, "a")] {
        let path = format!("/kv/delete?key={key}");
        assert_eq!(body(host, "app", &path).await.as_deref(), Some("ok"));
    }
    assert_eq!(
        body(&a, "app", "/kv/big?kb=600&key=big").await.as_deref(),
        Some("ok")
    );
    let second = body(&b, "app", "/kv/big?kb=600&key=big2").await.unwrap();
    assert!(
        second.starts_with("error:") && second.contains("kv-limit"),
        "{second}"
    );
    assert!(
        second.contains("bytes of keys and values"),
        "refused for its bytes, not its key count: {second}"
    );
    assert_eq!(
        body(&a, "app", "/kv/set?key=c&value=3").await.as_deref(),
        Some("ok")
    );
    assert_eq!(body(&b, "app", "/kv/keys").await.as_deref(), Some("big,c"));

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

/// docs/scale-out.md: "two hosts cannot both pass a quota". Sixteen
/// writes of 200 KiB at once, half through each host, into a 1 MiB bucket:
/// at most five fit, and the bucket never holds more than its quota.
#[tokio::test]
async fn two_hosts_writing_at_once_cannot_both_pass_a_kv_quota() {
    const QUOTA: usize = 1 << 20;
    let nats = Nats::start();
    let (a, b) = (
        cluster_host(&nats, "kvrace", ""),
        cluster_host(&nats, "kvrace", ""),
    );
    let limited = a
        .upload_with_metadata(
            "default",
            "app",
            wasm("tenant"),
            json!({"limits": {"kv_max_mb": 1}}),
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.text());
    serves(&b, "app", "tenant").await;
    let writes = (0..16).map(|i| {
        let host = if i % 2 == 0 { &a } else { &b };
        async move {
            let reply = host
                .get("app.localhost", &format!("/kv/big?kb=200&key=k{i:02}"))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.text()
        }
    });
    let answers = futures::future::join_all(writes).await;
    let stored = answers.iter().filter(|t| t.as_str() == "ok").count();
    for refused in answers.iter().filter(|t| t.as_str() != "ok") {
        assert!(
            refused.starts_with("error:") && refused.contains("kv-limit"),
            "{refused}"
        );
    }
    assert!(
        (1..=5).contains(&stored),
        "{stored} writes passed: {answers:?}"
    );
    // What the bucket holds, read back through the admin API.
    let listed = a
        .admin_get("/v1/namespaces/default/scripts/app/kv?limit=100")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let names: Vec<String> = listed.json()["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), stored, "{names:?}");
    let mut total = 0;
    for name in &names {
        let value = b
            .admin_get(&format!("/v1/namespaces/default/scripts/app/kv/{name}"))
            .await;
        assert_eq!(value.status, 200, "{}", value.text());
        total += name.len() + value.body.len();
    }
    assert!(total <= QUOTA, "the bucket holds {total} bytes");
}

/// Data at rest in NATS: a secret in the records bucket is sealed (read
/// the raw bucket and look), and a blob whose bytes do not match its
/// sha256 is refused, never run.
#[tokio::test]
async fn secrets_in_nats_are_sealed_and_tampered_blobs_are_refused() {
    let nats = Nats::start();
    let a = cluster_host(&nats, "rest", "");
    a.deploy("default", "vault", wasm("tenant")).await;
    let secret = "hunter2-in-nats-5c1e";
    let put = a
        .send(
            a.admin_request(
                reqwest::Method::PUT,
                "/v1/namespaces/default/scripts/vault/secrets/TOKEN",
            )
            .json(&json!({"value": secret})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let echo = a.get("vault.localhost", "/echo").await.json();
    assert_eq!(echo["env"]["TOKEN"], secret, "the guest gets it");

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let records = js.get_key_value("rest-records").await.unwrap();
    let mut keys = records.keys().await.unwrap();
    let mut record = None;
    let mut seen = 0;
    while let Some(key) = keys.next().await {
        let key = key.unwrap();
        let value = records.get(&key).await.unwrap().unwrap_or_default();
        assert!(
            !value.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{key} holds the secret in clear"
        );
        seen += 1;
        if key == "sc.default.vault" {
            record = Some(String::from_utf8_lossy(&value).into_owned());
        }
    }
    assert!(seen >= 2, "read the namespace and the script record");
    let record = record.expect("the script's record");
    assert!(
        record.contains(r#""TOKEN":"sealed:v1:"#),
        "the record holds its secret, sealed: {record}"
    );

    // A blob replaced by other bytes under the same name: a host fetching
    // it refuses it instead of running what it got.
    a.deploy("default", "victim", wasm("hello")).await;
    let objects = js.get_object_store("rest-blobs").await.unwrap();
    let name = format!("blob/{}", sha256_hex(&wasm("hello")));
    objects
        .put(name.as_str(), &mut wasm("tenant").as_slice())
        .await
        .unwrap();
    let b = cluster_host(&nats, "rest", "");
    let refused = b.get("victim.localhost", "/echo").await;
    assert_eq!(refused.status, 500, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("internal"));
    assert!(
        b.log().contains("does not match its hash"),
        "the log says why: {}",
        b.log()
    );
    // A, which uploaded it, still serves its own checked copy.
    assert!(answered_by(
        &a.get("victim.localhost", "/echo").await,
        "hello"
    ));
}
