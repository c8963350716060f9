//! The test harness: start and stop a real `berth serve`, talk to its two
//! listeners, and load the prebuilt guest components.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Sends a request head by hand (no body) and returns the status code and
/// the whole answer: for checks that a server refuses before reading a body.
pub fn raw_head(addr: SocketAddr, head: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("write head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok());
                    if length.is_some_and(|len| body.len() >= len) {
                        break;
                    }
                }
            }
            Err(e) => panic!("reading the answer failed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

/// The stdout of a `berth` CLI run that must have succeeded (its stderr
/// in the failure message otherwise).
pub fn ok(output: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "berth failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The admin token every test server runs with.
pub const TOKEN: &str = "e2e-test-token";

/// Reads a streamed response body to its end: the bytes received, and
/// whether it ended cleanly (`Ok`) or failed (an abort, a reset).
pub async fn drain(mut response: reqwest::Response) -> (usize, Result<(), reqwest::Error>) {
    let mut received = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => return (received, Ok(())),
            Err(e) => return (received, Err(e)),
        }
    }
}

/// The bytes of a prebuilt guest component, e.g. `wasm("hello")`.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = wasm_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); build the guests first with `make guests` \
             or run the tests with `make test`",
            path.display()
        )
    })
}

/// Where a prebuilt guest component lives.
pub fn wasm_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("BERTH_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/wasm"));
    dir.join(format!("{name}.wasm"))
}

/// The JS engine `make js-engine` prepared, and the shared cache of its
/// compiled code (one compile per machine, not per test server).
pub fn js_args() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let engine = std::env::var_os("BERTH_JS_ENGINE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("build/js-engine"));
    assert!(
        engine.join("manifest.json").exists(),
        "no JS engine in {}; build it with `make js-engine` or run the tests with `make test`",
        engine.display()
    );
    let cache = std::env::var_os("BERTH_JS_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("build/js-cache"));
    vec![
        "--js-engine-dir".into(),
        engine.to_string_lossy().into_owned(),
        "--js-cache-dir".into(),
        cache.to_string_lossy().into_owned(),
    ]
}

/// A running `berth serve` with its own temp data dir.
pub struct Berth {
    child: Option<Child>,
    /// Data-plane address.
    pub data: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    log: PathBuf,
    http: reqwest::Client,
    /// The extra `serve` arguments, kept for restarts.
    extra: Vec<String>,
}

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }
    /// The `x-berth-error` code, if any.
    pub fn error_code(&self) -> Option<String> {
        self.header("x-berth-error")
    }
}

impl Berth {
    /// Starts a server on a fresh temp dir.
    pub fn start() -> Berth {
        Self::start_with(tempfile::tempdir().expect("temp dir"), &[])
    }

    /// Starts a server on `dir` with extra `serve` arguments.
    pub fn start_with(dir: tempfile::TempDir, extra: &[&str]) -> Berth {
        Self::try_start(dir, extra).expect("berth serve starts")
    }

