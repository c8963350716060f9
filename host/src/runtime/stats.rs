//! What the runtime counts: monotonic counters since start-up and the
//! snapshot the admin API shows (`GET /v1/runtime`). Counting only; the
//! Prometheus view of the same work lives in `observe::metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::base::error::ErrorCode;

/// Monotonic counters describing the runtime's work since start-up.
#[derive(Default)]
pub struct Counters {
    pub(super) compiles: AtomicU64,
    pub(super) artifact_loads: AtomicU64,
    pub(super) cache_hits: AtomicU64,
    pub(super) cache_misses: AtomicU64,
    pub(super) wall_limit_hits: AtomicU64,
    pub(super) cpu_limit_hits: AtomicU64,
    pub(super) memory_limit_hits: AtomicU64,
    pub(super) fuel_limit_hits: AtomicU64,
    pub(super) overloaded: AtomicU64,
    pub(super) request_body_limit_hits: AtomicU64,
    pub(super) response_body_limit_hits: Arc<AtomicU64>,
    pub(super) cpu_yields: AtomicU64,
}

impl Counters {
    /// Counts a failed invocation under the counter of its code, if it has
    /// one.
    pub(super) fn count_failure(&self, code: ErrorCode) {
        let counter = match code {
            ErrorCode::WallLimit => &self.wall_limit_hits,
            ErrorCode::CpuLimit => &self.cpu_limit_hits,
            ErrorCode::FuelLimit => &self.fuel_limit_hits,
            ErrorCode::MemoryLimit => &self.memory_limit_hits,
            ErrorCode::Overloaded => &self.overloaded,
            ErrorCode::RequestTooLarge => &self.request_body_limit_hits,
            _ => return,
        };
        Self::bump(counter);
    }

    /// Counts the yields of a finished invocation.
    pub(super) fn count_yields(&self, yields: u32) {
        if yields > 0 {
            self.cpu_yields
                .fetch_add(u64::from(yields), Ordering::Relaxed);
        }
    }

    /// Counts one more `counter`.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as numbers, with what the caller knows of the rest.
    pub(super) fn snapshot(&self, now: Occupancy) -> RuntimeStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RuntimeStats {
            compiles: load(&self.compiles),
            artifact_loads: load(&self.artifact_loads),
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            wall_limit_hits: load(&self.wall_limit_hits),
            cpu_limit_hits: load(&self.cpu_limit_hits),
            memory_limit_hits: load(&self.memory_limit_hits),
            fuel_limit_hits: load(&self.fuel_limit_hits),
            overloaded: load(&self.overloaded),
            request_body_limit_hits: load(&self.request_body_limit_hits),
            response_body_limit_hits: load(&self.response_body_limit_hits),
            cpu_yields: load(&self.cpu_yields),
            cached_workers: now.cached_workers,
            warm_idle_instances: now.warm_idle_instances,
            host_memory_bytes: now.host_memory_bytes,
            compile_cache_hits: now.compile_cache.0,
            compile_cache_misses: now.compile_cache.1,
            pool: now.pool,
        }
    }
}

/// What the counters do not hold: the state of the host right now.
pub(super) struct Occupancy {
    pub cached_workers: usize,
    pub warm_idle_instances: usize,
    pub host_memory_bytes: u64,
    pub compile_cache: (u64, u64),
    pub pool: PoolStats,
}

impl PoolStats {
    /// The pooling allocator's occupancy, with its instance capacity.
    pub(super) fn of(engine: &wasmtime::Engine, capacity: u32) -> Self {
        let metrics = engine.pooling_allocator_metrics();
        Self {
            component_instances: metrics.as_ref().map_or(0, |m| m.component_instances()),
            core_instances: metrics.as_ref().map_or(0, |m| m.core_instances()),
            memories: metrics.as_ref().map_or(0, |m| m.memories()),
            tables: metrics.as_ref().map_or(0, |m| m.tables()),
            stacks: metrics.as_ref().map_or(0, |m| m.stacks()),
            component_instances_capacity: capacity,
        }
    }
}

/// A snapshot of [`Counters`] plus pool occupancy, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeStats {
    /// Components compiled from source bytes (uploads and artifact misses).
    pub compiles: u64,
    /// Components loaded from stored precompiled artifacts.
    pub artifact_loads: u64,
    /// Requests whose worker was already loaded.
    pub cache_hits: u64,
    /// Requests that had to load their worker.
    pub cache_misses: u64,
    /// Invocations cut off by their wall-clock deadline.
    pub wall_limit_hits: u64,
    /// Invocations stopped for exceeding their CPU time.
    pub cpu_limit_hits: u64,
    /// Invocations that failed on their memory limit.
    pub memory_limit_hits: u64,
    /// Invocations stopped when their fuel ran out.
    pub fuel_limit_hits: u64,
    /// Requests refused with `overloaded` (admission queue or pool full).
    pub overloaded: u64,
    /// Requests refused for an oversized request body.
    pub request_body_limit_hits: u64,
    /// Responses cut off for an oversized body.
    pub response_body_limit_hits: u64,
    /// Times a guest past its first slice of CPU yielded to the scheduler
    /// at an epoch tick (at most one per `epoch_tick_ms` of its run, plus
    /// one after each host call that waited; see docs/limits.md).
    pub cpu_yields: u64,
    /// Workers currently loaded in memory.
    pub cached_workers: usize,
    /// Warm instances waiting for their script's next request
    /// (`isolation = "reuse"`), all scripts together.
    pub warm_idle_instances: usize,
    /// Bytes the host holds for instances outside their linear memory
    /// (buffered bodies, KV values in flight, captured output), all
    /// instances together; see `limits::host_memory`.
    pub host_memory_bytes: u64,
    /// Functions the incremental compile cache supplied, since start.
    pub compile_cache_hits: u64,
    /// Functions compiled because the cache lacked them, since start.
    pub compile_cache_misses: u64,
    /// Pooling allocator occupancy.
    pub pool: PoolStats,
}

/// Pooling allocator slots in use.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// Component instances alive.
    pub component_instances: u64,
    /// Core instances alive.
    pub core_instances: u64,
    /// Linear memories in use.
    pub memories: usize,
    /// Tables in use.
    pub tables: usize,
    /// Fiber stacks in use.
    pub stacks: usize,
    /// Capacity: component instances.
    pub component_instances_capacity: u32,
}
