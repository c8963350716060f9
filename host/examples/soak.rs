//! `make soak`: 100 tenants on one Berth host for a while — well-behaved
//! ones next to hostile ones (spin, allocate, panic, never answer, hoard
//! host memory, flood subrequests at a loopback upstream) and hostile
//! clients and guests of containment part 3 (clients that give up in the
//! queue, slow readers, forged trailers, sprayed status codes, spinning in
//! host calls, huge arguments) — and what the host looks like afterwards.
//!
//! Prints requests served per class, every error that is not the limit a
//! class is expected to hit (zero is required for the well-behaved class),
//! the server's RSS at start, middle and end, its open file descriptors and
//! the pool slots still in use at the end (zero required). Exits non-zero
//! when a requirement fails.
//!
//! ```sh
//! BERTH=target/release/berth WASM_DIR=build/wasm SOAK_SECONDS=600 \
//!   cargo run --release -p berth-host --example soak
//! ```
//! Only loopback is used: the server, its admin API and the upstream.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Mutex;

/// A class of tenants: how many, what they are asked, and which
/// `x-berth-error` codes are the limits they are expected to hit.
struct Class {
    name: &'static str,
    tenants: usize,
    component: &'static str,
    path: &'static str,
    expected: &'static [&'static str],
    workers: usize,
    /// Settings patched onto each tenant after its deploy.
    settings: Option<&'static str>,
    /// How long its clients wait before they give up (`None`: 30 s).
    client_timeout_ms: Option<u64>,
    /// Answers without `x-berth-error` count as served whatever their
    /// status (the guest chose it).
    any_status: bool,
}

impl Class {
    const fn new(
        name: &'static str,
        tenants: usize,
        component: &'static str,
        path: &'static str,
        expected: &'static [&'static str],
        workers: usize,
    ) -> Self {
        Self {
            name,
            tenants,
            component,
            path,
            expected,
            workers,
            settings: None,
            client_timeout_ms: None,
            any_status: false,
        }
    }
}