    fn try_start(dir: tempfile::TempDir, extra: &[&str]) -> Result<Berth> {
        let log = dir.path().join(format!("serve-{}.log", unique()));
        let log_file = std::fs::File::create(&log)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("BERTH_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .env_remove("BERTH_CONFIG")
            // `make test` sets these for `js_args`; a server gets the JS
            // engine only when a test asks for it (preparing it costs a
            // compile per data dir).
            .env_remove("BERTH_JS_ENGINE_DIR")
            .env_remove("BERTH_JS_CACHE_DIR")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("spawn berth")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut data, mut admin) = (None, None);
        while data.is_none() || admin.is_none() {
            let Some(line) = lines.next() else {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("berth exited before it was ready; its log:\n{log}");
            };
            let line = line?;
            if let Some(a) = line.strip_prefix("berth: data plane listening on http://") {
                data = Some(a.parse()?);
            } else if let Some(a) = line.strip_prefix("berth: admin API listening on http://") {
                admin = Some(a.parse()?);
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Berth {
            child: Some(child),
            data: data.unwrap(),
            admin: admin.unwrap(),
            dir,
            log,
            http,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait for berth")
    }

    /// Kills the server (SIGKILL: no chance to flush anything) and restarts it
    /// on the same data dir.
    pub fn crash_and_restart(self) -> Berth {
        let mut me = self;
        me.kill();
        me.start_again()
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and
    /// waits until it is gone; [`Self::start_again`] brings it back.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// Starts a killed or stopped server again on the same data dir and
    /// arguments (new ports).
    pub fn start_again(mut self) -> Berth {
        assert!(self.child.is_none(), "stop or kill the server first");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let extra = std::mem::take(&mut self.extra);
        Berth::start_with(dir, &extra.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Stops the server gracefully and restarts it on the same data dir.
    pub fn restart(mut self) -> Berth {
        let status = self.stop();
        assert!(status.success(), "berth exited with {status}");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let extra = std::mem::take(&mut self.extra);
        Berth::start_with(dir, &extra.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The server's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Threads of the server process right now (Linux /proc).
    pub fn threads(&self) -> usize {
        let pid = self.child.as_ref().expect("server running").id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse().ok())
            })
            .expect("the server's thread count")
    }

    /// A `kB` figure of the server process's `/proc/<pid>/status`
    /// (`VmRSS`, `VmHWM`, …), in bytes.
    pub fn proc_status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("server running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {field} in the server's status"))
    }

    /// Resets the server process's peak RSS (`VmHWM`) to its current RSS.
    pub fn reset_peak_rss(&self) {
        let pid = self.child.as_ref().expect("server running").id();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    }

    /// The data dir the server runs on.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A request to the data plane for `host` (Host header) and `path`.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(
            self.http
                .get(format!("http://{}{path}", self.data))
                .header("host", host),
        )
        .await
    }

    /// A request builder aimed at the data plane.
    pub fn data_request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://{}{path}", self.data))
            .header("host", host)
    }

