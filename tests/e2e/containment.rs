//! Containment, part 3: the attacks a careful tenant or anonymous client
//! could still make, each driven against the real binary. Every test here
//! failed before its defence existed (see docs/security.md).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Berth, eventually, start_with_config, wasm, wasm_path};

/// The value of one series in a metrics exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `berth_admission_queue_depth` right now (-1 if missing).
pub(crate) async fn queue_depth(berth: &Berth) -> f64 {
    let text = berth.admin_get("/metrics").await.text();
    metric(&text, "berth_admission_queue_depth").unwrap_or(-1.0)
}

/// Clients that give up while queued (any anonymous client can) give their
/// place back: the queue is not closed for good.
#[tokio::test]
async fn clients_that_give_up_in_the_queue_give_their_place_back() {
    let berth = start_with_config(
        "[limits]\nmax_concurrency = 1\nmax_queue = 4\nqueue_timeout_ms = 60000\n",
    );
    berth.deploy("default", "q", wasm("tenant")).await;
    // One request holds the only slot for a while.
    let holder = {
        let request = berth.data_request(reqwest::Method::GET, "q.localhost", "/sleep?ms=3000");
        tokio::spawn(request.send())
    };
    eventually("the slow request to hold the slot", || async {
        let stats = berth.runtime_stats().await;
        (stats["pool"]["component_instances"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    // Twelve clients queue behind it and give up after 200 ms.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("http://{}/echo", berth.data);
    let gave_up = futures::future::join_all(
        (0..12).map(|_| impatient.get(&url).header("host", "q.localhost").send()),
    )
    .await;
    assert!(
        gave_up
            .iter()
            .all(|r| r.as_ref().map_or(true, |r| r.status() == 503))
    );
    eventually("every abandoned place to be given back", || async {
        (queue_depth(&berth).await == 0.0).then_some(())
    })
    .await;
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    // The queue still works: two at once, one waits its turn.
    let (a, b) = tokio::join!(
        berth.get("q.localhost", "/echo"),
        berth.get("q.localhost", "/echo")
    );
    assert_eq!(
        (a.status, b.status),
        (200, 200),
        "{} / {}",
        a.text(),
        b.text()
    );
}

/// A client that stops reading a response is dropped after
/// `response_write_timeout_ms`: slow readers cannot hold the connection
/// cap (they count against it meanwhile).
#[tokio::test]
async fn clients_that_stop_reading_are_dropped() {
    let berth =
        start_with_config("[server]\nmax_connections = 4\nresponse_write_timeout_ms = 1000\n");
    berth.deploy("default", "big", wasm("tenant")).await;
    let readers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(berth.data).unwrap();
            stream
                .write_all(b"GET /big?mb=32 HTTP/1.1\r\nHost: big.localhost\r\n\r\n")
                .unwrap();
            // Read the head, then never another byte.
            let mut head = [0u8; 64];
            stream.read_exact(&mut head).unwrap();
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&head)
            );
            stream
        })
        .collect();
    let (status, answer) = crate::harness::raw_head(
        berth.data,
        "GET /echo HTTP/1.1\r\nHost: big.localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 503, "the slow readers hold every slot: {answer}");
    assert!(answer.contains("x-berth-error: overloaded"), "{answer}");
    eventually("the slow readers to be dropped", || async {
        let (status, _) = crate::harness::raw_head(
            berth.data,
            "GET /echo HTTP/1.1\r\nHost: big.localhost\r\nConnection: close\r\n\r\n",
        );
        (status == 200).then_some(())
    })
    .await;
    drop(readers);
}

/// Header maps are charged by their size, not refused past a small cap:
/// Wasmtime's own proxy test (`/modify_fields/5000`: 500 fields added to a
/// copy of the request's headers, ~40 KB as Wasmtime counts them) passes, a
/// dispatch worker forwards 20 KB of cookies and adds its header, and a
/// guest that builds maps beyond its budget still gets `memory-limit`.
#[tokio::test]
async fn large_header_maps_are_charged_not_refused() {
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"*.platform.test\"]\nworker = \"{}\"\nnamespace = \"customers\"\n\
         vars = {{ PLATFORM_DOMAIN = \"platform.test\" }}\n",
        wasm_path("dispatcher").display()
    ));
    berth.deploy("default", "proxy", wasm("tenant")).await;
    berth.deploy("customers", "sso", wasm("tenant")).await;
    let modified = berth.get("proxy.localhost", "/modify_fields/5000").await;
    assert_eq!(modified.status, 200, "{}", modified.text());
    assert_eq!(modified.text(), "added 5000 bytes of fields");
    // 1,000 fields (~80 KB as Wasmtime counts them; its default per-map
    // ceiling is 128 KiB) too.
    let big = berth.get("proxy.localhost", "/modify_fields/10000").await;
    assert_eq!(big.status, 200, "{}", big.text());
    let cookie = format!("session={}", "c".repeat(20 << 10));
    let forwarded = berth
        .send(
            berth
                .data_request(reqwest::Method::GET, "sso.platform.test", "/echo")
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(forwarded.status, 200, "{}", forwarded.text());
    assert!(
        forwarded.text().contains(&cookie[..64]),
        "the cookie reached the tenant"
    );
    // 1,000 maps of 1 KiB kept at once still hit a 1 MiB budget.
    let hoard = berth
        .upload_with_metadata(
            "default",
            "hoarder",
            wasm("tenant"),
            serde_json::json!({"limits": {"host_memory_mb": 1}}),
        )
        .await;
    assert_eq!(hoard.status, 200);
    let hoarded = berth.get("hoarder.localhost", "/hoard-fields?n=5000").await;
    assert_eq!(
        hoarded.error_code().as_deref(),
        Some("memory-limit"),
        "{}",
        hoarded.text()
    );
}

