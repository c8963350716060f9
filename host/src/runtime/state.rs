//! What a guest's `Store` holds for one invocation, and the linker that
//! exposes it.
//!
//! The guest gets `wasi:http/proxy` plus the rest of `wasi:cli` that
//! `wasm32-wasip2` toolchains import, and nothing of the host: its
//! environment is only the script's own vars, it has no arguments, no
//! preopened directories, no sockets (the interfaces are linked so
//! components instantiate, but every socket and name lookup is refused),
//! and its stdout/stderr go to bounded per-request captures.

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::stdio::OutputCapture;
use crate::dispatch::DispatchBinding;
use crate::egress::EgressHooks;
use crate::limits::{CpuMeter, MemoryLimiter};

/// Store data of one invocation.
pub struct WorkerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Memory and table caps for the instance.
    pub limiter: MemoryLimiter,
    /// Outbound HTTP policy and accounting.
    pub egress: EgressHooks,
    /// CPU-time accounting (epoch ticks observed while executing).
    pub cpu: CpuMeter,
    /// Set for dispatch workers: which namespace `dispatcher.get` reaches.
    pub dispatch: Option<DispatchBinding>,
    /// The script's key-value bucket (none for platform components).
    pub kv: Option<crate::kv::KvScope>,
}

/// Inputs for a new [`WorkerState`].
pub struct StateParams<'a> {
    /// Environment variables the guest sees (the script's vars only).
    pub env: &'a [(String, String)],
    /// Where guest stdout goes.
    pub stdout: OutputCapture,
    /// Where guest stderr goes.
    pub stderr: OutputCapture,
    /// Total linear memory the instance may use.
    pub max_memory_bytes: usize,
    /// Egress state for this invocation.
    pub egress: EgressHooks,
    /// CPU budget for this invocation.
    pub cpu: CpuMeter,
    /// Dispatcher binding (dispatch workers only).
    pub dispatch: Option<DispatchBinding>,
    /// The script's key-value bucket.
    pub kv: Option<crate::kv::KvScope>,
}

impl WorkerState {
    /// Fresh, deny-by-default state for one invocation.
    pub fn new(p: StateParams<'_>) -> Self {
        let wasi = WasiCtx::builder()
            .envs(p.env)
            .stdout(p.stdout)
            .stderr(p.stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(p.max_memory_bytes),
            egress: p.egress,
            cpu: p.cpu,
            dispatch: p.dispatch,
            kv: p.kv,
        }
    }
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for WorkerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl WorkerState {
    /// The resource table (for host implementations of Berth's interfaces).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// The linker shared by all tenants: WASI p2 (cli, clocks, random, io,
/// filesystem and sockets that refuse everything) plus `wasi:http`.
pub fn build_linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("linking wasi:http: {e:#}"))?;
    crate::kv::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// The dispatch workers' linker: everything user workers get, plus
/// `berth:platform/dispatcher`.
pub fn build_dispatch_linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = build_linker(engine)?;
    crate::dispatch::add_to_linker(&mut linker)?;
    Ok(linker)
}
