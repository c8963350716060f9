//! Embedding Berth in an existing axum service.
//!
//! The service has routes of its own (`/` and `/api/status`) and hands every
//! request for `*.apps.localhost` to Berth's data plane, where the first
//! label names the tenant's script. At start it deploys a tenant from Rust —
//! no admin API, no CLI — and mounts Berth's admin API under `/berth-admin`.
//!
//! ```sh
//! make guests
//! cargo run -p berth-host --example embed -- build/wasm/hello.wasm
//! curl -H 'Host: hello.apps.localhost' http://127.0.0.1:3000/   # the tenant
//! curl http://127.0.0.1:3000/api/status                          # the service
//! ```
//!
//! With `--self-test` it answers a few requests in-process with
//! `tower::ServiceExt::oneshot`, prints what it got and exits (the
//! end-to-end tests run it that way).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use berth_host::{Berth, Config, Name};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The wildcard domain the tenants live under.
const TENANT_SUFFIX: &str = ".apps.localhost";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut component = None;
    let mut self_test = false;
    for arg in args.by_ref() {
        match arg.as_str() {
            "--self-test" => self_test = true,
            path => component = Some(path.to_owned()),
        }
    }
    let component = component.context("usage: embed [--self-test] TENANT.wasm")?;
    let bytes = std::fs::read(&component).with_context(|| format!("reading {component}"))?;

    // Berth's configuration, built in code (TOML works too: Config::parse).
    let data_dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.data_dir = data_dir.path().to_path_buf();
    config.runtime.instances = 50;
    config.limits.cpu_ms = 50;
    let berth = Berth::builder(config)
        .admin_token("embed-demo")
        .build()
        .await?;

    // Deploy a tenant from Rust.
    let default = Name::new("default")?;
    let record = berth
        .deploy(&default, &Name::new("hello")?, bytes, Default::default())
        .await?;
    println!(
        "deployed {}/{} version {}",
        record.namespace, record.name, record.version
    );

    let app = app(&berth);
    if self_test {
        let result = run_self_test(app).await;
        berth.shutdown().await;
        return result;
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 3000).into();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}; tenants at http://<script>{TENANT_SUFFIX}:3000/");
    axum::serve(listener, app)
        .with_graceful_shutdown(berth_host::shutdown_signal())
        .await?;
    berth.shutdown().await;
    Ok(())
}

/// The service: its own routes, Berth's admin API nested under a prefix,
/// and Berth's data plane for every tenant host.
fn app(berth: &Berth) -> Router {
    let own = Router::new()
        .route("/", get(|| async { "the platform's own home page\n" }))
        .route("/api/status", get(|| async { "ok\n" }))
        .nest("/berth-admin", berth.admin_router());
    let tenants = berth.data_router();
    Router::new().fallback(move |request: Request| {
        let (own, tenants) = (own.clone(), tenants.clone());
        async move {
            let router = if is_tenant_host(&request) {
                tenants
            } else {
                own
            };
            router
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {})
        }
    })
}

fn is_tenant_host(request: &Request) -> bool {
    request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase())
        .is_some_and(|h| h.ends_with(TENANT_SUFFIX))
}

async fn run_self_test(app: Router) -> anyhow::Result<()> {
    let get = |host: &str, path: &str| {
        Request::builder()
            .uri(path)
            .header(http::header::HOST, host)
            .body(Body::empty())
            .expect("a valid request")
    };
    let checks = [
        (get("hello.apps.localhost", "/"), 200, None),
        (get("localhost:3000", "/api/status"), 200, Some("ok")),
        (get("nobody.apps.localhost", "/"), 404, None),
    ];
    for (request, status, body) in checks {
        let host = request.headers()[http::header::HOST].to_str()?.to_owned();
        let response: Response = app.clone().oneshot(request).await?;
        let got = response.status().as_u16();
        let code = response
            .headers()
            .get("x-berth-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let text = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes())
            .trim()
            .to_owned();
        println!("{host}: {got} {code} {text}");
        if got != status || body.is_some_and(|b| b != text) {
            bail!("{host}: expected {status} {body:?}, got {got} {text:?}");
        }
    }
    println!("self-test passed");
    Ok(())
}