/// A request looping through the outbound worker (its forwarded request
/// comes back to the same user worker) is caught like any other loop.
#[tokio::test]
async fn loops_through_the_outbound_worker_are_detected() {
    // The outbound worker (the tenant fixture) forwards `/self-fetch` to
    // its own URL — this host's data plane, named by the Host header —
    // which comes back through the dispatcher to the user worker, which
    // fetches itself again.
    let berth = start_with_config(&format!(
        r#"
[limits]
wall_ms = 10000
[egress]
ports = ["1-65535"]
allow_private = ["127.0.0.1/32"]
hosts = {{ "loop.platform.test" = ["127.0.0.1"] }}
[[dispatch]]
hostnames = ["*.platform.test"]
worker = "{dispatcher}"
namespace = "customers"
outbound_worker = "{outbound}"
vars = {{ PLATFORM_DOMAIN = "platform.test" }}
"#,
        dispatcher = wasm_path("dispatcher").display(),
        outbound = wasm_path("tenant").display(),
    ));
    berth.deploy("customers", "loop", wasm("tenant")).await;
    let host = format!("loop.platform.test:{}", berth.data.port());
    let reply = berth.get(&host, "/self-fetch").await;
    assert_eq!(reply.status, 508, "{}", reply.text());
}

/// One tenant whose upstreams are slow fills its own share of the
/// outbound worker, not the slots every other tenant needs.
#[tokio::test]
async fn a_tenant_cannot_take_every_slot_of_the_outbound_worker() {
    let berth = start_with_config(&format!(
        r#"
[limits]
max_concurrency = 2
max_queue = 0
[egress]
ports = ["1-65535"]
allow_private = ["127.0.0.1/32"]
[[dispatch]]
hostnames = ["*.platform.test"]
worker = "{dispatcher}"
namespace = "customers"
outbound_worker = "{outbound}"
vars = {{ PLATFORM_DOMAIN = "platform.test" }}
"#,
        dispatcher = wasm_path("dispatcher").display(),
        outbound = wasm_path("tenant").display(),
    ));
    berth.deploy("customers", "slowpoke", wasm("tenant")).await;
    berth.deploy("customers", "quick", wasm("tenant")).await;
    // Two subrequests of one tenant sit in the outbound worker (its
    // `/sleep`) as long as they can.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let request = berth.data_request(
                reqwest::Method::GET,
                "slowpoke.platform.test",
                "/fetch?url=http://x.test/sleep%3Fms%3D4000",
            );
            tokio::spawn(request.send())
        })
        .collect();
    eventually(
        "both slow subrequests to be inside the outbound worker",
        || async {
            let stats = berth.runtime_stats().await;
            // Per slow request: the dispatcher, the user worker and the
            // outbound worker.
            (stats["pool"]["component_instances"].as_u64() >= Some(6)).then_some(())
        },
    )
    .await;
    let quick = berth
        .get("quick.platform.test", "/fetch?url=http://x.test/echo")
        .await;
    assert_eq!(quick.status, 200, "{}", quick.text());
    assert!(
        quick.text().starts_with("200\n"),
        "the other tenant's subrequest ran: {}",
        quick.text()
    );
    for request in slow {
        let reply = request.await.unwrap().unwrap();
        assert_eq!(reply.status(), 200);
    }
}

