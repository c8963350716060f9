//! The CPU meter: time a guest spends executing wasm or in host calls that
//! work for it, excluding host calls that wait (I/O, other workers) and
//! time parked after yielding; see `docs/limits.md` for the method and its
//! precision. It never decides anything on its own: the runtime's call
//! hook and epoch callback ask it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A reading of the meter's clock: the TSC read directly where it is
/// invariant (`quanta`, calibrated against the OS's monotonic clock at the
/// first reading), else the OS's monotonic clock. A call hook reads it at
/// every host-call boundary — about a hundred times in a dispatched request
/// — where a vDSO `clock_gettime` cost ~24 ns here and the TSC ~10 ns.
pub type Instant = quanta::Instant;

/// Now, on the meter's clock.
pub fn now() -> Instant {
    Instant::now()
}

/// CPU time after which a running guest yields to the scheduler at every
/// epoch tick (see [`CpuMeter::should_yield`]).
pub const YIELD_AFTER: Duration = Duration::from_millis(10);

/// The shorter slice of a tenant that recently ran a request past
/// [`YIELD_AFTER`] (see [`CpuHistory`]).
pub const HEAVY_YIELD_AFTER: Duration = Duration::from_millis(2);

/// How long a tenant counts as CPU-heavy after its last heavy request.
const HEAVY_MEMORY: Duration = Duration::from_secs(2);

/// Metered time after which segments are measured on the thread's CPU
/// clock instead of the monotonic clock (see [`CpuMeter`]).
pub const PRECISE_AFTER: Duration = Duration::from_millis(5);

/// This thread's CPU time (Linux `CLOCK_THREAD_CPUTIME_ID`): time the
/// scheduler actually gave it, preemption excluded.
pub fn thread_cpu_now() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A tenant's recent CPU use, which decides how long its guests compute
/// before they yield at every tick and queue for the [`HeavyLane`].
///
/// Every request starts with [`YIELD_AFTER`] of CPU outside the lane, so a
/// light tenant never waits for it. A tenant whose requests ran past that
/// within the last [`HEAVY_MEMORY`] gets only [`HEAVY_YIELD_AFTER`]: a
/// tenant that keeps many heavy requests in flight would otherwise run each
/// one's first slice beside the lane and take more than the lane's cores
/// from its neighbours. Kept with the tenant's admission gate, so it
/// survives eviction and redeploys.
#[derive(Debug, Default)]
pub struct CpuHistory {
    /// Until when (ms on [`clock_ms`]) the tenant counts as heavy.
    heavy_until_ms: AtomicU64,
}

/// Milliseconds since the first call (a process-wide monotonic base).
fn clock_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl CpuHistory {
    /// The CPU time the tenant's next request may use before it yields
    /// into the lane.
    pub fn yield_after(&self) -> Duration {
        if clock_ms() < self.heavy_until_ms.load(Ordering::Relaxed) {
            HEAVY_YIELD_AFTER
        } else {
            YIELD_AFTER
        }
    }

    /// Records a finished request's CPU time.
    pub fn record(&self, used: Duration) {
        if used >= YIELD_AFTER {
            let until = clock_ms() + HEAVY_MEMORY.as_millis() as u64;
            self.heavy_until_ms.fetch_max(until, Ordering::Relaxed);
        }
    }
}

/// Where a segment of execution started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// On the meter's monotonic clock (cheap: a TSC read, see [`Instant`]).
    Wall(Instant),
    /// On the executing thread's CPU clock (a system call, ~1 µs here).
    Cpu(Duration),
}

