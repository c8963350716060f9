//! What a guest's `Store` holds for one invocation, and the linkers that
//! expose it.
//!
//! [`WorkerState`] only aggregates: WASI (environment, bounded stdout and
//! stderr, no sockets), the resource table, the limits' enforcement state
//! and each capability's own state. Every capability is linked through its
//! own `add_to_linker` with a function that hands out its view of this
//! state; nothing here implements a WIT interface itself.
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
use crate::capabilities::dispatcher::{self, DispatcherState, DispatcherView};
use crate::capabilities::http::EgressHooks;
use crate::capabilities::kv::{self, KvState, KvView};
use crate::limits::{CpuMeter, MemoryLimiter};

/// Store data of one invocation.
pub struct WorkerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Memory and table caps for the instance.
    pub limiter: MemoryLimiter,
    /// CPU-time accounting (epoch ticks observed while executing).
    pub cpu: CpuMeter,
    /// HTTP capability: outbound policy and accounting.
    pub egress: EgressHooks,
    /// Dispatcher capability (dispatch workers only).
    pub dispatch: DispatcherState,
    /// KV capability: the script's bucket (none for platform components).
    pub kv: KvState,
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
    /// CPU budget for this invocation.
    pub cpu: CpuMeter,
    /// HTTP capability state for this invocation.
    pub egress: EgressHooks,
    /// Dispatcher capability state.
    pub dispatch: DispatcherState,
    /// KV capability state.
    pub kv: KvState,
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
            cpu: p.cpu,
            egress: p.egress,
            dispatch: p.dispatch,
            kv: p.kv,
        }
    }

    /// The resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn kv_view(&mut self) -> KvView<'_> {
        KvView {
            state: &mut self.kv,
            table: &mut self.table,
        }
    }

    fn dispatcher_view(&mut self) -> DispatcherView<'_> {
        DispatcherView {
            state: &mut self.dispatch,
            http: WasiHttpCtxView {
                ctx: &mut self.http,
                table: &mut self.table,
                hooks: &mut self.egress,
            },
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

/// The linker shared by all tenants: WASI p2 (cli, clocks, random, io,
/// filesystem and sockets that refuse everything), `wasi:http` and KV.
pub fn build_linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
    crate::capabilities::http::add_to_linker(&mut linker)?;
    kv::add_to_linker(&mut linker, WorkerState::kv_view)?;
    Ok(linker)
}

/// The dispatch workers' linker: everything user workers get, plus
/// `berth:platform/dispatcher`.
pub fn build_dispatch_linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = build_linker(engine)?;
    dispatcher::add_to_linker(&mut linker, WorkerState::dispatcher_view)?;
    Ok(linker)
}