/// Time a guest spends inside host calls that work for it (not waiting)
/// is charged to its CPU budget: a guest spinning in header writes is
/// stopped by `cpu_ms`, not only by `wall_ms`.
#[tokio::test]
async fn time_in_host_calls_counts_against_the_cpu_budget() {
    let berth = start_with_config("[limits]\ncpu_ms = 50\nwall_ms = 20000\n");
    berth.deploy("default", "spin", wasm("tenant")).await;
    let reply = berth.get("spin.localhost", "/host-spin").await;
    assert_eq!(
        reply.error_code().as_deref(),
        Some("cpu-limit"),
        "{}",
        reply.text()
    );
}

/// An argument far over its limit is refused before the host copies it:
/// a 64 MiB path costs the host no 64 MiB copy (the guest's own memory
/// holds it once).
#[tokio::test]
async fn oversized_arguments_are_refused_before_they_are_copied() {
    let berth = start_with_config("[limits]\nmemory_mb = 256\n[runtime]\nmax_memory_mb = 256\n");
    berth.deploy("default", "huge", wasm("tenant")).await;
    // Warm up: the component loaded, one instance's worth of RSS.
    assert_eq!(
        berth.get("huge.localhost", "/huge-path?mb=1").await.text(),
        "refused=true"
    );
    berth.reset_peak_rss();
    let before = berth.proc_status_bytes("VmRSS");
    let reply = berth.get("huge.localhost", "/huge-path?mb=64").await;
    assert_eq!(reply.text(), "refused=true");
    let peak = berth.proc_status_bytes("VmHWM");
    let grew = peak.saturating_sub(before);
    // The guest's own string is 64 MiB of its linear memory; a host copy
    // would add as much again.
    assert!(grew < 100 << 20, "peak RSS grew by {} MiB", grew >> 20);
}

/// Made-up hostnames (each a load that fails) never push loaded workers
/// out of the worker cache.
#[tokio::test]
async fn unknown_hostnames_do_not_evict_loaded_workers() {
    let berth = start_with_config("[runtime]\ncomponent_cache_size = 2\n");
    berth.deploy("default", "a", wasm("hello")).await;
    berth.deploy("default", "b", wasm("hello")).await;
    for host in ["a.localhost", "b.localhost"] {
        assert_eq!(berth.get(host, "/").await.status, 200);
    }
    for i in 0..50 {
        let reply = berth.get(&format!("nobody-{i}.localhost"), "/").await;
        assert_eq!(reply.error_code().as_deref(), Some("worker-not-found"));
    }
    let before = berth.runtime_stats().await["cache_misses"]
        .as_u64()
        .unwrap();
    for host in ["a.localhost", "b.localhost"] {
        assert_eq!(berth.get(host, "/").await.status, 200);
    }
    let after = berth.runtime_stats().await["cache_misses"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before, "both were still loaded");
}

/// A data dir created open to others before the host started (as a
/// script's `mkdir` does) is made private.
#[tokio::test]
async fn an_existing_data_dir_open_to_others_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut berth = Berth::start_with(dir, &[]);
    let mode = std::fs::metadata(berth.data_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    berth.stop();
    assert!(berth.log().contains("made it private"), "{}", berth.log());
}