/// Measures the CPU time a guest spends executing wasm, excluding time in
/// host calls (I/O waits), time parked after yielding and — past the first
/// few milliseconds — time its thread was preempted.
///
/// Segments of execution are delimited by Wasmtime's call hooks (entering
/// and leaving wasm) and by the epoch callback, which ends a segment before
/// the guest yields; the yield future records when the guest was resumed,
/// which starts the next segment. A segment never spans an `.await`, so it
/// starts and ends on one thread.
///
/// Two clocks: a request's first [`PRECISE_AFTER`] of metered time is
/// measured on the monotonic clock, because reading a thread's CPU clock is
/// a system call (~1.2 µs on the reference VM, against ~60 ns) and most
/// requests are over by then with a handful of host calls each. From then
/// on every segment is measured on the thread's CPU clock, so a busy
/// machine (another service, a build, a second host) does not make a guest
/// pay for time it was not running: at most `PRECISE_AFTER` of wall time
/// can be charged (a monotonic segment is cut at what is left of it). The budget is checked at every epoch tick the guest
/// observes, so a spinning guest is stopped at most one tick
/// (`runtime.epoch_tick_ms`) after its budget ran out.
#[derive(Debug)]
pub struct CpuMeter {
    budget: Duration,
    used: Duration,
    running_since: Option<Stamp>,
    /// What the yield future and the [`Polled`] invocation share with the
    /// meter (one allocation per invocation).
    shared: Arc<Shared>,
    /// Whether a yield future was handed out, so a guest that never yielded
    /// never takes the `resumed_at` lock.
    yielded: bool,
    /// The lane CPU-heavy guests take turns in, if any (see [`HeavyLane`]).
    lane: Option<HeavyLane>,
    /// CPU time before the guest yields at every tick.
    yield_after: Duration,
    /// Whether the slot may be held (set when a yield into the lane was
    /// handed out), so light guests' host calls never touch its lock.
    maybe_in_lane: bool,
    /// Set when the budget ran out.
    pub limit_hit: bool,
    /// When the current host call began, and the poll it began in.
    in_host: Option<(Stamp, u64)>,
    /// Yields handed out at epoch ticks in this request.
    yields: u32,
}

/// The bounded lane for CPU-heavy invocations: a guest that has computed
/// past [`YIELD_AFTER`] runs each further slice (one epoch tick) only while
/// it holds a slot of this lane, and gives the slot back when it yields or
/// calls the host. With fewer slots than worker threads (by default one
/// less), light requests — which never reach `YIELD_AFTER` — always find a
/// core, however many guests spin. Slots are handed out in arrival order.
#[derive(Debug, Clone)]
pub struct HeavyLane(Arc<Semaphore>);

impl HeavyLane {
    /// A lane of `slots` slots.
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(Semaphore::new(slots.max(1))))
    }
}

