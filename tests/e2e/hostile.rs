//! Hostile input at the edges: bounded hosts, one authority for route and
//! guest, unforgeable platform headers, private error details, broken
//! paths, slow clients, the connection cap, the egress port policy, loops
//! through a worker's own hostname, a DNS server that never answers, and
//! data at rest.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Berth, raw_head, start_with_config, upstream, wasm, wasm_path};

/// Reads until the peer closes (or 30 s pass): what a client sees of a
/// connection the server cut off. Returns what arrived and whether the
/// connection was closed.
fn read_until_closed(stream: &mut TcpStream) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&seen).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("connect")
}

#[tokio::test]
async fn hosts_are_bounded_and_route_and_guest_see_one_authority() {
    let berth = Berth::start();
    berth.deploy("default", "hello", wasm("hello")).await;
    let port = berth.data.port();

    // Over 253 bytes: refused before any routing.
    let long = format!("{}.localhost", "a".repeat(260));
    let (status, answer) = raw_head(
        berth.data,
        &format!("GET / HTTP/1.1\r\nHost: {long}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("x-berth-error: bad-request"), "{answer}");
    assert!(answer.contains("bytes"), "{answer}");

    // The measured attack: 150,000 labels (300 KB). Refused (by the host
    // check, or by hyper's header limit), never routed.
    let huge = vec!["a"; 150_000].join(".");
    let (status, answer) = raw_head(
        berth.data,
        &format!("GET / HTTP/1.1\r\nHost: {huge}\r\nConnection: close\r\n\r\n"),
    );
    assert!(status == 400 || status == 431, "{status}: {answer:.300}");

    // Absolute-form target naming another host than Host: refused.
    let (status, answer) = raw_head(
        berth.data,
        "GET http://victim.localhost/ HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("x-berth-error: bad-request"), "{answer}");
    assert!(answer.contains("victim.localhost"), "{answer}");
    // The same authority in both: served.
    let (status, answer) = raw_head(
        berth.data,
        &format!(
            "GET http://hello.localhost:{port}/ HTTP/1.1\r\nHost: hello.localhost:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{answer}");

    // A request that already made too many hops is refused.
    let looped = berth
        .send(
            berth
                .data_request(Method::GET, "hello.localhost", "/")
                .header("berth-hop-count", "8"),
        )
        .await;
    assert_eq!(looped.status, 508, "{}", looped.text());
    assert_eq!(looped.error_code().as_deref(), Some("loop-detected"));
}

#[tokio::test]
async fn informational_statuses_are_the_guests_error_and_keep_the_connection() {
    let berth = Berth::start();
    berth.deploy("default", "spray", wasm("tenant")).await;
    // One client, one keep-alive connection: a 1xx sent as a final
    // response used to get hyper's own bare 500 and then lose the
    // connection under the next request.
    for code in [100, 101, 103, 150, 199] {
        let reply = berth
            .get("spray.localhost", &format!("/status?code={code}"))
            .await;
        assert_eq!(reply.status, 500, "status {code}");
        assert_eq!(
            reply.error_code().as_deref(),
            Some("exception"),
            "status {code}"
        );
        let next = berth.get("spray.localhost", "/status?code=200").await;
        assert_eq!(next.status, 200, "the request after status {code}");
    }
    for code in [200, 204, 404, 599, 999] {
        let reply = berth
            .get("spray.localhost", &format!("/status?code={code}"))
            .await;
        assert_eq!(reply.status, code, "a guest's own status {code} is kept");
        assert_eq!(reply.error_code(), None, "status {code}");
    }
}

#[tokio::test]
async fn a_guest_cannot_speak_for_the_platform() {
    let dispatcher = wasm_path("dispatcher");
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"*.platform.test\"]\nworker = \"{}\"\nnamespace = \"customers\"\n\
         vars = {{ PLATFORM_DOMAIN = \"platform.test\" }}\n",
        dispatcher.display()
    ));
    berth.deploy("default", "forger", wasm("tenant")).await;
    berth.deploy("customers", "forger", wasm("tenant")).await;
    for host in ["forger.localhost", "forger.platform.test"] {
        let reply = berth.get(host, "/forge").await;
        assert_eq!(reply.status, 503, "{host}: the guest's own status stays");
        assert_eq!(reply.text(), "forged\n", "{host}");
        assert_eq!(reply.error_code(), None, "{host}: a forged x-berth-error");
        assert_eq!(reply.header("berth-region"), None, "{host}");
        assert_eq!(reply.header("x-berth-anything"), None, "{host}");
        let id = reply.header("berth-request-id").expect("the host's id");
        assert_ne!(id, "forged", "{host}");
        assert_eq!(id.len(), 16, "{host}: {id}");
        assert_eq!(reply.header("x-kept").as_deref(), Some("yes"), "{host}");
        // Nor in the trailers that end the body, over HTTP/1.1 (chunked,
        // the client asked for trailers) and HTTP/2. The guest's own
        // trailer arrives on both paths (the example dispatch worker passes
        // the response through with `send-response`, trailers included).
        let (head, trailers) = http1_trailers(berth.data, host, "/forge");
        assert!(head.starts_with("HTTP/1.1 503"), "{host}: {head}");
        assert!(
            trailers.contains("x-trailer-kept: yes"),
            "{host}: {trailers:?}"
        );
        assert!(!trailers.contains("x-berth-error"), "{host}: {trailers:?}");
        assert!(
            !trailers.contains("berth-request-id"),
            "{host}: {trailers:?}"
        );
        let trailers = http2_trailers(berth.data, host, "/forge").await;
        assert!(
            trailers.contains_key("x-trailer-kept"),
            "{host}: {trailers:?}"
        );
        assert!(
            trailers.get("x-berth-error").is_none(),
            "{host}: {trailers:?}"
        );
        assert!(
            trailers.get("berth-request-id").is_none(),
            "{host}: {trailers:?}"
        );
    }
}

/// A GET over HTTP/1.1 that accepts trailers: the response head, and the
/// trailer section after the last chunk.
fn http1_trailers(addr: std::net::SocketAddr, host: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nTE: trailers\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read to the end");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let trailers = body
        .rsplit_once("\r\n0\r\n")
        .map(|(_, rest)| rest.to_ascii_lowercase())
        .expect("a last chunk");
    (head.to_owned(), trailers)
}

/// A GET over HTTP/2 (prior knowledge) and the trailers of its response.
async fn http2_trailers(addr: std::net::SocketAddr, host: &str, path: &str) -> http::HeaderMap {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 connection");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(format!("http://{host}{path}"))
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let collected = response.into_body().collect().await.expect("the body");
    collected.trailers().cloned().unwrap_or_default()
}

#[tokio::test]
async fn trap_details_reach_the_log_not_the_public() {
    let mut berth = Berth::start();
    berth.deploy("default", "app", wasm("tenant")).await;
    let panic = berth.get("app.localhost", "/panic").await;
    assert_eq!(panic.status, 500);
    assert_eq!(panic.error_code().as_deref(), Some("exception"));
    let text = panic.text();
    assert!(!text.contains("panicked on purpose"), "{text}");
    assert!(!text.contains("wasm"), "no trap text or backtrace: {text}");
    let id = panic.header("berth-request-id").expect("request id");
    assert!(text.contains(&id), "the body names the request id: {text}");
    // A trap: the fixed public sentence with the request id, nothing else.
    let trap = berth.get("app.localhost", "/trap").await;
    assert_eq!(trap.status, 500, "{}", trap.text());
    assert_eq!(trap.error_code().as_deref(), Some("exception"));
    let id = trap.header("berth-request-id").expect("request id");
    assert_eq!(
        trap.text(),
        format!("Worker threw an exception (request id {id}; details in the platform's logs)\n")
    );
    berth.stop();
    assert!(
        berth.log().contains("tenant panicked on purpose"),
        "the details are in the log"
    );

    // Opt-in for local development.
    let dev = start_with_config("[server]\nexpose_error_details = true\n");
    dev.deploy("default", "app", wasm("tenant")).await;
    let panic = dev.get("app.localhost", "/panic").await;
    assert_eq!(panic.status, 500);
    assert!(
        panic.text().contains("tenant panicked on purpose"),
        "{}",
        panic.text()
    );
}

#[tokio::test]
async fn a_broken_escape_in_an_asset_path_answers_400_and_serving_goes_on() {
    let berth = Berth::start();
    berth.deploy("default", "site", wasm("hello")).await;
    let content = b"<h1>hi</h1>".to_vec();
    let sha = hex_sha(&content);
    let manifest = json!({"/index.html": {"sha256": sha, "size": content.len()}}).to_string();
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest)
        .part(sha.clone(), reqwest::multipart::Part::bytes(content));
    let reply = berth
        .send(
            berth
                .admin_request(Method::PUT, "/v1/namespaces/default/scripts/site/assets")
                .multipart(form),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The measured panic: '%', one hex digit, then a multi-byte character.
    for path in ["/%a\u{e9}", "/%", "/%zz", "/%ff"] {
        let (status, answer) = raw_head(
            berth.data,
            &format!("GET {path} HTTP/1.1\r\nHost: site.localhost\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer.contains("x-berth-error: bad-request"),
            "{path}: {answer}"
        );
    }
    let ok = berth.get("site.localhost", "/").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "<h1>hi</h1>");
}

fn hex_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let berth = start_with_config(
        "[server]\nrequest_head_timeout_ms = 300\nidle_timeout_ms = 300\nbody_read_timeout_ms = 300\n",
    );
    berth.deploy("default", "app", wasm("tenant")).await;

    // Half a request head, then nothing: closed after the configured
    // 300 ms, well before the 10 s default would have closed it (5 s is a
    // deadline, not a measurement).
    let mut half = connect(berth.data);
    half.write_all(b"GET /echo HTTP/1.1\r\nHost: app.loc")
        .unwrap();
    let started = Instant::now();
    let (seen, closed) = read_until_closed(&mut half);
    assert!(closed, "a half-sent head is not held open: {seen:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held open for {:?}: the default head timeout, not the configured one",
        started.elapsed()
    );
    assert!(!seen.contains("200 OK"), "{seen}");

    // Nothing at all: closed too.
    let mut silent = connect(berth.data);
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut silent);
    assert!(closed, "a silent connection is not held open");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held open for {:?}",
        started.elapsed()
    );

    // A kept-alive connection after its response: closed when idle.
    let mut idle = connect(berth.data);
    idle.write_all(b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
        .unwrap();
    let (seen, closed) = read_until_closed(&mut idle);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(closed, "an idle keep-alive connection is closed");

    // A body that stops halfway: the worker's read fails and the request
    // ends instead of waiting for ever.
    let mut body = connect(berth.data);
    body.write_all(
        b"POST /echo HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    let (seen, _) = read_until_closed(&mut body);
    // The fixture stops reading at the failed read and answers what it
    // got: 200 with the ten bytes that came.
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen:?}");
    assert!(seen.contains(r#""body_bytes":10"#), "{seen:?}");

    // The server still serves.
    assert_eq!(berth.get("app.localhost", "/echo").await.status, 200);
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_clearly() {
    let berth = start_with_config("[server]\nmax_connections = 2\n");
    berth.deploy("default", "hello", wasm("hello")).await;
    let first = connect(berth.data);
    let second = connect(berth.data);
    // Both are accepted and held (they have 10 s for a head); the third is
    // over the cap.
    let mut third = connect(berth.data);
    let (seen, closed) = read_until_closed(&mut third);
    assert!(closed);
    assert!(seen.starts_with("HTTP/1.1 503"), "{seen}");
    assert!(seen.contains("x-berth-error: overloaded"), "{seen}");
    assert!(seen.contains("retry-after: 1"), "{seen}");
    drop((first, second));
    // Once they are gone, new connections are served again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = raw_head(
            berth.data,
            "GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n",
        );
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn egress_ports_are_policy_and_self_calls_cannot_loop() {
    let up = upstream(Duration::ZERO).await;
    // Loopback opened, but the upstream's port is not in the default ports.
    let closed = start_with_config("[egress]\nallow_private = [\"127.0.0.1/32\"]\n");
    closed.deploy("default", "app", wasm("tenant")).await;
    let url = format!("/fetch?url=http://{up}/");
    let reply = closed.get("app.localhost", &url).await;
    assert!(reply.text().starts_with("error"), "{}", reply.text());
    assert!(
        closed
            .log()
            .contains(&format!("port {} is not in [egress] ports", up.port())),
        "the denial names the rule"
    );
    let open = start_with_config(&format!(
        "[egress]\nallow_private = [\"127.0.0.1/32\"]\nports = [\"{}\"]\n",
        up.port()
    ));
    open.deploy("default", "app", wasm("tenant")).await;
    let reply = open.get("app.localhost", &url).await;
    assert!(reply.text().starts_with("200"), "{}", reply.text());

    // A worker that fetches its own public hostname: the chain stops at
    // max_hops with 508 loop-detected instead of fanning out.
    let looping = start_with_config(
        "[egress]\nallow_private = [\"127.0.0.1/32\"]\nports = [\"1-65535\"]\nmax_hops = 4\n\
         hosts = { \"loop.localhost\" = [\"127.0.0.1\"] }\n",
    );
    looping.deploy("default", "loop", wasm("tenant")).await;
    let host = format!("loop.localhost:{}", looping.data.port());
    let reply = looping.get(&host, "/self-fetch").await;
    assert_eq!(reply.status, 508, "{}", reply.text());
    assert!(reply.text().contains("Loop detected"), "{}", reply.text());
}

#[tokio::test]
async fn a_dns_server_that_never_answers_holds_no_threads() {
    // A UDP socket that never answers: every query waits for its timeout.
    // It reads what arrives, to prove the lookups did ask it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (asked, stop) = (asked.clone(), stop.clone());
        silent
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let mut packet = [0u8; 1500];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((n, _)) = silent.recv_from(&mut packet) {
                    asked.lock().unwrap().push(dns_question(&packet[..n]));
                }
            }
        })
    };
    let berth = start_with_config(&format!(
        "[egress]\nnameservers = [\"{dns}\"]\nconnect_timeout_ms = 500\n"
    ));
    berth.deploy("default", "app", wasm("tenant")).await;
    assert_eq!(berth.get("app.localhost", "/echo").await.status, 200);
    let before = berth.threads();
    let berth_ref = &berth;
    let lookups = (0..24).map(|i| {
        let path = format!("/fetch?url=http://name-{i}.never.test/");
        async move { berth_ref.get("app.localhost", &path).await }
    });
    for reply in futures::future::join_all(lookups).await {
        assert!(reply.text().starts_with("error"), "{}", reply.text());
    }
    let after = berth.threads();
    assert!(
        after < before + 8,
        "24 stuck lookups must not cost a thread each: {before} → {after} threads"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    listener.join().unwrap();
    // Every name was asked of the silent server.
    let asked = asked.lock().unwrap();
    for i in 0..24 {
        let name = format!("name-{i}.never.test");
        assert!(
            asked
                .iter()
                .any(|q| q.to_ascii_lowercase().starts_with(&name)),
            "{name} never reached the server; it was asked {asked:?}"
        );
    }
}

