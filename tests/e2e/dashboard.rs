//! The operator dashboard: its API (history, top tenants, last errors,
//! cluster, the richer script view, the token-free files) against a real
//! server, and the whole page in headless Chromium driven by
//! `tests/browser/dashboard.mjs` (Playwright's `playwright-core`, pointed at
//! Debian's `chromium`; see docs/dashboard.md for why).
//!
//! The browser test needs `node` on PATH, `tests/browser/node_modules` and
//! Chromium (`BERTH_CHROMIUM`, default `/usr/bin/chromium`): `make
//! browser-deps` installs them, and the test fails (never skips) without
//! them. With `BERTH_SCREENSHOTS=<dir>` it also writes the README's
//! screenshots there (`make screenshots`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Berth, Nats, TOKEN, cluster_host, eventually, start_with_config, upstream, wasm,
};

/// The tag and var of `s0500` that must stay text (tests/browser/dashboard.mjs).
const XSS_TAG: &str = "<img src=x onerror=window.__xss=1>";
const XSS_VAR: &str = "<script>window.__xss=2</script>";

/// How many scripts the namespace holds while the browser searches it.
const SCRIPTS: usize = 1000;
/// Uploads in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
/// Traffic before the screenshots are taken (`make screenshots` only).
const SCREENSHOT_WARM_UP: Duration = Duration::from_secs(90);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// A server whose built-in router serves namespace `dash` (so
/// `s0500.localhost` reaches `dash/s0500`), with egress to loopback open.
fn dash_server() -> Berth {
    start_with_config(
        "[server]\ndefault_namespace = \"dash\"\n\
         [egress]\nports = [\"1-65535\"]\nallow_private = [\"127.0.0.1/32\"]\n",
    )
}

