//! Per-instance resource limits that Wasmtime enforces through hooks.
//!
//! [`MemoryLimiter`] is the store's `ResourceLimiter`: it caps the total
//! linear memory of one instance (all its memories together) and the size of
//! its tables, and remembers *why* a growth was refused, so the invocation
//! can report `memory-limit` instead of a generic trap.
//!
//! [`CallLimits`] is one set of optional limits (host, script or per call);
//! [`CallLimits::tighten`] combines levels so the minimum always wins.
//! [`CpuMeter`] counts the epoch ticks during which a guest was executing
//! wasm: the engine-wide ticker bumps the epoch every `epoch_tick_ms`, and
//! a guest only observes a tick while it runs code, never while it waits in
//! a host call (I/O), so the count measures CPU time, not wall time, at tick
//! precision.

use wasmtime::ResourceLimiter;

/// Largest table a guest may grow to (elements). Generous for real
/// toolchains' indirect-call tables, small enough to bound host memory.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Tracks and caps one instance's linear memory and table growth.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_memory_bytes: usize,
    memory_bytes: usize,
    /// Set when a growth was refused because of the memory cap.
    pub memory_limit_hit: bool,
    /// Set when a growth was refused because of the table cap.
    pub table_limit_hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `max_memory_bytes` of linear memory in total.
    pub fn new(max_memory_bytes: usize) -> Self {
        Self {
            max_memory_bytes,
            memory_bytes: 0,
            memory_limit_hit: false,
            table_limit_hit: false,
        }
    }

    /// Linear memory currently allocated by the instance.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_bytes - current.min(self.memory_bytes) + desired;
        if total > self.max_memory_bytes {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.table_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Optional limits for one invocation; `None` means "no limit at this level".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallLimits {
    /// CPU time the guest may execute, in milliseconds.
    pub cpu_ms: Option<u64>,
    /// Wall-clock time of the whole invocation, in milliseconds.
    pub wall_ms: Option<u64>,
    /// Linear memory of the instance, in MiB.
    pub memory_mb: Option<u64>,
    /// Outbound requests per invocation.
    pub subrequests: Option<u32>,
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl CallLimits {
    /// Combines two levels: each limit is the smaller of the two, so a
    /// level can tighten but never loosen another.
    pub fn tighten(self, other: CallLimits) -> CallLimits {
        CallLimits {
            cpu_ms: min_opt(self.cpu_ms, other.cpu_ms),
            wall_ms: min_opt(self.wall_ms, other.wall_ms),
            memory_mb: min_opt(self.memory_mb, other.memory_mb),
            subrequests: min_opt(self.subrequests, other.subrequests),
        }
    }
}

/// Counts the epoch ticks a guest spent executing and says when it has used
/// up its CPU budget.
#[derive(Debug, Default)]
pub struct CpuMeter {
    ticks: u64,
    budget_ticks: Option<u64>,
    /// Set when the budget ran out.
    pub limit_hit: bool,
}

impl CpuMeter {
    /// A meter allowing `cpu_ms` of execution, measured in ticks of
    /// `tick_ms` (rounded up, at least one tick).
    pub fn new(cpu_ms: Option<u64>, tick_ms: u64) -> Self {
        let tick_ms = tick_ms.max(1);
        Self {
            ticks: 0,
            budget_ticks: cpu_ms.map(|ms| ms.div_ceil(tick_ms).max(1)),
            limit_hit: false,
        }
    }

    /// Records one observed tick; `false` once the budget is exhausted.
    pub fn tick(&mut self) -> bool {
        self.ticks += 1;
        match self.budget_ticks {
            Some(budget) if self.ticks > budget => {
                self.limit_hit = true;
                false
            }
            _ => true,
        }
    }

    /// Ticks observed so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighten_takes_the_minimum_of_each_limit() {
        let host = CallLimits {
            cpu_ms: Some(50),
            wall_ms: Some(30_000),
            memory_mb: Some(128),
            subrequests: None,
        };
        let call = CallLimits {
            cpu_ms: Some(500),
            wall_ms: Some(100),
            memory_mb: None,
            subrequests: Some(3),
        };
        let both = host.tighten(call);
        assert_eq!(
            both,
            CallLimits {
                cpu_ms: Some(50),
                wall_ms: Some(100),
                memory_mb: Some(128),
                subrequests: Some(3)
            }
        );
        assert_eq!(both.tighten(CallLimits::default()), both);
    }

    #[test]
    fn cpu_meter_allows_the_budget_then_stops() {
        let mut meter = CpuMeter::new(Some(12), 5); // 3 ticks
        assert!(meter.tick() && meter.tick() && meter.tick());
        assert!(!meter.tick());
        assert!(meter.limit_hit);
        let mut unlimited = CpuMeter::new(None, 5);
        assert!((0..10_000).all(|_| unlimited.tick()));
        assert_eq!(CpuMeter::new(Some(0), 5).budget_ticks, Some(1));
    }

    #[test]
    fn counts_all_memories_together() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap()); // first memory
        assert!(l.memory_growing(0, 30, None).unwrap()); // second memory
        assert!(!l.memory_growing(30, 50, None).unwrap()); // 60 + 50 > 100
        assert!(l.memory_limit_hit);
        assert_eq!(l.memory_bytes(), 90);
    }

    #[test]
    fn bounds_tables() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(!l.table_growing(10, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert!(l.table_limit_hit);
    }
}
