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
//! Two more modes give the floors under Berth's fresh-instance paths, on an
//! engine configured as Berth's is for them (pooling allocator with the
//! same pool sizes, copy-on-write memory images, `PAGEMAP_SCAN` resets;
//! no epochs, no fuel):
//! - `fresh`: a new instance per request, dropped after it (the floor
//!   under hello with a fresh instance, `make bench` case 1);
//! - `chain`: two new instances per request, one after the other, the
//!   second answering (the floor under a dispatched request, case 2: a
//!   dispatch worker and a user worker are two fresh `wasi:http` calls
//!   before the dispatcher's own host call and the copy between them).
//!
//! `cargo run --release --example wasi_http_floor -- COMPONENT.wasm 127.0.0.1:0 [warm|fresh|chain]`
//! prints `listening on http://ADDR` and serves until killed.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
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

/// How many instances a request goes through, and whether they are kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One instance, back to the idle pool after its call.
    Warm,
    /// One new instance per request.
    Fresh,
    /// Two new instances per request; the second one answers.
    Chain,
}

struct Server {
    engine: Engine,
    pre: ProxyPre<Host>,
    idle: Mutex<Vec<Warm>>,
    mode: Mode,
}

impl Server {
    async fn take(&self) -> anyhow::Result<Warm> {
        if self.mode == Mode::Warm
            && let Some(warm) = self.idle.lock().expect("idle pool").pop()
        {
            return Ok(warm);
        }
        self.instantiate().await
    }

    async fn instantiate(&self) -> anyhow::Result<Warm> {
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

    /// The chain's first hop: a fresh instance handles a copy of the
    /// request's head, its answer is read to the end and dropped.
    async fn first_hop(self: &Arc<Self>, copy: Request) -> anyhow::Result<()> {
        let response = self.call(copy).await?;
        response.into_body().collect().await?;
        Ok(())
    }

    /// A copy of `request`'s method, URI and headers, with no body.
    fn head_of(request: &Request) -> anyhow::Result<Request> {
        let mut head = http::Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone());
        for (name, value) in request.headers() {
            head = head.header(name, value);
        }
        Ok(head.body(Body::empty())?)
    }

    async fn serve(self: Arc<Self>, request: Request) -> anyhow::Result<Response> {
        if self.mode == Mode::Chain {
            let copy = Self::head_of(&request)?;
            self.first_hop(copy).await?;
        }
        self.call(request).await
    }

    async fn call(self: &Arc<Self>, request: Request) -> anyhow::Result<Response> {
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
            if called.is_ok() && server.mode == Mode::Warm {
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
    let mode = match args.next().as_deref() {
        None | Some("warm") => Mode::Warm,
        Some("fresh") => Mode::Fresh,
        Some("chain") => Mode::Chain,
        Some(other) => anyhow::bail!("unknown mode {other:?}: expected warm, fresh or chain"),
    };

    let mut config = Config::new();
    if mode != Mode::Warm {
        // Berth's defaults for fresh instances (host/src/runtime/engine.rs
        // and config.rs), less epochs and fuel.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(1000)
            .total_core_instances(10_000)
            .total_memories(2000)
            .total_tables(4000)
            .total_stacks(1000)
            .max_memory_size(256 << 20)
            .max_unused_warm_slots(100)
            .linear_memory_keep_resident(2048 << 10)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .max_core_instances_per_component(50)
            .max_memories_per_component(10)
            .max_tables_per_component(50);
        config
            .memory_init_cow(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
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
        mode,
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