    /// A request builder aimed at the admin API, with the token.
    pub fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://{}{path}", self.admin))
            .bearer_auth(TOKEN)
    }

    /// Sends any request and reads the whole reply.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches berth");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Admin GET with the token.
    pub async fn admin_get(&self, path: &str) -> Reply {
        self.send(self.admin_request(reqwest::Method::GET, path))
            .await
    }

    /// PATCHes a script's settings (RFC 7396 merge) with `patch`.
    pub async fn patch_settings(&self, ns: &str, name: &str, patch: Value) -> Reply {
        let path = format!("/v1/namespaces/{ns}/scripts/{name}/settings");
        self.send(
            self.admin_request(reqwest::Method::PATCH, &path)
                .json(&patch),
        )
        .await
    }

    /// Uploads `bytes` as `ns/name` (raw `application/wasm`).
    pub async fn upload(&self, ns: &str, name: &str, bytes: Vec<u8>) -> Reply {
        let request = self
            .admin_request(
                reqwest::Method::PUT,
                &format!("/v1/namespaces/{ns}/scripts/{name}"),
            )
            .header("content-type", "application/wasm")
            .body(bytes);
        self.send(request).await
    }

    /// Uploads with a `metadata` part (multipart/form-data).
    pub async fn upload_with_metadata(
        &self,
        ns: &str,
        name: &str,
        bytes: Vec<u8>,
        metadata: Value,
    ) -> Reply {
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(bytes)
                    .mime_str("application/wasm")
                    .unwrap(),
            );
        let request = self
            .admin_request(
                reqwest::Method::PUT,
                &format!("/v1/namespaces/{ns}/scripts/{name}"),
            )
            .multipart(form);
        self.send(request).await
    }

    /// Uploads and asserts success.
    pub async fn deploy(&self, ns: &str, name: &str, bytes: Vec<u8>) -> Value {
        let reply = self.upload(ns, name, bytes).await;
        assert_eq!(reply.status, 200, "deploy {ns}/{name}: {}", reply.text());
        reply.json()["result"].clone()
    }

    /// Starts a server that builds plain JavaScript, and waits until its
    /// JS engine is ready.
    ///
    /// Servers start one at a time: on a machine with a cold JS cache the
    /// first compiles the engine (tens of seconds on two cores) and every
    /// later one loads what it wrote, instead of all compiling it at once.
    pub async fn start_js(extra: &[&str]) -> Berth {
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let mut args = js_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _turn = ONE_AT_A_TIME.lock().await;
        let berth = Berth::start_with(tempfile::tempdir().expect("temp dir"), &args);
        berth.js_ready().await;
        berth
    }

    /// Waits until `GET /v1/js` says the engine is ready (the first server
    /// on a machine compiles it, later ones load the cache).
    pub async fn js_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let v = self.admin_get("/v1/js").await.json();
            match v["result"]["state"].as_str() {
                Some("ready") => return,
                Some("preparing") => {}
                other => panic!("JS engine unavailable ({other:?}): {v}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "JS engine never became ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Uploads JavaScript modules `(name, source)` as multipart with
    /// `metadata` (the first module is the main one unless it says).
    pub async fn upload_js(
        &self,
        ns: &str,
        name: &str,
        modules: &[(&str, &str)],
        metadata: Value,
    ) -> Reply {
        let mut metadata = metadata;
        if metadata.get("main_module").is_none() {
            metadata["main_module"] = Value::from(modules[0].0);
        }
        let mut form = reqwest::multipart::Form::new().part(
            "metadata",
            reqwest::multipart::Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        );
        for (module, source) in modules {
            form = form.part(
                module.to_string(),
                reqwest::multipart::Part::text(source.to_string())
                    .file_name(module.to_string())
                    .mime_str("application/javascript+module")
                    .unwrap(),
            );
        }
        let request = self
            .admin_request(
                reqwest::Method::PUT,
                &format!("/v1/namespaces/{ns}/scripts/{name}"),
            )
            .multipart(form);
        self.send(request).await
    }

    /// Creates a namespace and asserts success.
    pub async fn create_namespace(&self, ns: &str) {
        let reply = self
            .send(
                self.admin_request(reqwest::Method::POST, "/v1/namespaces")
                    .json(&serde_json::json!({"name": ns})),
            )
            .await;
        assert_eq!(reply.status, 200, "create namespace {ns}: {}", reply.text());
    }

    /// The `result` of `GET /v1/runtime`.
    pub async fn runtime_stats(&self) -> Value {
        let reply = self.admin_get("/v1/runtime").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["result"].clone()
    }

    /// Waits until no guest runs any more: every live instance is an idle
    /// warm one. A reused instance goes back to its pool just after its
    /// guest returns, which may be after the client has the whole response;
    /// sequential requests that count instances or reuse wait for this
    /// instead of racing it.
    pub async fn settle(&self) {
        eventually("the last guest to finish", || async {
            let stats = self.runtime_stats().await;
            let live = stats["pool"]["component_instances"].as_u64();
            (live == stats["warm_idle_instances"].as_u64()).then_some(())
        })
        .await
    }

    /// Runs the `berth` CLI as a client of this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_ADMIN_URL", format!("http://{}", self.admin))
            .env("BERTH_ADMIN_TOKEN", TOKEN)
            .env("BERTH_DATA_DIR", self.data_dir())
            .output()
            .expect("run berth cli")
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// A loopback HTTP upstream for guests to call: answers `upstream ok` to
/// every request after `delay`. Runs on the test's runtime.
pub async fn upstream(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        "upstream ok"
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A loopback HTTP upstream that holds every request until [`Gate::open`]
/// is called, then answers `upstream ok`: for keeping guests in flight
/// for as long as a test needs, without a timer. Runs on the test's
/// runtime.
pub async fn gated_upstream() -> (SocketAddr, Gate) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let (open, opened) = tokio::sync::watch::channel(false);
    let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let waiting = waiting.clone();
        axum::Router::new().fallback(move || {
            let (mut opened, waiting) = (opened.clone(), waiting.clone());
            async move {
                waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = opened.wait_for(|open| *open).await;
                waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                "upstream ok"
            }
        })
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, Gate { open, waiting })
}

/// The switch of a [`gated_upstream`].
pub struct Gate {
    open: tokio::sync::watch::Sender<bool>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    /// Requests held at the gate right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers every held request, and every later one at once.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Holds later requests again.
    pub fn close(&self) {
        self.open.send_replace(false);
    }
}

/// A server whose `berth.toml` is `config` (written into its temp dir).
pub fn start_with_config(config: &str) -> Berth {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, config).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    Berth::start_with(dir, &["--config", &path])
}

