//! What a guest's `Store` holds for one invocation, and the linker that
//! exposes it.
//!
//! [`WorkerState`] is the sandbox — WASI (environment, bounded stdout and
//! stderr, no sockets), the resource table, the limits' enforcement state —
//! plus [`Capabilities`], every capability's own state, built and reset by
//! the capabilities themselves. Nothing here implements a WIT interface or
//! names a capability.
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
use crate::base::Role;
use crate::capabilities::{Capabilities, CapabilityHost, HostParts};
use crate::limits::host_memory::FIELDS_MAX_BYTES;
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
    /// Every capability's state.
    pub capabilities: Capabilities,
}

/// The sandbox part of a new [`WorkerState`].
pub struct Sandbox<'a> {
    /// Environment variables the guest sees (the script's vars only).
    pub env: &'a [(String, String)],
    /// Where guest stdout goes.
    pub stdout: OutputCapture,
    /// Where guest stderr goes.
    pub stderr: OutputCapture,
    /// Total linear memory the instance may use.
    pub max_memory_bytes: usize,
    /// The instance's host-memory meter (also charged by its stdio
    /// captures and the capabilities).
    pub host_memory: HostMemory,
    /// Resource-table entries the instance may hold at once.
    pub table_slots: usize,
    /// CPU budget for this invocation.
    pub cpu: CpuMeter,
}

impl WorkerState {
    /// Fresh, deny-by-default state for one invocation.
    pub fn new(sandbox: Sandbox<'_>, capabilities: Capabilities) -> Self {
        let wasi = WasiCtx::builder()
            .envs(sandbox.env)
            .stdout(sandbox.stdout)
            .stderr(sandbox.stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELDS_MAX_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(sandbox.table_slots);
        Self {
            wasi,
            http,
            table,
            limiter: MemoryLimiter::new(sandbox.max_memory_bytes),
            host_memory: sandbox.host_memory,
            cpu: sandbox.cpu,
            fuel_budget: None,
            capabilities,
        }
    }

    /// The resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

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
            hooks: &mut self.capabilities.http,
        }
    }
}

impl CapabilityHost for WorkerState {
    fn parts(&mut self) -> HostParts<'_> {
        HostParts {
            capabilities: &mut self.capabilities,
            table: &mut self.table,
            http: &mut self.http,
            host_memory: &self.host_memory,
        }
    }
}

/// The linker for components serving as `role`: WASI p2 (cli, clocks,
/// random, io, and filesystem and sockets that refuse everything), then
/// every capability for that role.
pub fn build_linker(engine: &wasmtime::Engine, role: Role) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
    Capabilities::add_to_linker(&mut linker, role)?;
    Ok(linker)
}
