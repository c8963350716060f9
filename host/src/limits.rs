//! Per-instance resource limits that Wasmtime enforces through hooks.
//!
//! [`MemoryLimiter`] is the store's `ResourceLimiter`: it caps the total
//! linear memory of one instance (all its memories together) and the size of
//! its tables, and remembers *why* a growth was refused, so the invocation
//! can report `memory-limit` instead of a generic trap. A refused growth
//! traps at once rather than letting `memory.grow` return -1: language
//! runtimes that catch out-of-memory themselves (SpiderMonkey in JS guests
//! answers a bare 500) would otherwise hide the limit from the platform.
//!
//! [`CallLimits`] is one set of optional limits (host, script or per call);
//! [`CallLimits::tighten`] combines levels so the minimum always wins.
//! [`ScriptLimits`] is what a script's settings may say, [`HostLimits`] is
//! the `[limits]` config section (defaults that are also ceilings), and
//! [`HostLimits::effective`] combines host, script and call levels into the
//! [`Effective`] limits of one invocation. [`CpuMeter`] measures the time a
//! guest spends executing wasm, excluding host calls (I/O) and time parked
//! after yielding; see `docs/limits.md` for the method and its precision.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// Clears the "why growth failed" flags (a reused instance starts a
    /// new request).
    pub fn reset_flags(&mut self) {
        self.memory_limit_hit = false;
        self.table_limit_hit = false;
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
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (asked for {total})",
                self.max_memory_bytes
            ));
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
            return Err(wasmtime::format_err!(
                "table limit of {MAX_TABLE_ELEMENTS} elements exceeded (asked for {desired})"
            ));
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

/// Limits a script's settings may carry (`settings.limits`, upload
/// metadata `limits`). Each is optional; the host's `[limits]` apply where
/// unset, and a script can only tighten them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptLimits {
    /// CPU time per request, ms.
    #[serde(default)]
    pub cpu_ms: Option<u64>,
    /// Wall-clock time per request, ms.
    #[serde(default)]
    pub wall_ms: Option<u64>,
    /// Linear memory per instance, MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Outbound requests per request.
    #[serde(default)]
    pub subrequests: Option<u32>,
    /// Largest request body, MiB.
    #[serde(default)]
    pub max_request_body_mb: Option<u64>,
    /// Largest response body, MiB.
    #[serde(default)]
    pub max_response_body_mb: Option<u64>,
    /// Requests of this script running at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

impl ScriptLimits {
    /// Rejects zero values, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let values = [
            ("cpu_ms", self.cpu_ms),
            ("wall_ms", self.wall_ms),
            ("memory_mb", self.memory_mb),
            ("max_request_body_mb", self.max_request_body_mb),
            ("max_response_body_mb", self.max_response_body_mb),
            ("max_concurrency", self.max_concurrency.map(u64::from)),
        ];
        for (key, value) in values {
            if value == Some(0) {
                return Err(format!("limits.{key} must be greater than 0"));
            }
        }
        Ok(())
    }

    /// The per-call subset.
    pub fn call(&self) -> CallLimits {
        CallLimits {
            cpu_ms: self.cpu_ms,
            wall_ms: self.wall_ms,
            memory_mb: self.memory_mb,
            subrequests: self.subrequests,
        }
    }
}

/// `[limits]`: the host's defaults, which are also ceilings — a script or a
/// dispatch worker can lower each value for its requests, never raise it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostLimits {
    /// CPU time per request, ms.
    pub cpu_ms: u64,
    /// Wall-clock time per request (including I/O and streaming the
    /// response body), ms.
    pub wall_ms: u64,
    /// Linear memory per instance, MiB (at most `runtime.max_memory_mb`).
    pub memory_mb: u64,
    /// Outbound requests per request.
    pub subrequests: u32,
    /// Largest request body, MiB.
    pub max_request_body_mb: u64,
    /// Largest response body, MiB.
    pub max_response_body_mb: u64,
    /// Requests of one script running at once.
    pub max_concurrency: u32,
    /// Requests of one script waiting for a concurrency slot; beyond it they
    /// are refused with `overloaded` at once.
    pub max_queue: u32,
    /// How long a request may wait in the queue before `overloaded`, ms.
    pub queue_timeout_ms: u64,
    /// `false` switches off CPU accounting, body caps and admission control
    /// (for measuring their cost, or a trusted single tenant). The wall-clock
    /// deadline, memory cap and epoch yields stay. Never for hostile code.
    pub enforce: bool,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            cpu_ms: 1_000,
            wall_ms: 30_000,
            memory_mb: 128,
            subrequests: 50,
            max_request_body_mb: 100,
            max_response_body_mb: 512,
            max_concurrency: 64,
            max_queue: 256,
            queue_timeout_ms: 5_000,
            enforce: true,
        }
    }
}