impl CpuMeter {
    /// A meter allowing `budget` of execution.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            used: Duration::ZERO,
            running_since: None,
            shared: Arc::default(),
            yielded: false,
            lane: None,
            yield_after: YIELD_AFTER,
            maybe_in_lane: false,
            limit_hit: false,
            in_host: None,
            yields: 0,
        }
    }

    /// The guest calls the host at `now`: its wasm segment ends, and the
    /// host call's time starts.
    pub fn enter_host(&mut self, now: Instant) {
        self.stop(now);
        self.in_host = Some((self.stamp(now), self.shared.polls.load(Ordering::Relaxed)));
    }

    /// The host call returns at `now`. Its time is the guest's when it
    /// never waited — it returned in the poll it started in, so the thread
    /// was working for the guest all along (copying its arguments, writing
    /// its headers); a call that waited (I/O, another worker) is not
    /// charged. Then the guest executes wasm again. Returns whether it
    /// must queue for the heavy lane before it computes on: it is past its
    /// slice and the call waited, which gave its lane slot back (see
    /// [`Polled`]); a call that did not wait kept the slot.
    pub fn leave_host(&mut self, now: Instant) -> bool {
        let waited = match self.in_host.take() {
            Some((since, poll)) if poll == self.shared.polls.load(Ordering::Relaxed) => {
                self.charge(since, now);
                false
            }
            Some(_) => true,
            None => false,
        };
        self.start(now);
        waited && self.lane.is_some() && self.should_yield()
    }

    /// Heavy slices of this guest run in `lane`.
    pub fn with_lane(mut self, lane: Option<HeavyLane>) -> Self {
        self.lane = lane;
        self
    }

    /// Gives the lane slot back (the guest calls the host, or its request
    /// ended): a slot is never held while the guest waits on the host, so
    /// a dispatch worker and the user worker it waits for cannot deadlock
    /// on the lane.
    pub fn leave_lane(&mut self) {
        if !self.maybe_in_lane {
            return;
        }
        self.maybe_in_lane = false;
        if let Ok(mut slot) = self.shared.slot.lock() {
            *slot = None;
        }
    }

    /// CPU time used so far.
    pub fn used(&self) -> Duration {
        self.used
    }

    /// How often the guest yielded at an epoch tick in this request.
    pub fn yields(&self) -> u32 {
        self.yields
    }

    fn precise(&self) -> bool {
        self.used >= PRECISE_AFTER
    }

    fn stamp(&self, now: Instant) -> Stamp {
        if self.precise() {
            Stamp::Cpu(thread_cpu_now())
        } else {
            Stamp::Wall(now)
        }
    }

    /// The guest starts (or resumes) executing wasm at `now`.
    pub fn start(&mut self, now: Instant) {
        self.running_since = Some(self.stamp(now));
    }

    /// The guest stops executing wasm at `now` (host call, return, yield).
    pub fn stop(&mut self, now: Instant) {
        let resumed = match self.yielded {
            true => (self.shared.resumed_at.lock())
                .map(|mut r| r.take())
                .unwrap_or(None),
            false => None,
        };
        if let Some(since) = self.running_since.take().or(resumed) {
            self.charge(since, now);
        }
    }

    /// Charges the segment from `since` to `now`. A segment measured on the
    /// monotonic clock counts only up to what is left of [`PRECISE_AFTER`]:
    /// one preemption by another process inside an early segment (a busy
    /// machine can take the thread away for tens of milliseconds) costs
    /// the guest at most that, and then the thread's own clock takes over.
    fn charge(&mut self, since: Stamp, now: Instant) {
        self.used += match since {
            Stamp::Wall(since) => now
                .saturating_duration_since(since)
                .min(PRECISE_AFTER.saturating_sub(self.used)),
            Stamp::Cpu(since) => thread_cpu_now().saturating_sub(since),
        };
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
        self.used >= self.yield_after
    }

    /// Yields into the lane after `after` of CPU instead of
    /// [`YIELD_AFTER`] (a CPU-heavy tenant's shorter slice).
    pub fn with_yield_after(mut self, after: Duration) -> Self {
        self.yield_after = after;
        self
    }

    /// Keeps executing after a tick without yielding: the current segment
    /// goes on from `now`.
    pub fn resume(&mut self, now: Instant) {
        self.running_since = Some(self.stamp(now));
    }

    /// A future to yield with: it gives the scheduler a turn, then records
    /// the moment the guest resumes (on the thread that resumes it).
    ///
    /// The epoch callback runs inside a Wasmtime libcall, which the call
    /// hooks see as a host call; that "call" spans polls because of this
    /// very yield. It is the meter's own pause, not a host call that
    /// waited: the future takes the lane slot back before the guest
    /// resumes, and the time parked is not charged either way. Counted as
    /// a wait, it would send the guest to the lane again at its next epoch
    /// check, i.e. yield at every function entry and loop edge from then
    /// on — a 100× slowdown of every request past its first slice, most of
    /// it the scheduler's churn on both cores.
    pub fn yield_now(&mut self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        self.in_host = None;
        self.yields = self.yields.saturating_add(1);
        self.maybe_in_lane |= self.lane.is_some();
        self.yielded = true;
        let precise = self.precise();
        let (lane, shared) = (self.lane.clone(), self.shared.clone());
        Box::pin(async move {
            // Out of the lane while parked; back in (in arrival order)
            // before the next slice.
            if let Ok(mut held) = shared.slot.lock() {
                *held = None;
            }
            tokio::task::yield_now().await;
            if let Some(HeavyLane(lane)) = lane
                && let Ok(permit) = lane.acquire_owned().await
                && let Ok(mut held) = shared.slot.lock()
            {
                *held = Some(permit);
            }
            let stamp = if precise {
                Stamp::Cpu(thread_cpu_now())
            } else {
                Stamp::Wall(Instant::now())
            };
            if let Ok(mut resumed) = shared.resumed_at.lock() {
                *resumed = Some(stamp);
            }
        })
    }
}

/// An invocation's future, seen by its [`CpuMeter`]: it counts its polls,
/// so the meter can tell a host call that returned within one poll (work)
/// from one that waited across polls (I/O, another worker); and whenever
/// it waits, it gives back the guest's heavy-lane slot, so a guest never
/// holds the lane while it waits (a dispatch worker waiting for the user
/// worker it called cannot deadlock with it), yet keeps it through the
/// host calls that do not wait — a spinner cannot leave the lane by
/// calling the host.
pub struct Polled<F> {
    inner: F,
    shared: Arc<Shared>,
}

/// What a [`Polled`] shares with its meter.
pub struct MeterLink(Arc<Shared>);

/// What a meter shares with its invocation's future and yield futures.
#[derive(Debug, Default)]
struct Shared {
    /// When the guest resumed after a yield (set by the yield future).
    resumed_at: Mutex<Option<Stamp>>,
    /// The lane slot this guest holds while it runs a slice.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    /// How often the invocation's future has been polled (see
    /// [`Polled`]): a host call that returns in the poll it started in
    /// never waited.
    polls: AtomicU64,
}

impl CpuMeter {
    /// The counters a [`Polled`] future shares with this meter.
    pub fn link(&self) -> MeterLink {
        MeterLink(self.shared.clone())
    }
}

impl<F> Polled<F> {
    /// Wraps `inner` for the meter `link` came from.
    pub fn new(inner: F, link: MeterLink) -> Self {
        Self {
            inner,
            shared: link.0,
        }
    }
}

