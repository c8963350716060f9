//! The one `wasmtime::Engine` shared by every tenant, and its epoch ticker.
//!
//! The engine is configured once: pooling instance allocator sized from
//! `[runtime]`, copy-on-write memory images, epoch interruption, and fuel
//! metering when the host has a fuel budget (`[limits] fuel`). A single
//! background thread advances the epoch every `epoch_tick_ms`; stores use
//! the epoch to yield back to the scheduler (and, for limits, to check their
//! budgets). There is never a thread or timer per request.

use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::config::{Mpk, Profiler, RuntimeConfig};

/// Native stack a guest may use before it traps with "stack overflow".
const MAX_WASM_STACK: usize = 1 << 20;
/// Fiber stack per instance: the wasm stack plus room for host calls.
const ASYNC_STACK_SIZE: usize = MAX_WASM_STACK + (1 << 20);

/// Builds the shared engine from `[runtime]`. `consume_fuel` makes
/// compiled code count its instructions (Wasmtime's fuel): that counting is
/// compiled into every function and costs time whether or not a request
/// has a budget, so it is on only when the host meters fuel (`[limits]
/// fuel`); it is part of the compatibility hash, so artifacts compiled
/// without it are never loaded with it.
///
/// With `cache`, Cranelift reuses the compiled code of every function it
/// compiled before (see [`super::compile_cache`]).
pub fn build_engine(
    cfg: &RuntimeConfig,
    consume_fuel: bool,
    cache: Option<Arc<super::compile_cache::CompileCache>>,
) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(cfg.instances)
        .total_core_instances(cfg.core_instances)
        .total_memories(cfg.memories)
        .total_tables(cfg.tables)
        .total_stacks(cfg.instances)
        .max_memory_size((cfg.max_memory_mb as usize) << 20)
        .max_unused_warm_slots(cfg.max_unused_warm_slots)
        .linear_memory_keep_resident(cfg.memory_keep_resident_kb << 10)
        .table_keep_resident(cfg.table_keep_resident_kb << 10)
        .decommit_batch_size(cfg.decommit_batch_size.max(1))
        .pagemap_scan(wasmtime::Enabled::Auto)
        .memory_protection_keys(match cfg.mpk {
            Mpk::No => wasmtime::Enabled::No,
            Mpk::Auto => wasmtime::Enabled::Auto,
            Mpk::Yes => wasmtime::Enabled::Yes,
        })
        // Components built by today's toolchains hold a handful of core
        // instances/memories/tables; leave headroom for composed ones.
        .max_core_instances_per_component(50)
        .max_memories_per_component(10)
        .max_tables_per_component(50);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(consume_fuel)
        .memory_init_cow(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK_SIZE)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .profiler(match cfg.profiler {
            Profiler::None => wasmtime::ProfilingStrategy::None,
            Profiler::Perfmap => wasmtime::ProfilingStrategy::PerfMap,
        });
    if let Some(cache) = cache {
        config.enable_incremental_compilation(cache)?;
    }
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot build engine: {e:#}"))
}

/// A short, stable digest of everything that makes precompiled artifacts
/// compatible with `engine` (Wasmtime version, target, settings). Artifacts
/// are stored under it, so an upgrade simply misses and recompiles.
pub fn compatibility_hash(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            unreachable!("only the SHA-256 digest is read")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

/// The single engine-wide epoch ticker; stops when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts advancing `engine`'s epoch every `tick`.
    pub fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("berth-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl EpochTicker {
    /// The flag that stops the thread (raised on drop).
    #[cfg(test)]
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_hash_is_stable_for_one_engine_config() {
        let cfg = RuntimeConfig {
            instances: 2,
            core_instances: 20,
            memories: 4,
            tables: 4,
            ..RuntimeConfig::default()
        };
        let a = build_engine(&cfg, false, None).unwrap();
        let b = build_engine(&cfg, false, None).unwrap();
        assert_eq!(compatibility_hash(&a), compatibility_hash(&b));
        assert_eq!(compatibility_hash(&a).len(), 32);
        // Fuel changes the compiled code, so it changes the hash.
        let fuel = build_engine(&cfg, true, None).unwrap();
        assert_ne!(compatibility_hash(&a), compatibility_hash(&fuel));
    }

    #[test]
    fn mpk_auto_and_resident_tuning_build_an_engine_anywhere() {
        // `auto` falls back to guard regions where the CPU has no PKU, so
        // the same config is portable across machines.
        let cfg = RuntimeConfig {
            instances: 2,
            core_instances: 20,
            memories: 4,
            tables: 4,
            mpk: Mpk::Auto,
            memory_keep_resident_kb: 4096,
            decommit_batch_size: 8,
            ..RuntimeConfig::default()
        };
        build_engine(&cfg, false, None).unwrap();
        if !PoolingAllocationConfig::are_memory_protection_keys_available() {
            let yes = RuntimeConfig {
                mpk: Mpk::Yes,
                ..cfg
            };
            let err = build_engine(&yes, false, None).unwrap_err().to_string();
            assert!(err.contains("cannot build engine"), "{err}");
        }
    }
}