/// The limits one invocation runs under, all levels combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// CPU budget.
    pub cpu: Duration,
    /// Wall-clock budget.
    pub wall: Duration,
    /// Linear memory cap, bytes.
    pub memory_bytes: usize,
    /// Outbound request cap.
    pub subrequests: u32,
    /// Request body cap, bytes.
    pub max_request_body: u64,
    /// Response body cap, bytes.
    pub max_response_body: u64,
}

const MIB: u64 = 1 << 20;

impl HostLimits {
    /// Combines the host level with a script's settings and a call's
    /// options: the minimum of every level wins.
    pub fn effective(&self, script: &ScriptLimits, call: &CallLimits) -> Effective {
        let call = script.call().tighten(*call);
        let min = |host: u64, other: Option<u64>| other.map_or(host, |v| v.min(host));
        Effective {
            cpu: Duration::from_millis(min(self.cpu_ms, call.cpu_ms)),
            wall: Duration::from_millis(min(self.wall_ms, call.wall_ms)),
            memory_bytes: (min(self.memory_mb, call.memory_mb) * MIB) as usize,
            subrequests: call
                .subrequests
                .map_or(self.subrequests, |v| v.min(self.subrequests)),
            max_request_body: min(self.max_request_body_mb, script.max_request_body_mb) * MIB,
            max_response_body: min(self.max_response_body_mb, script.max_response_body_mb) * MIB,
        }
    }

    /// Concurrency cap of a script.
    pub fn concurrency(&self, script: &ScriptLimits) -> u32 {
        script
            .max_concurrency
            .map_or(self.max_concurrency, |v| v.min(self.max_concurrency))
    }
}

/// CPU time after which a running guest yields to the scheduler at every
/// epoch tick (see [`CpuMeter::should_yield`]).
pub const YIELD_AFTER: Duration = Duration::from_millis(10);

/// Measures the time a guest spends executing wasm, excluding time in host
/// calls (I/O waits) and time parked after yielding to the scheduler.
///
/// Segments of execution are delimited by Wasmtime's call hooks (entering
/// and leaving wasm) and by the epoch callback, which ends a segment before
/// the guest yields; the yield future records when the guest was resumed,
/// which starts the next segment. The budget is checked at every epoch tick
/// the guest observes, so a spinning guest is stopped at most one tick
/// (`runtime.epoch_tick_ms`) after its budget ran out.
#[derive(Debug)]
pub struct CpuMeter {
    budget: Duration,
    used: Duration,
    running_since: Option<Instant>,
    resumed_at: Arc<Mutex<Option<Instant>>>,
    /// Set when the budget ran out.
    pub limit_hit: bool,
}

