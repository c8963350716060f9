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
use crate::capabilities::http::budget::{FIELDS_MAX_BYTES, HostMemoryView};
use crate::capabilities::kv::{self, KvState, KvView};
use crate::limits::{CpuMeter, HostMemory, MemoryLimiter};

/// Store data of one invocation.
pub struct WorkerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Memory and table caps for the instance.
    pub limiter: MemoryLimiter,
    /// What the host buffers for the instance outside its linear memory.
    pub host_memory: HostMemory,
    /// CPU-time accounting (epoch ticks observed while executing).
    pub cpu: CpuMeter,
    /// The fuel this request started with, on hosts that meter fuel.
    pub fuel_budget: Option<u64>,
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
    /// The instance's host-memory meter (also charged by its stdio
    /// captures and KV state).
    pub host_memory: HostMemory,
    /// Resource-table entries the instance may hold at once.
    pub table_slots: usize,
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
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELDS_MAX_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(p.table_slots);
        Self {
            wasi,
            http,
            table,
            limiter: MemoryLimiter::new(p.max_memory_bytes),
            host_memory: p.host_memory,
            cpu: p.cpu,
            fuel_budget: None,
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

impl HostMemoryView for WorkerState {
    fn host_memory(&self) -> &HostMemory {
        &self.host_memory
    }
}

impl WorkerState {
    /// Whether the resource table has no room for another entry (the
    /// guest ran out of table slots, its share of the host-memory budget).
    pub fn table_full(&mut self) -> bool {
        match self.table.push(()) {
            Ok(probe) => {
                let _ = self.table.delete(probe);
                false
            }
            Err(_) => true,
        }
    }

    /// A new request on a warm instance: the budget of this request.
    pub fn reset_host_memory(&mut self, buffered_bytes: usize, table_slots: usize) {
        self.host_memory.reset(buffered_bytes);
        self.table.set_max_capacity(table_slots);
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