/// The name a DNS query asks about (its first question), dotted.
fn dns_question(packet: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 12; // after the header
    while let Some(&len) = packet.get(at) {
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        let label = packet
            .get(at + 1..at + 1 + len as usize)
            .unwrap_or_default();
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += 1 + len as usize;
    }
    labels.join(".")
}

#[tokio::test]
async fn the_data_dir_is_private_and_secrets_are_sealed_at_rest() {
    use std::os::unix::fs::PermissionsExt;
    let berth = Berth::start();
    berth.deploy("default", "vault", wasm("tenant")).await;
    let secret = "hunter2-at-rest-7f3a";
    let reply = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/default/scripts/vault/secrets/TOKEN",
                )
                .json(&json!({"value": secret})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        berth
            .get("vault.localhost", "/echo")
            .await
            .text()
            .contains(secret)
    );
    // Writes are durable when acknowledged: the files on disk are what a
    // copy of the store would hold.

    let data = berth.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("secrets.key")), 0o600, "secrets key");
    let mut files = Vec::new();
    let mut dirs = vec![data.join("store")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert!(!files.is_empty());
    for file in &files {
        assert_eq!(mode(file) & 0o077, 0, "{} is private", file.display());
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret in clear",
            file.display()
        );
    }
    let berth = berth.restart();
    assert!(
        berth
            .get("vault.localhost", "/echo")
            .await
            .text()
            .contains(secret),
        "the secret still reaches the guest after a restart"
    );
}