impl<F: Future + Unpin> Future for Polled<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.shared.polls.fetch_add(1, Ordering::Relaxed);
        let polled = std::pin::Pin::new(&mut self.inner).poll(cx);
        if polled.is_pending()
            && let Ok(mut slot) = self.shared.slot.lock()
        {
            *slot = None;
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A meter with a 100 ms budget, a 1 ms slice and a one-slot lane,
    /// executing since the instant returned (below PRECISE_AFTER the meter
    /// uses the instants it is given).
    fn laned_meter() -> (Instant, CpuMeter) {
        let t0 = Instant::now();
        let mut meter = CpuMeter::new(Duration::from_millis(100))
            .with_lane(Some(HeavyLane::new(1)))
            .with_yield_after(Duration::from_millis(1));
        meter.start(t0);
        (t0, meter)
    }

    /// The issue-25 holes: time inside host calls is the guest's unless
    /// the call waited, and a heavy guest coming back from one must queue
    /// for the lane again.
    #[test]
    fn host_calls_that_never_wait_are_charged_and_send_heavy_guests_back_to_the_lane() {
        let (t0, mut meter) = laned_meter();
        let us = Duration::from_micros;
        meter.enter_host(t0 + us(100));
        // Returned in the same poll: 300 µs of host work, charged.
        assert!(
            !meter.leave_host(t0 + us(400)),
            "400 µs: still in its slice"
        );
        meter.enter_host(t0 + us(500));
        meter.shared.polls.fetch_add(1, Ordering::Relaxed); // it waited: another poll
        meter.leave_host(t0 + us(50_000));
        meter.stop(t0 + us(50_100));
        assert_eq!(
            meter.used(),
            us(600),
            "100 + 300 + 100 + 100; the wait is free"
        );
        // Past its slice: a host call that did not wait kept the lane slot,
        // one that waited gave it back and must queue again.
        meter.start(t0 + us(60_000));
        meter.enter_host(t0 + us(60_500));
        assert!(
            !meter.leave_host(t0 + us(60_510)),
            "kept its slot: compute on"
        );
        meter.enter_host(t0 + us(60_600));
        meter.shared.polls.fetch_add(1, Ordering::Relaxed);
        assert!(
            meter.leave_host(t0 + us(70_000)),
            "waited: queue for the lane"
        );
        let mut unlaned = CpuMeter::new(us(100_000)).with_yield_after(us(1000));
        unlaned.start(t0);
        unlaned.enter_host(t0 + us(2000));
        unlaned.shared.polls.fetch_add(1, Ordering::Relaxed);
        assert!(
            !unlaned.leave_host(t0 + us(2010)),
            "no lane, nothing to queue for"
        );
    }

    /// The yield at an epoch tick happens inside the epoch libcall, which
    /// the call hooks bracket as a host call (`enter_host` … `leave_host`)
    /// and which spans polls because of the yield. That must not count as
    /// a host call that waited: it would set the epoch deadline to "now"
    /// and make the guest yield again at every epoch check after.
    #[tokio::test]
    async fn a_yield_at_a_tick_is_not_a_host_call_that_waited() {
        let (t0, mut meter) = laned_meter();
        let us = Duration::from_micros;
        // The epoch libcall: hooks see CallingHost, then the callback ticks
        // and yields; the invocation's future is polled again meanwhile.
        meter.enter_host(t0 + us(2000));
        assert!(meter.tick(t0 + us(2001)) && meter.should_yield());
        let parked = meter.yield_now();
        meter.shared.polls.fetch_add(1, Ordering::Relaxed);
        parked.await;
        assert!(
            !meter.leave_host(t0 + us(9000)),
            "the meter's own yield: no second trip to the lane"
        );
        assert_eq!(meter.yields(), 1);
        meter.stop(t0 + us(9500));
        assert_eq!(meter.used(), us(2500), "2000 + 500; the park is free");
    }

    /// A preemption inside an early (monotonic-clock) segment costs the
    /// guest at most PRECISE_AFTER, whatever its length.
    #[test]
    fn wall_clock_segments_charge_at_most_precise_after() {
        let t0 = Instant::now();
        let mut meter = CpuMeter::new(Duration::from_secs(1));
        meter.start(t0);
        meter.stop(t0 + Duration::from_millis(80)); // descheduled 80 ms
        assert_eq!(meter.used(), PRECISE_AFTER);
        assert!(meter.precise(), "the thread's own clock from now on");
    }

    #[test]
    fn a_tenant_that_ran_heavy_requests_gets_the_short_slice() {
        let history = CpuHistory::default();
        assert_eq!(history.yield_after(), YIELD_AFTER);
        history.record(YIELD_AFTER / 2);
        assert_eq!(
            history.yield_after(),
            YIELD_AFTER,
            "light requests change nothing"
        );
        history.record(YIELD_AFTER);
        assert_eq!(history.yield_after(), HEAVY_YIELD_AFTER);
        let meter = CpuMeter::new(Duration::from_secs(1)).with_yield_after(history.yield_after());
        assert_eq!(meter.yield_after, HEAVY_YIELD_AFTER);
        // The mark expires.
        history.heavy_until_ms.store(clock_ms(), Ordering::Relaxed);
        assert_eq!(history.yield_after(), YIELD_AFTER);
    }

    #[test]
    fn cpu_meter_counts_execution_segments_only() {
        // Below PRECISE_AFTER the meter uses the instants it is given.
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let mut meter = CpuMeter::new(us(4500));
        meter.start(t0);
        meter.stop(t0 + ms(2)); // 2 ms of wasm, then a host call…
        meter.start(t0 + ms(1000)); // …that waited ~1 s for I/O
        assert!(meter.tick(t0 + ms(1002))); // 4 ms so far
        assert_eq!(meter.used(), ms(4));
        // Parked after yielding: the time until the recorded resume is free.
        meter.yielded = true;
        *meter.shared.resumed_at.lock().unwrap() = Some(Stamp::Wall(t0 + ms(2000)));
        assert!(!meter.tick(t0 + us(2_000_800))); // 4.8 ms > 4.5 ms
        assert!(meter.limit_hit);
        assert_eq!(meter.used(), us(4800));
    }

    #[test]
    fn short_runs_do_not_yield_and_resuming_keeps_counting() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut meter = CpuMeter::new(ms(1000));
        meter.start(t0);
        assert!(meter.tick(t0 + ms(2)));
        assert!(!meter.should_yield(), "2 ms of CPU: keep going");
        meter.resume(t0 + ms(2));
        assert!(meter.tick(t0 + ms(4)));
        assert_eq!(meter.used(), ms(4), "the resumed segment is counted");
        assert!(!meter.should_yield());
    }

    /// Past PRECISE_AFTER, time the thread does not run is not charged: a
    /// segment that spends 200 ms blocked (standing in for preemption by
    /// other processes) costs what the thread actually computed.
    #[test]
    fn preempted_time_is_not_charged_past_the_first_milliseconds() {
        let ms = Duration::from_millis;
        let mut meter = CpuMeter::new(ms(1000));
        let t0 = Instant::now();
        meter.start(t0);
        meter.stop(t0 + PRECISE_AFTER);
        assert!(meter.precise());
        let before = meter.used();
        meter.start(Instant::now());
        std::thread::sleep(ms(200)); // off-CPU: not the guest's time
        // 15 ms of this thread's own CPU, however long that takes.
        let burn = thread_cpu_now();
        let mut x = 0u64;
        while thread_cpu_now() - burn < ms(15) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        meter.stop(Instant::now());
        let charged = meter.used() - before;
        assert!(
            charged >= ms(15),
            "the computing part is charged: {charged:?}"
        );
        assert!(charged < ms(150), "the 200 ms off-CPU are not: {charged:?}");
    }

    #[tokio::test]
    async fn heavy_slices_take_turns_in_the_lane_and_waiting_leaves_it() {
        let lane = HeavyLane::new(1);
        let mut a = CpuMeter::new(Duration::from_secs(1)).with_lane(Some(lane.clone()));
        let mut b = CpuMeter::new(Duration::from_secs(1)).with_lane(Some(lane.clone()));
        a.yield_now().await;
        assert_eq!(
            lane.0.available_permits(),
            0,
            "a runs its slice in the lane"
        );
        // b waits for the slot while a holds it…
        let waiting = tokio::spawn(b.yield_now());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // …and gets it when a calls the host.
        a.leave_lane();
        waiting.await.unwrap();
        assert_eq!(lane.0.available_permits(), 0, "b holds it now");
        drop(b);
        assert_eq!(
            lane.0.available_permits(),
            1,
            "a dropped meter gives its slot back"
        );
    }

    #[test]
    fn the_thread_cpu_clock_advances_with_work_only() {
        let a = thread_cpu_now();
        std::thread::sleep(Duration::from_millis(50));
        let b = thread_cpu_now();
        assert!(
            b - a < Duration::from_millis(25),
            "sleeping used {:?}",
            b - a
        );
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_now() > b, "computing advanced it");
    }
}