const CLASSES: &[Class] = &[
    Class::new("good-hello", 30, "hello", "/", &[], 3),
    Class::new("good-echo", 26, "tenant", "/echo", &[], 3),
    Class::new("spin", 6, "tenant", "/spin", &["cpu-limit"], 1),
    Class::new(
        "allocate",
        5,
        "tenant",
        "/alloc?mb=256",
        &["memory-limit"],
        1,
    ),
    Class::new("panic", 5, "tenant", "/panic", &["exception"], 1),
    Class::new(
        "never-answer",
        4,
        "tenant",
        "/sleep?ms=600000",
        &["wall-limit"],
        1,
    ),
    // Writing 64 MiB of body data is also CPU work: on a loaded machine a
    // hoarder may hit its 50 ms of CPU before its memory.
    Class::new(
        "hoard",
        5,
        "tenant",
        "/hoard?n=64&kb=1024",
        &["memory-limit", "cpu-limit"],
        1,
    ),
    // 200 subrequests may outlast wall_ms (3 s) on a loaded machine.
    Class::new(
        "flood",
        5,
        "tenant",
        "/fetch-many?n=200&url=",
        &["subrequest-limit", "wall-limit"],
        1,
    ),
    // Containment, part 3.
    Class {
        // Clients that queue behind one slot and give up after 100 ms.
        settings: Some(r#"{"limits": {"max_concurrency": 1}}"#),
        client_timeout_ms: Some(100),
        ..Class::new(
            "quitters",
            2,
            "tenant",
            "/sleep?ms=400",
            &["overloaded", "gave-up"],
            6,
        )
    },
    Class {
        any_status: true,
        // 1xx is not a final status: the guest's error (`exception`).
        ..Class::new(
            "status-spray",
            3,
            "tenant",
            "/status?code=",
            &["exception"],
            1,
        )
    },
    Class {
        any_status: true,
        ..Class::new("forge-trailers", 2, "tenant", "/forge", &[], 1)
    },
    // Host-call time counts as CPU; behind the spinners in the heavy lane
    // a host-call spinner mostly waits for its slot, so its wall time
    // (3 s) can run out before its 50 ms of CPU.
    Class::new(
        "host-spin",
        3,
        "tenant",
        "/host-spin",
        &["cpu-limit", "wall-limit"],
        1,
    ),
    // Building the 32 MiB argument is the guest's own CPU.
    Class::new(
        "huge-args",
        2,
        "tenant",
        "/huge-path?mb=32",
        &["cpu-limit"],
        1,
    ),
    // Slow readers: /big responses whose clients read the head and stop
    // (see `slow_readers`); no loop of their own here.
    Class::new("slow-readers", 2, "tenant", "/big?mb=16", &[], 0),
];

#[derive(Default)]
struct Tally {
    served: u64,
    limited: u64,
    errors: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let berth = std::env::var("BERTH").context("BERTH=path of the berth binary")?;
    let wasm_dir = std::env::var("WASM_DIR").context("WASM_DIR=folder of the built guests")?;
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let upstream = upstream().await?;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[limits]\ncpu_ms = 50\nwall_ms = 3000\nmemory_mb = 64\nsubrequests = 50\n\
         [runtime]\ninstances = 200\n\
         [egress]\nallow_private = [\"127.0.0.1/32\"]\nports = [\"1-65535\"]\n",
    )?;
    let mut child = Command::new(&berth)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("BERTH_ADMIN_TOKEN", "soak")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log"))?)
        .spawn()
        .context("starting berth")?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut data, mut admin) = (None, None);
    while data.is_none() || admin.is_none() {
        let line = lines.next().context("berth exited before it was ready")??;
        if let Some(a) = line.strip_prefix("berth: data plane listening on http://") {
            data = Some(a.parse::<SocketAddr>()?);
        } else if let Some(a) = line.strip_prefix("berth: admin API listening on http://") {
            admin = Some(a.parse::<SocketAddr>()?);
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (data, admin) = (data.unwrap(), admin.unwrap());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Deploy: one tenant after another, as a platform would.
    for class in CLASSES {
        let bytes = std::fs::read(format!("{wasm_dir}/{}.wasm", class.component))?;
        for i in 0..class.tenants {
            let script = format!(
                "http://{admin}/v1/namespaces/default/scripts/{}-{i}",
                class.name
            );
            let reply = http
                .put(&script)
                .bearer_auth("soak")
                .header("content-type", "application/wasm")
                .body(bytes.clone())
                .send()
                .await?;
            if !reply.status().is_success() {
                bail!("deploy {}-{i}: {}", class.name, reply.text().await?);
            }
            if let Some(settings) = class.settings {
                let reply = http
                    .patch(format!("{script}/settings"))
                    .bearer_auth("soak")
                    .header("content-type", "application/json")
                    .body(settings)
                    .send()
                    .await?;
                if !reply.status().is_success() {
                    bail!("settings {}-{i}: {}", class.name, reply.text().await?);
                }
            }
        }
    }
    let tenants: usize = CLASSES.iter().map(|c| c.tenants).sum();
    println!("soak: {tenants} tenants on {data}, {seconds} s");

    let start_rss = rss(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Arc<Mutex<BTreeMap<&'static str, Tally>>> = Default::default();
    let mut loops = Vec::new();
    for class in CLASSES {
        for worker in 0..class.workers {
            let (stop, tallies) = (stop.clone(), tallies.clone());
            let http = match class.client_timeout_ms {
                Some(ms) => reqwest::Client::builder()
                    .timeout(Duration::from_millis(ms))
                    .build()?,
                None => http.clone(),
            };
            let path = if class.name == "flood" {
                format!("{}http://{upstream}/", class.path)
            } else {
                class.path.to_owned()
            };
            loops.push(tokio::spawn(async move {
                let mut i = worker;
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 7) % class.tenants;
                    round += 1;
                    let url = match class.name {
                        "status-spray" => format!("http://{data}{path}{}", 100 + round * 37 % 900),
                        _ => format!("http://{data}{path}"),
                    };
                    let reply = http
                        .get(&url)
                        .header("host", format!("{}-{i}.localhost", class.name))
                        .send()
                        .await;
                    // Read the body as a client does (the connection goes
                    // back to the pool whole), then count.
                    let reply = match reply {
                        Ok(r) => {
                            let code = r
                                .headers()
                                .get("x-berth-error")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let status = r.status();
                            r.bytes().await.map(|_| (status, code))
                        }
                        Err(e) => Err(e),
                    };
                    let mut t = tallies.lock().await;
                    let tally = t.entry(class.name).or_default();
                    match reply {
                        Ok((status, code)) => match code {
                            None if status.is_success() || class.any_status => tally.served += 1,
                            Some(code) if class.expected.contains(&code.as_str()) => {
                                tally.limited += 1
                            }
                            other => {
                                let key = other.unwrap_or_else(|| format!("status {status}"));
                                *tally.errors.entry(key).or_default() += 1;
                            }
                        },
                        Err(e) if e.is_timeout() && class.expected.contains(&"gave-up") => {
                            tally.limited += 1
                        }
                        Err(e) => *tally.errors.entry(client_error(&e)).or_default() += 1,
                    }
                }
            }));
        }
    }
    loops.push(tokio::spawn(slow_readers(data, stop.clone())));
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    let mid_rss = rss(pid);
    tokio::time::sleep(Duration::from_secs(seconds - seconds / 2)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let _ = l.await;
    }
    let end_rss = rss(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    // Let every guest finish (the longest is bounded by wall_ms).
    let settle = Instant::now();
    let mut stats = serde_json::Value::Null;
    while settle.elapsed() < Duration::from_secs(10) {
        let reply: serde_json::Value = http
            .get(format!("http://{admin}/v1/runtime"))
            .bearer_auth("soak")
            .send()
            .await?
            .json()
            .await?;
        stats = reply["result"].clone();
        if stats["pool"]["component_instances"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slots = stats["pool"]["component_instances"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .bearer_auth("soak")
        .send()
        .await?
        .text()
        .await?;
    let queued = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_admission_queue_depth "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let sprayed_series = metrics
        .lines()
        .filter(|l| l.starts_with("berth_requests_total{") && l.contains("script=\"status-spray-"))
        .count();

    println!("\n| Class | tenants | served (2xx) | expected limit hits | other errors |");
    println!("|---|---|---|---|---|");
    let tallies = tallies.lock().await;
    let mut failures = Vec::new();
    for class in CLASSES {
        let t = tallies.get(class.name).map_or((0, 0, String::new()), |t| {
            let errors: Vec<String> = t.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            (t.served, t.limited, errors.join(", "))
        });
        // Any error but the limits a class is expected to hit fails the
        // soak, for hostile classes too (a trap where a limit was due, a
        // dropped connection, an `internal`).
        if !t.2.is_empty() {
            failures.push(format!("{}: {}", class.name, t.2));
        }
        println!(
            "| {} | {} | {} | {} | {} |",
            class.name,
            class.tenants,
            t.0,
            t.1,
            if t.2.is_empty() { "0".into() } else { t.2 }
        );
    }
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "\nRSS: start {:.0} MiB, middle {:.0} MiB, end {:.0} MiB; open fds at the end: {fds}; \
         pool instances in use after the load: {slots}",
        mib(start_rss),
        mib(mid_rss),
        mib(end_rss)
    );
    println!(
        "admission queue depth after the load: {queued}; request series of the status-spray \
         tenants: {sprayed_series}"
    );
    if slots != 0 {
        failures.push(format!("{slots} pool instances still in use"));
    }
    if queued != 0.0 {
        failures.push(format!("{queued} places still taken in admission queues"));
    }
    let spray = CLASSES
        .iter()
        .find(|c| c.name == "status-spray")
        .map_or(0, |c| c.tenants);
    if sprayed_series > spray * 6 {
        failures.push(format!(
            "{sprayed_series} request series for {spray} tenants spraying statuses"
        ));
    }
    // Settled, not climbing: the second half may not add more than a
    // quarter of the middle figure (allocator noise) plus 64 MiB.
    if end_rss > mid_rss + mid_rss / 4 + 64 * 1024 {
        failures.push(format!(
            "RSS climbed from {:.0} to {:.0} MiB in the second half",
            mib(mid_rss),
            mib(end_rss)
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    if failures.is_empty() {
        println!("soak passed");
        Ok(())
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        bail!("{} soak requirement(s) failed", failures.len())
    }
}

/// Clients that ask for a large response, read its head and stop reading:
/// twenty at a time, each holding its connection 40 s (past the server's
/// 30 s write timeout) before it lets go.
async fn slow_readers(data: SocketAddr, stop: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut held = tokio::task::JoinSet::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        while held.len() < 20 {
            i += 1;
            held.spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(data).await else {
                    return;
                };
                let request = format!(
                    "GET /big?mb=16 HTTP/1.1\r\nHost: slow-readers-{}.localhost\r\n\r\n",
                    i % 2
                );
                if stream.write_all(request.as_bytes()).await.is_ok() {
                    let mut head = [0u8; 64];
                    let _ = stream.read(&mut head).await;
                    tokio::time::sleep(Duration::from_secs(40)).await;
                }
            });
        }
        tokio::select! {
            _ = held.join_next() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    held.abort_all();
}

/// A client-side failure by its innermost cause (`connection reset`,
/// `connection closed before message completed`…), without the URL, so
/// that one cause is one row whatever the path.
fn client_error(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("client: {cause}")
}

/// VmRSS of `pid`, KiB.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A loopback upstream answering every request with a short body.
async fn upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(|| async { "upstream ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
