//! The CPU meter: time a guest spends executing wasm, excluding host calls
//! (I/O waits) and time parked after yielding; see `docs/limits.md` for the
//! method and its precision. It never decides anything on its own: the
//! runtime's epoch callback asks it at every tick.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}
