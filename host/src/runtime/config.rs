//! `[runtime]`: the engine, pooling allocator, epoch ticker and caches.
//! Owned here because only the runtime reads it; `crate::config`
//! aggregates it into `berth.toml`.

use serde::{Deserialize, Serialize};

use crate::base::{Invalid, require_positive};

/// `[runtime]`: the shared engine and its pooling instance allocator.
///
/// The pool is sized up front: every slot is virtual address space reserved
/// at start-up, and a request that finds the pool full is answered with
/// `503 overloaded` instead of allocating more.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Component instances alive at once (one per in-flight request).
    pub instances: u32,
    /// Core wasm instances across all components (a component holds several).
    pub core_instances: u32,
    /// Linear memories across all instances.
    pub memories: u32,
    /// Tables across all instances.
    pub tables: u32,
    /// Largest linear memory any guest may grow to, in MiB (hard ceiling;
    /// per-script limits can only be lower).
    pub max_memory_mb: u64,
    /// Freed slots kept warm (resident) for reuse.
    pub max_unused_warm_slots: u32,
    /// Bytes of each freed linear memory reset with `memset` (only the
    /// dirty pages, where the kernel has `PAGEMAP_SCAN`) instead of
    /// `madvise`, in KiB. Avoids a syscall and a TLB shootdown per request.
    pub memory_keep_resident_kb: usize,
    /// The same for tables, in KiB.
    pub table_keep_resident_kb: usize,
    /// Freed slots whose `madvise` is batched into one call.
    pub decommit_batch_size: usize,
    /// Memory protection keys (Intel/AMD PKU) to pack linear memories
    /// without guard regions: `no`, `auto` (where the CPU and kernel have
    /// them) or `yes` (fail to start without them).
    pub mpk: Mpk,
    /// Period of the single engine-wide epoch ticker, in milliseconds. It
    /// bounds how long a guest can run before it yields to other requests.
    pub epoch_tick_ms: u64,
    /// Compiled, pre-instantiated components kept in memory.
    pub component_cache_size: usize,
    /// Bytes of a guest's stdout and of its stderr kept per request, in KiB.
    pub stdio_capture_kb: usize,
    /// Namespace/script pairs itemised in `/metrics`; later ones are
    /// aggregated as `script="_other"` (bounded label cardinality).
    pub max_script_series: usize,
    /// Slots of the lane CPU-heavy invocations take turns in (guests past
    /// 10 ms of CPU in one request); `0` = one less than the available
    /// cores (at least 1), so light requests always find a core.
    pub heavy_lanes: usize,
    /// `perfmap`: Wasmtime writes `/tmp/perf-<pid>.map` naming every
    /// compiled guest function, so `perf report` shows guest code by
    /// function instead of anonymous `[JIT]` addresses (for profiling;
    /// `none` by default).
    pub profiler: Profiler,
    /// Where Cranelift's incremental compilation cache lives (set by the
    /// host to `data_dir/cache/compile`; `None`: every compile starts from
    /// scratch). Not a `berth.toml` key.
    #[serde(skip)]
    pub compile_cache_dir: Option<std::path::PathBuf>,
}

/// `runtime.mpk`: whether the pooling allocator uses memory protection keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mpk {
    /// Never (the default: Wasmtime 48 calls MPK experimental).
    No,
    /// Where the CPU and kernel support it.
    Auto,
    /// Always; the host fails to start without support.
    Yes,
}

/// `runtime.profiler`: how guest code is made visible to a profiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profiler {
    /// Guest code shows as anonymous addresses.
    #[default]
    None,
    /// A `perf` map file in `/tmp` names each guest function.
    Perfmap,
}

/// Default of `runtime.memory_keep_resident_kb`.
const MEMORY_KEEP_RESIDENT_KB: usize = 2048;

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            instances: 1000,
            core_instances: 10_000,
            memories: 2000,
            tables: 4000,
            max_memory_mb: 256,
            max_unused_warm_slots: 100,
            memory_keep_resident_kb: MEMORY_KEEP_RESIDENT_KB,
            table_keep_resident_kb: 64,
            decommit_batch_size: 1,
            mpk: Mpk::No,
            epoch_tick_ms: 5,
            component_cache_size: 1024,
            stdio_capture_kb: 64,
            max_script_series: 1000,
            heavy_lanes: 0,
            profiler: Profiler::None,
            compile_cache_dir: None,
        }
    }
}

impl RuntimeConfig {
    /// Checks `[runtime]`, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        require_positive(
            "runtime",
            &[
                ("instances", self.instances as u64),
                ("core_instances", self.core_instances as u64),
                ("memories", self.memories as u64),
                ("tables", self.tables as u64),
                ("max_memory_mb", self.max_memory_mb),
                ("epoch_tick_ms", self.epoch_tick_ms),
                ("component_cache_size", self.component_cache_size as u64),
            ],
        )?;
        if self.max_memory_mb > 4096 {
            return Err(
                "runtime.max_memory_mb must be at most 4096 (32-bit linear memories)".into(),
            );
        }
        Ok(())
    }
}