/// A loopback upstream that answers with the `Host` header it received.
pub async fn upstream_echo_host() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let hosts: Vec<String> = headers
            .get_all(axum::http::header::HOST)
            .iter()
            .map(|h| h.to_str().unwrap_or("?").to_owned())
            .collect();
        format!("host={}", hosts.join(","))
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A `nats-server` with JetStream on an ephemeral loopback port, storing in
/// a temp dir; stopped when dropped. `max_payload` is raised as
/// docs/scale-out.md tells operators to (1 MiB guest KV values).
pub struct Nats {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    /// Starts a server on a random port.
    pub fn start() -> Nats {
        Self::start_on(tempfile::tempdir().expect("temp dir"), None)
    }

    fn start_on(dir: tempfile::TempDir, port: Option<u16>) -> Nats {
        let conf = dir.path().join("nats.conf");
        let store = dir.path().join("js");
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: {}\nmax_payload: 8MB\njetstream {{ store_dir: {:?} }}\n",
                port.map_or(-1, i32::from),
                store.display().to_string()
            ),
        )
        .expect("write nats.conf");
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} ({e}); `make nats-server` installs it")
            });
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut found = None;
        for line in lines.by_ref() {
            let line = line.expect("nats-server log");
            if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                let addr: SocketAddr = addr.trim().parse().expect("nats address");
                found = Some(addr.port());
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let port = found.expect("nats-server printed its port");
        Nats {
            child: Some(child),
            port,
            dir,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM: JetStream flushes and exits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(mut self) -> Nats {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Nats::start_on(dir, Some(self.port))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Berth host on `nats` under bucket prefix `prefix`; `extra` is more
/// config (its own sections, or keys of `[store]`).
pub fn cluster_host(nats: &Nats, prefix: &str, extra: &str) -> Berth {
    start_with_config(&cluster_config(&nats.url(), prefix, extra))
}

/// The `berth.toml` of a cluster host reaching NATS at `url`.
pub fn cluster_config(url: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[store]\nbackend = \"nats\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\nshared_secrets_key = true\n{extra}\n"
    )
}

/// A loopback TCP proxy in front of a NATS server that a test can cut
/// (every connection through it closed, new ones refused) and restore:
/// one host losing NATS while the others keep it. Plain threads, so it
/// runs whatever the test's runtime is doing.
pub struct NatsLink {
    /// The port hosts connect to.
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl NatsLink {
    /// A proxy to `nats`'s client port.
    pub fn to(nats: &Nats) -> NatsLink {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let target = SocketAddr::from(([127, 0, 0, 1], nats.port));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::net::TcpStream>::new()));
        let (cut_flag, conns) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        list.push(clone);
                    }
                }
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        NatsLink { port, cut, open }
    }

    /// `nats://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for NatsLink {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for up to 30 s (a
/// generous deadline, not a timing assertion).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

/// [`eventually`] with another deadline, for what depends on several
/// periodic tasks at once (cluster presence announcements on a loaded
/// machine).
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_showing(what, limit, || {
        let checked = check();
        async move { checked.await.ok_or_else(String::new) }
    })
    .await
}

/// [`eventually_within`] for a check that says what it saw when it is not
/// there yet (`Err`): a timeout names the last observation.
pub async fn eventually_showing<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        let seen = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}{}{seen}",
            if seen.is_empty() { "" } else { "; last seen: " }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
