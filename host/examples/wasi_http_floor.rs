//! The floor under `make bench` case 4 (warm reuse ÷ raw axum): what serving
//! a request through a warm `wasi:http/proxy` instance costs on Wasmtime 48
//! with nothing of Berth's around it.
//!
//! It is the bare minimum a host needs: hyper (through axum, as in
//! `axum_hello`) hands each request to an idle, already-instantiated
//! instance of the component, calls its `handle` export through
//! `wasmtime-wasi-http`, and answers with what the guest set. No limits
//! (no CPU meter, epochs, fuel, memory caps), no routing, no namespace
//! store, no metrics, no logs, no memory reset between requests, no
//! admission. An instance goes back to the idle pool when its call
//! returns; the pool grows to the concurrency the load brings.
//!
//! Berth's warm reuse can only be slower than this, so warm reuse ÷ axum
//! is bounded by this floor ÷ axum on the same machine.
//!
//! `cargo run --release --example wasi_http_floor -- COMPONENT.wasm 127.0.0.1:0`
//! prints `listening on http://ADDR` and serves until killed.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What one instance's store holds: WASI, wasi:http and their handle table.
struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// An instantiated component with its store, ready for another request.
struct Warm {
    store: Store<Host>,
    proxy: Proxy,
}

struct Server {
    engine: Engine,
    pre: ProxyPre<Host>,
    idle: Mutex<Vec<Warm>>,
}

impl Server {
    async fn take(&self) -> anyhow::Result<Warm> {
        if let Some(warm) = self.idle.lock().expect("idle pool").pop() {
            return Ok(warm);
        }
        let mut store = Store::new(
            &self.engine,
            Host {
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
            },
        );
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Warm { store, proxy })
    }

    async fn serve(self: Arc<Self>, request: Request) -> anyhow::Result<Response> {
        let mut warm = self.take().await?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = request
            .map(|body| body.map_err(|error| ErrorCode::InternalError(Some(error.to_string()))));
        let incoming = warm
            .store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = warm.store.data_mut().http().new_response_outparam(sender)?;
        let server = self.clone();
        let mut run = Box::pin(async move {
            let called = warm
                .proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut warm.store, incoming, outparam)
                .await;
            if called.is_ok() {
                server.idle.lock().expect("idle pool").push(warm);
            }
        });
        // Polled inline until the guest answers (Berth's own shape: no spawn
        // for a guest that is done by then); if it is still running after
        // answering (writing its body), the rest goes to a task of its own.
        let mut receiver = receiver;
        let answer = tokio::select! {
            biased;
            answer = &mut receiver => {
                tokio::spawn(run);
                answer
            }
            () = &mut run => receiver.await,
        };
        let response = answer
            .context("the guest returned without answering")?
            .map_err(|code| anyhow::anyhow!("the guest answered with error code {code:?}"))?;
        Ok(response.map(Body::new))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let component = args
        .next()
        .context("usage: wasi_http_floor COMPONENT.wasm [ADDR]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());

    let engine = Engine::new(&Config::new())?;
    let component = Component::from_file(&engine, &component)
        .map_err(|error| anyhow::anyhow!("loading {component}: {error:#}"))?;
    let mut linker = Linker::<Host>::new(&engine);
    // hello (Rust std) imports wasi:cli too, as under `wasmtime serve -S cli`.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let server = Arc::new(Server {
        engine,
        pre,
        idle: Mutex::new(Vec::new()),
    });

    let app = Router::new()
        .fallback(
            |State(server): State<Arc<Server>>, request: Request| async move {
                match server.serve(request).await {
                    Ok(response) => response,
                    Err(error) => (
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{error:#}\n"),
                    )
                        .into_response(),
                }
            },
        )
        .with_state(server);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