impl CpuMeter {
    /// A meter allowing `budget` of execution.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            used: Duration::ZERO,
            running_since: None,
            resumed_at: Arc::new(Mutex::new(None)),
            limit_hit: false,
        }
    }

    /// Execution time so far.
    pub fn used(&self) -> Duration {
        self.used
    }

    /// The guest starts (or resumes) executing wasm at `now`.
    pub fn start(&mut self, now: Instant) {
        self.running_since = Some(now);
    }

    /// The guest stops executing wasm at `now` (host call, return, yield).
    pub fn stop(&mut self, now: Instant) {
        let resumed = self.resumed_at.lock().map(|mut r| r.take()).unwrap_or(None);
        if let Some(since) = self.running_since.take().or(resumed) {
            self.used += now.saturating_duration_since(since);
        }
    }

    /// At an epoch tick: ends the current segment and says whether budget
    /// remains. `false` sets [`CpuMeter::limit_hit`].
    pub fn tick(&mut self, now: Instant) -> bool {
        self.stop(now);
        if self.used > self.budget {
            self.limit_hit = true;
        }
        !self.limit_hit
    }

    /// Whether the guest has run long enough in this request that it should
    /// yield at ticks. Short requests never yield: a yield parks the task
    /// behind every other runnable one, which showed up as a ~30 ms p99 at
    /// a 2 ms median; a guest that keeps computing yields at every tick
    /// once past [`YIELD_AFTER`], so it cannot starve others.
    pub fn should_yield(&self) -> bool {
        self.used >= YIELD_AFTER
    }

    /// Keeps executing after a tick without yielding: the current segment
    /// goes on from `now`.
    pub fn resume(&mut self, now: Instant) {
        self.running_since = Some(now);
    }

    /// A future to yield with: it gives the scheduler a turn, then records
    /// the moment the guest resumes.
    pub fn yield_now(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let resumed_at = self.resumed_at.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            if let Ok(mut slot) = resumed_at.lock() {
                *slot = Some(Instant::now());
            }
        })
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
    fn cpu_meter_counts_execution_segments_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut meter = CpuMeter::new(ms(30));
        meter.start(t0);
        meter.stop(t0 + ms(10)); // 10 ms of wasm, then a host call…
        meter.start(t0 + ms(1000)); // …that waited ~1 s for I/O
        assert!(meter.tick(t0 + ms(1015))); // 25 ms so far
        assert_eq!(meter.used(), ms(25));
        // Parked after yielding: the time until the recorded resume is free.
        *meter.resumed_at.lock().unwrap() = Some(t0 + ms(2000));
        assert!(!meter.tick(t0 + ms(2010))); // 35 ms > 30 ms
        assert!(meter.limit_hit);
        assert_eq!(meter.used(), ms(35));
    }

    #[test]
    fn short_runs_do_not_yield_and_resuming_keeps_counting() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut meter = CpuMeter::new(ms(1000));
        meter.start(t0);
        assert!(meter.tick(t0 + ms(5)));
        assert!(!meter.should_yield(), "5 ms of CPU: keep going");
        meter.resume(t0 + ms(5));
        assert!(meter.tick(t0 + ms(12)));
        assert_eq!(meter.used(), ms(12), "the resumed segment is counted");
        assert!(meter.should_yield());
    }

    #[test]
    fn effective_limits_take_the_minimum_of_all_levels() {
        let host = HostLimits::default();
        let script = ScriptLimits {
            cpu_ms: Some(50),
            memory_mb: Some(4096),
            max_request_body_mb: Some(1),
            ..Default::default()
        };
        let call = CallLimits {
            cpu_ms: Some(500),
            wall_ms: Some(100),
            memory_mb: None,
            subrequests: Some(3),
        };
        let e = host.effective(&script, &call);
        assert_eq!(e.cpu, Duration::from_millis(50)); // script beats call
        assert_eq!(e.wall, Duration::from_millis(100)); // call beats host
        assert_eq!(e.memory_bytes, 128 << 20); // host ceiling beats script
        assert_eq!(e.subrequests, 3);
        assert_eq!(e.max_request_body, 1 << 20);
        assert_eq!(e.max_response_body, 512 << 20);
        assert_eq!(
            host.concurrency(&ScriptLimits {
                max_concurrency: Some(1000),
                ..Default::default()
            }),
            64
        );
        assert_eq!(
            host.concurrency(&ScriptLimits {
                max_concurrency: Some(2),
                ..Default::default()
            }),
            2
        );
    }

    #[test]
    fn script_limits_name_bad_keys() {
        let err = serde_json::from_str::<ScriptLimits>(r#"{"cpu":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu"), "{err}");
        let zero = ScriptLimits {
            max_concurrency: Some(0),
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().contains("max_concurrency"));
    }

    #[test]
    fn counts_all_memories_together() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap()); // first memory
        assert!(l.memory_growing(0, 30, None).unwrap()); // second memory
        let refused = l.memory_growing(30, 50, None).unwrap_err(); // 60 + 50 > 100
        assert!(
            refused.to_string().contains("memory limit of 100 bytes"),
            "{refused}"
        );
        assert!(l.memory_limit_hit);
        assert_eq!(l.memory_bytes(), 90);
    }

    #[test]
    fn bounds_tables() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(l.table_growing(10, MAX_TABLE_ELEMENTS + 1, None).is_err());
        assert!(l.table_limit_hit);
    }
}