/// Uploads `names` as copies of the `tenant` fixture, a few at a time (one
/// compile: identical bytes share their artifact).
async fn seed(berth: &Berth, names: impl Iterator<Item = String>) {
    let bytes = Arc::new(wasm("tenant"));
    let uploads = names.map(|name| {
        let bytes = bytes.clone();
        async move {
            let reply = berth.upload("dash", &name, bytes.to_vec()).await;
            assert_eq!(reply.status, 200, "deploy dash/{name}: {}", reply.text());
        }
    });
    futures::stream::iter(uploads)
        .buffer_unordered(SEED_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

async fn result(berth: &Berth, path: &str) -> Value {
    let reply = berth.admin_get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()["result"].clone()
}

/// The newest number of a series (or `None` if it has none).
fn latest(series: &Value) -> Option<f64> {
    series.as_array()?.iter().rev().find_map(Value::as_f64)
}

#[tokio::test]
async fn the_dashboard_api_charts_the_host_ranks_tenants_and_keeps_last_errors() {
    let berth = dash_server();
    berth.deploy("dash", "calm", wasm("tenant")).await;
    let reply = berth
        .upload_with_metadata(
            "dash",
            "spinner",
            wasm("tenant"),
            json!({"limits": {"cpu_ms": 20}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    for _ in 0..3 {
        assert_eq!(
            berth.get("calm.localhost", "/status?code=200").await.status,
            200
        );
    }
    let panic = berth.get("calm.localhost", "/panic?secret=1").await;
    assert_eq!(panic.status, 500);
    let request_id = panic.header("berth-request-id").expect("a request id");
    assert_eq!(
        berth.get("calm.localhost", "/status?code=503").await.status,
        503
    );
    for _ in 0..2 {
        let spin = berth.get("spinner.localhost", "/spin").await;
        assert_eq!(spin.error_code().as_deref(), Some("cpu-limit"));
    }
    berth.deploy("dash", "fetcher", wasm("tenant")).await;
    let up = upstream(Duration::ZERO).await;
    for _ in 0..2 {
        let fetched = berth
            .get("fetcher.localhost", &format!("/fetch?url=http://{up}/"))
            .await;
        assert!(fetched.text().starts_with("200"), "{}", fetched.text());
    }

    // The host's history: 900 one-second points, the requests and the
    // error codes of the last seconds (sampled once a second).
    let host = eventually("the requests in the host's history", || async {
        let h = result(&berth, "/v1/dashboard/history").await;
        let total: f64 = h["series"]["requests"]
            .as_array()?
            .iter()
            .filter_map(Value::as_f64)
            .sum();
        (total >= 9.0 && h["series"]["errors"].get("cpu-limit").is_some()).then_some(h)
    })
    .await;
    assert_eq!(host["step_s"], 1);
    assert_eq!(host["points"], 900);
    let series = &host["series"];
    for key in [
        "requests",
        "p50_ms",
        "p99_ms",
        "cpu_s",
        "host_memory_bytes",
        "instances",
    ] {
        assert_eq!(series[key].as_array().map(Vec::len), Some(900), "{key}");
    }
    assert!(
        series["requests"][0].is_null(),
        "no sample before the host started"
    );
    assert!(series["errors"].get("exception").is_some(), "{series}");
    assert!(latest(&series["cpu_s"]).is_some());
    assert!(latest(&series["p99_ms"]).unwrap() > 0.0);

    // One script: requests by status class, limit hits by kind, its last
    // errors newest first (no query string), fuel not metered here.
    let calm = result(&berth, "/v1/dashboard/scripts/dash/calm/history").await;
    assert_eq!(calm["itemized"], true);
    let classes: f64 = ["2xx", "5xx"]
        .iter()
        .map(|c| {
            calm["series"]["requests"][c]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_f64)
                .sum::<f64>()
        })
        .sum();
    assert!(
        (classes - 5.0).abs() < 0.5,
        "{}",
        calm["series"]["requests"]
    );
    assert!(calm["series"]["fuel"].is_null());
    let errors = calm["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["status"], 503);
    assert_eq!(errors[0]["outcome"], "ok", "a 5xx the guest chose");
    assert_eq!(errors[1]["outcome"], "exception");
    assert_eq!(errors[1]["path"], "/panic");
    assert_eq!(errors[1]["request_id"], request_id.as_str());

    let spinner = result(&berth, "/v1/dashboard/scripts/dash/spinner/history").await;
    assert!(
        spinner["series"]["limit_hits"].get("cpu").is_some(),
        "{spinner}"
    );
    let missing = berth
        .admin_get("/v1/dashboard/scripts/dash/nobody/history")
        .await;
    assert_eq!(missing.status, 404);

    // Top tenants: the spinner leads CPU and limit hits.
    let top = result(&berth, "/v1/dashboard/top").await;
    assert_eq!(top["window_s"], 60);
    assert_eq!(top["by_cpu"][0]["script"], "spinner", "{top}");
    assert_eq!(top["by_cpu"][0]["namespace"], "dash");
    assert!(top["by_cpu"][0]["value"].as_f64().unwrap() >= 0.02);
    assert_eq!(top["by_limit_hits"][0]["script"], "spinner");
    assert_eq!(top["by_limit_hits"][0]["value"], 2.0);
    assert!(
        top["by_memory"][0]["value"].as_f64().unwrap() > 0.0,
        "{top}"
    );
    assert_eq!(top["by_egress"][0]["script"], "fetcher", "{top}");
    assert_eq!(top["by_egress"][0]["value"], 2.0);

    // The cluster of one sled host.
    let cluster = result(&berth, "/v1/cluster").await;
    assert_eq!(cluster["backend"], "sled");
    let hosts = cluster["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0]["loaded_scripts"].as_u64().unwrap() >= 2);

    // The script view carries what the script page shows.
    let put = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/dash/hostnames/calm.example.com",
                )
                .json(&json!({"script": "calm"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let script = result(&berth, "/v1/namespaces/dash/scripts/spinner").await;
    assert_eq!(script["limits"]["cpu_ms"], 20);
    assert_eq!(script["isolation"]["mode"], "fresh");
    assert_eq!(script["hostnames"], json!([]));
    assert_eq!(script["assets"], json!({"count": 0, "bytes": 0}));
    let calm = result(&berth, "/v1/namespaces/dash/scripts/calm").await;
    assert_eq!(calm["hostnames"], json!(["calm.example.com"]));

    // Every dashboard route of the API wants the token.
    for path in [
        "/v1/dashboard/history",
        "/v1/dashboard/top",
        "/v1/dashboard/scripts/dash/calm/history",
        "/v1/cluster",
    ] {
        let reply = reqwest::get(format!("http://{}{path}", berth.admin))
            .await
            .unwrap();
        assert_eq!(reply.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn the_dashboard_files_are_served_without_the_token_under_a_strict_policy() {
    let berth = Berth::start();
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/pages/script.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
        ("/dashboard/vendor/uPlot.iife.min.js", "text/javascript"),
    ] {
        let reply = reqwest::get(format!("http://{}{path}", berth.admin))
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let header = |name: &str| {
            reply
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            header("content-type").starts_with(kind),
            "{path}: {}",
            header("content-type")
        );
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let missing = reqwest::get(format!("http://{}/dashboard/nope.js", berth.admin))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let page = reqwest::get(format!("http://{}/dashboard/", berth.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(TOKEN), "the page never holds the token");
}

#[tokio::test]
async fn the_cluster_view_lists_every_live_host_of_a_nats_store() {
    let nats = Nats::start();
    let a = cluster_host(&nats, "dashview", "");
    let b = cluster_host(&nats, "dashview", "");
    a.deploy("default", "app", wasm("tenant")).await;
    assert_eq!(a.get("app.localhost", "/echo").await.status, 200);
    eventually("app served by b", || async {
        (b.get("app.localhost", "/echo").await.status == 200).then_some(())
    })
    .await;

    // Both hosts, each at the records revision that holds the deploy, with
    // `app` loaded on both. Announcements are every 2 s; under the whole
    // suite's load a few can come late, so this waits longer than
    // `eventually`'s 30 s. Each round asks both hosts for `app` again: a
    // host may drop a worker it loaded from the new record when the
    // record's change notice reaches its cache after the load (harmless, the
    // next request loads it again), and only a request brings it back.
    let view = crate::harness::eventually_showing(
        "both hosts caught up with `app` loaded in a's cluster view",
        Duration::from_secs(90),
        || async {
            for host in [&a, &b] {
                assert_eq!(host.get("app.localhost", "/echo").await.status, 200);
            }
            let c = result(&a, "/v1/cluster").await;
            let caught_up = c["hosts"].as_array().is_some_and(|hosts| {
                hosts.len() == 2
                    && hosts.iter().all(|h| {
                        h["revision"].as_u64() == c["revision"].as_u64()
                            && h["lag"] == 0
                            && h["loaded_scripts"].as_u64() >= Some(1)
                    })
            });
            if caught_up { Ok(c) } else { Err(c.to_string()) }
        },
    )
    .await;
    assert_eq!(view["backend"], "nats");
    let ids: Vec<&str> = view["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host_id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    let from_b = result(&b, "/v1/cluster").await;
    assert_eq!(
        from_b["hosts"].as_array().map(Vec::len),
        Some(2),
        "{from_b}"
    );

    // A host that stops is forgotten within seconds.
    drop(b);
    eventually("b gone from a's view", || async {
        let c = result(&a, "/v1/cluster").await;
        (c["hosts"].as_array()?.len() == 1).then_some(())
    })
    .await;
}

/// Node, the npm packages and Chromium, or a failure saying how to get
/// them.
fn browser_prerequisites() -> PathBuf {
    let chromium = std::env::var_os("BERTH_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "no Chromium at {} (BERTH_CHROMIUM); run `make browser-deps` (Debian's chromium package)",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "no `node` on PATH (Node.js 20 or later); install it, then run `make browser-deps`"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules is missing; run `make browser-deps`"
    );
    chromium
}

/// Traffic while the browser looks: a few calm scripts answering, one
/// calling an upstream, and the spinner burning its CPU limit, so the
/// charts and the top lists have something to show.
async fn background_traffic(berth: Arc<Berth>, stop: Arc<AtomicBool>) {
    let upstream = upstream(Duration::from_millis(5)).await;
    let fetch = format!("/fetch?url=http://{upstream}/");
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if round.is_multiple_of(2) {
            let _ = berth.get("fetcher.localhost", &fetch).await;
        }
        round += 1;
        for i in 0..4 {
            let host = format!("s{:04}.localhost", (round as usize * 4 + i) % 12);
            let _ = berth.get(&host, "/status?code=200").await;
        }
        if round.is_multiple_of(5) {
            let _ = berth.get("s0003.localhost", "/missing").await;
        }
        if round.is_multiple_of(3) {
            let _ = berth.get("spinner.localhost", "/spin").await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_edits_and_tails_a_script_among_a_thousand_in_chromium() {
    let chromium = browser_prerequisites();
    let berth = Arc::new(dash_server());

    let started = std::time::Instant::now();
    seed(
        &berth,
        (0..SCRIPTS)
            .filter(|i| *i != 500)
            .map(|i| format!("s{i:04}"))
            .chain(["fetcher".to_owned()]),
    )
    .await;
    let reply = berth
        .upload_with_metadata(
            "dash",
            "s0500",
            wasm("tenant"),
            json!({"tags": [XSS_TAG, "plan-pro"], "vars": {"NOTE": XSS_VAR}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = berth
        .upload_with_metadata(
            "dash",
            "spinner",
            wasm("tenant"),
            json!({"limits": {"cpu_ms": 25}, "tags": ["plan-free"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    eprintln!("seeded {} scripts in {:?}", SCRIPTS + 2, started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(background_traffic(berth.clone(), stop.clone()));

    let screenshots = std::env::var_os("BERTH_SCREENSHOTS").map(|dir| {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)
        }
    });
    if screenshots.is_some() {
        // A minute and a half of history for the charts to show.
        tokio::time::sleep(SCREENSHOT_WARM_UP).await;
    }
    let mut command = std::process::Command::new("node");
    command
        .arg("dashboard.mjs")
        .current_dir(browser_dir())
        .env("ADMIN_URL", format!("http://{}", berth.admin))
        .env("DATA_URL", format!("http://{}", berth.data))
        .env("TOKEN", TOKEN)
        .env("CHROMIUM", &chromium)
        .env_remove("SCREENSHOTS");
    if let Some(dir) = &screenshots {
        command.env("SCREENSHOTS", dir);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the browser run")
        .expect("node runs");
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("ok done"),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nserver log (tail):\n{}",
        output.status,
        tail_of(&berth.log(), 40)
    );
    eprintln!("{stdout}");

    // What the browser did reached the server: the limit it set and put
    // back, the panic it caused in the last errors.
    let settings = result(&berth, "/v1/namespaces/dash/scripts/s0500/settings").await;
    assert!(settings["limits"]["cpu_ms"].is_null(), "{settings}");
    let history = result(&berth, "/v1/dashboard/scripts/dash/s0500/history").await;
    assert!(
        history["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "exception" && e["path"] == "/panic"),
        "{}",
        history["errors"]
    );
    if let Some(dir) = screenshots {
        for page in [
            "overview",
            "namespaces",
            "scripts",
            "script",
            "tail",
            "top",
            "cluster",
        ] {
            let png = dir.join(format!("{page}.png"));
            let bytes = std::fs::read(&png).unwrap_or_default();
            assert!(
                bytes.starts_with(b"\x89PNG"),
                "no screenshot {}",
                png.display()
            );
        }
    }
}

fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
