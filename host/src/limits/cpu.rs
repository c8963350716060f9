//! The CPU meter: time a guest spends executing wasm or in host calls that
//! work for it, excluding host calls that wait (I/O, other workers) and
//! time parked after yielding; see `docs/limits.md` for the method and its
//! precision. It never decides anything on its own: the invocation's
//! [`Polled`] future and the runtime's epoch callback ask it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A reading of the meter's clock: the TSC read directly where it is
/// invariant (`quanta`, calibrated against the OS's monotonic clock at the
/// first reading), else the OS's monotonic clock. The meter reads it twice
/// per poll of an invocation and at every epoch tick, where a vDSO
/// `clock_gettime` cost ~24 ns here and the TSC ~10 ns.
pub type Instant = quanta::Instant;

/// Now, on the meter's clock.
pub fn now() -> Instant {
    Instant::now()
}

/// CPU time after which a running guest yields to the scheduler at every
/// epoch tick (see [`CpuMeter::tick`]).
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

/// Measures the CPU time a guest's invocation takes: the time inside each
/// poll of its future (wasm, instantiation, and every host call that does
/// not wait), excluding the time between polls — host calls that wait (I/O,
/// other workers), time parked after yielding, time queued for the heavy
/// lane — and, past the first few milliseconds, time its thread was
/// preempted.
///
/// The invocation's future is wrapped in a [`Polled`], which opens a
/// segment when a poll begins and charges it when the poll returns; the
/// epoch callback charges the segment so far at every tick it observes (and
/// starts the next one), so the budget is checked while the guest runs. A
/// segment never spans an `.await`, so it starts and ends on one thread.
/// No hook runs at host-call boundaries: a dispatched request makes about a
/// hundred host calls and a poll or two per wait.
///
/// Two clocks: a request's first [`PRECISE_AFTER`] of metered time is
/// measured on the monotonic clock, because reading a thread's CPU clock is
/// a system call (~1.2 µs on the reference VM, against ~10 ns) and most
/// requests are over by then. From then on every segment is measured on the
/// thread's CPU clock, so a busy machine (another service, a build, a
/// second host) does not make a guest pay for time it was not running: at
/// most `PRECISE_AFTER` of wall time can be charged (a monotonic segment is
/// cut at what is left of it). The budget is checked at every epoch tick
/// the guest observes, so a spinning guest is stopped at most one tick
/// (`runtime.epoch_tick_ms`) after its budget ran out.
#[derive(Debug)]
pub struct CpuMeter {
    budget: Duration,
    /// What the meter shares with its invocation's [`Polled`] future.
    shared: Arc<Shared>,
    /// CPU time before the guest yields at every tick.
    yield_after: Duration,
    /// Set when the budget ran out.
    pub limit_hit: bool,
    /// Yields handed out at epoch ticks in this request.
    yields: u32,
}

/// The bounded lane for CPU-heavy invocations: a guest that has computed
/// past [`YIELD_AFTER`] is polled only while it holds a slot of this lane,
/// and gives the slot back whenever its future is pending (it yielded, or a
/// host call waits). With fewer slots than worker threads (by default one
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

/// What a meter shares with its invocation's [`Polled`] future.
#[derive(Debug, Default)]
struct Shared {
    /// The time charged so far and the open segment.
    clock: Mutex<Clock>,
    /// Set once the guest is past its slice: from then on its future is
    /// polled only while it holds a lane slot.
    heavy: AtomicBool,
    /// The lane heavy polls run in, if any.
    lane: Option<HeavyLane>,
}

/// A meter's charged time and open segment.
#[derive(Debug, Default)]
struct Clock {
    used: Duration,
    /// Where the current poll's uncharged part began, while one runs.
    since: Option<Stamp>,
}

impl Clock {
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

    /// Opens a segment at `now`.
    fn open(&mut self, now: Instant) {
        self.since = Some(self.stamp(now));
    }

    /// Charges the open segment up to `now` and closes it. A segment
    /// measured on the monotonic clock counts only up to what is left of
    /// [`PRECISE_AFTER`]: one preemption by another process inside an early
    /// segment (a busy machine can take the thread away for tens of
    /// milliseconds) costs the guest at most that, and then the thread's
    /// own clock takes over.
    fn close(&mut self, now: Instant) {
        self.used += match self.since.take() {
            None => Duration::ZERO,
            Some(Stamp::Wall(since)) => now
                .saturating_duration_since(since)
                .min(PRECISE_AFTER.saturating_sub(self.used)),
            Some(Stamp::Cpu(since)) => thread_cpu_now().saturating_sub(since),
        };
    }

    /// Charges the open segment up to `now` and opens the next one there
    /// (an epoch tick inside a poll). On the thread's own clock that is
    /// one clock read, not one to close and another to open.
    fn roll(&mut self, now: Instant) {
        match self.since {
            None => {}
            Some(Stamp::Cpu(since)) => {
                let at = thread_cpu_now();
                self.used += at.saturating_sub(since);
                self.since = Some(Stamp::Cpu(at));
            }
            Some(Stamp::Wall(_)) => {
                self.close(now);
                self.open(now);
            }
        }
    }
}

/// What the guest does after an epoch tick ([`CpuMeter::tick`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Budget left and still inside its slice: keep running.
    Continue,
    /// Budget left but past its slice: yield ([`CpuMeter::yield_now`]).
    Yield,
    /// The budget ran out: trap with the CPU limit.
    Exceeded,
}

impl Shared {
    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CpuMeter {
    /// A meter allowing `budget` of execution, whose heavy slices run in
    /// `lane` (if any).
    pub fn new(budget: Duration, lane: Option<HeavyLane>) -> Self {
        let shared = Shared {
            lane,
            ..Shared::default()
        };
        Self {
            budget,
            shared: Arc::new(shared),
            yield_after: YIELD_AFTER,
            limit_hit: false,
            yields: 0,
        }
    }

    /// Yields into the lane after `after` of CPU instead of
    /// [`YIELD_AFTER`] (a CPU-heavy tenant's shorter slice).
    pub fn with_yield_after(mut self, after: Duration) -> Self {
        self.yield_after = after;
        self
    }

    /// CPU time used so far.
    pub fn used(&self) -> Duration {
        self.shared.clock().used
    }

    /// How often the guest yielded at an epoch tick in this request.
    pub fn yields(&self) -> u32 {
        self.yields
    }

    /// At an epoch tick: charges the running segment up to `now` (the next
    /// one starts there) and says what the guest does next, from one look
    /// at the clock. [`Tick::Exceeded`] sets [`CpuMeter::limit_hit`], and
    /// every later tick says so too.
    ///
    /// A guest yields only once it has run longer than its slice in this
    /// request. Short requests never yield: a yield parks the task behind
    /// every other runnable one, which showed up as a ~30 ms p99 at a 2 ms
    /// median; a guest that keeps computing yields at every tick once past
    /// its slice, so it cannot starve others.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let used = {
            let mut clock = self.shared.clock();
            clock.roll(now);
            clock.used
        };
        if used > self.budget {
            self.limit_hit = true;
        }
        if self.limit_hit {
            Tick::Exceeded
        } else if used >= self.yield_after {
            Tick::Yield
        } else {
            Tick::Continue
        }
    }

    /// A future to yield with at a tick: it gives the scheduler a turn.
    /// The guest's future is pending meanwhile, so its [`Polled`] gives the
    /// lane slot back and queues for it again (in arrival order) before
    /// the next slice; the time parked is not charged.
    pub fn yield_now(&mut self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        self.yields = self.yields.saturating_add(1);
        self.shared.heavy.store(true, Ordering::Relaxed);
        Box::pin(tokio::task::yield_now())
    }

    /// What a [`Polled`] future shares with this meter.
    pub fn link(&self) -> MeterLink {
        MeterLink(self.shared.clone())
    }
}

/// An invocation's future, seen by its [`CpuMeter`]: each poll is a
/// segment of the guest's CPU time, and the time between polls (a host
/// call waiting, a yield, the lane) is not. Once the guest is past its
/// slice, every poll first takes a slot of the heavy lane, and gives it
/// back when the future is pending: a guest never holds the lane while it
/// waits (a dispatch worker waiting for the user worker it called cannot
/// deadlock with it), and a heavy guest coming back from a wait queues for
/// the lane before it computes on. Host calls that do not wait keep the
/// slot: a spinner cannot leave the lane by calling the host.
pub struct Polled<F> {
    inner: F,
    shared: Arc<Shared>,
    slot: Option<OwnedSemaphorePermit>,
    /// The wait for a lane slot, while one is queued for.
    queued: Option<std::pin::Pin<Box<Acquire>>>,
}

type Acquire = dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send;

/// What a [`Polled`] shares with its meter.
pub struct MeterLink(Arc<Shared>);

impl<F> Polled<F> {
    /// Wraps `inner` for the meter `link` came from.
    pub fn new(inner: F, link: MeterLink) -> Self {
        Self {
            inner,
            shared: link.0,
            slot: None,
            queued: None,
        }
    }

    /// A heavy guest's lane slot: ready when it holds one (or no lane
    /// applies), pending while it queues.
    fn take_lane(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(HeavyLane(lane)) = &self.shared.lane else {
            return Poll::Ready(());
        };
        if self.slot.is_some() || !self.shared.heavy.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        let queued = self
            .queued
            .get_or_insert_with(|| Box::pin(lane.clone().acquire_owned()));
        match queued.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            // The lane is never closed; a closed one would not hold anyone.
            Poll::Ready(permit) => self.slot = permit.ok(),
        }
        self.queued = None;
        Poll::Ready(())
    }
}

impl<F: Future + Unpin> Future for Polled<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if self.take_lane(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        self.shared.clock().open(now());
        let polled = std::pin::Pin::new(&mut self.inner).poll(cx);
        self.shared.clock().close(now());
        if polled.is_pending() {
            self.slot = None;
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    /// The meter's poll boundaries at chosen instants: below PRECISE_AFTER
    /// the meter uses the instants it is given.
    fn poll_span(meter: &CpuMeter, from: Instant, to: Instant) {
        let mut clock = meter.shared.clock();
        clock.open(from);
        clock.close(to);
    }

    #[test]
    fn only_time_inside_polls_is_charged() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let mut meter = CpuMeter::new(us(4500), None);
        // 2 ms of wasm and host calls that did not wait, then a host call
        // that waited ~1 s for I/O: the future was pending meanwhile.
        poll_span(&meter, t0, t0 + ms(2));
        meter.shared.clock().open(t0 + ms(1000));
        assert_eq!(meter.tick(t0 + ms(1002)), Tick::Continue, "4 ms of 4.5");
        assert_eq!(meter.used(), ms(4));
        // The tick started the next segment where it charged the last.
        assert_eq!(
            meter.tick(t0 + us(1_002_800)),
            Tick::Exceeded,
            "4.8 ms > 4.5 ms"
        );
        assert!(meter.limit_hit);
        assert_eq!(meter.used(), us(4800));
        meter.shared.clock().close(t0 + us(1_002_900));
        assert_eq!(meter.used(), us(4900), "the poll's end charges the rest");
        assert_eq!(meter.tick(t0 + ms(2000)), Tick::Exceeded, "still over");
        assert_eq!(meter.used(), us(4900), "no poll running, nothing charged");
    }

    /// A preemption inside an early (monotonic-clock) segment costs the
    /// guest at most PRECISE_AFTER, whatever its length.
    #[test]
    fn wall_clock_segments_charge_at_most_precise_after() {
        let t0 = Instant::now();
        let meter = CpuMeter::new(Duration::from_secs(1), None);
        poll_span(&meter, t0, t0 + Duration::from_millis(80)); // descheduled 80 ms
        assert_eq!(meter.used(), PRECISE_AFTER);
        assert!(
            meter.shared.clock().precise(),
            "the thread's own clock from now on"
        );
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
        let meter =
            CpuMeter::new(Duration::from_secs(1), None).with_yield_after(history.yield_after());
        assert_eq!(meter.yield_after, HEAVY_YIELD_AFTER);
        // The mark expires.
        history.heavy_until_ms.store(clock_ms(), Ordering::Relaxed);
        assert_eq!(history.yield_after(), YIELD_AFTER);
    }

    #[test]
    fn short_runs_do_not_yield_and_ticks_keep_counting() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut meter = CpuMeter::new(ms(1000), None).with_yield_after(ms(3));
        meter.shared.clock().open(t0);
        assert_eq!(meter.tick(t0 + ms(2)), Tick::Continue, "2 ms of CPU");
        assert_eq!(meter.tick(t0 + ms(4)), Tick::Yield, "past its 3 ms slice");
        assert_eq!(meter.used(), ms(4), "the segment after a tick is counted");
        assert_eq!(meter.yields(), 0, "yields are counted when handed out");
    }

    /// Past PRECISE_AFTER, time the thread does not run is not charged: a
    /// segment that spends 200 ms blocked (standing in for preemption by
    /// other processes) costs what the thread actually computed.
    #[test]
    fn preempted_time_is_not_charged_past_the_first_milliseconds() {
        let ms = Duration::from_millis;
        let meter = CpuMeter::new(ms(1000), None);
        let t0 = Instant::now();
        poll_span(&meter, t0, t0 + PRECISE_AFTER);
        let before = meter.used();
        meter.shared.clock().open(Instant::now());
        std::thread::sleep(ms(200)); // off-CPU: not the guest's time
        burn(ms(15));
        meter.shared.clock().close(Instant::now());
        let charged = meter.used() - before;
        assert!(
            charged >= ms(15),
            "the computing part is charged: {charged:?}"
        );
        assert!(charged < ms(150), "the 200 ms off-CPU are not: {charged:?}");
    }

    /// Computes for `cpu` of this thread's own CPU, however long that takes.
    fn burn(cpu: Duration) {
        let from = thread_cpu_now();
        let mut x = 0u64;
        while thread_cpu_now() - from < cpu {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    /// On the thread's own clock a tick charges the segment so far and the
    /// next segment starts at the same reading: consecutive ticks charge
    /// every bit of CPU between them, none twice.
    #[test]
    fn ticks_on_the_thread_clock_charge_each_stretch_once() {
        let ms = Duration::from_millis;
        let mut meter =
            CpuMeter::new(Duration::from_secs(10), None).with_yield_after(Duration::from_secs(10));
        let t0 = Instant::now();
        poll_span(&meter, t0, t0 + PRECISE_AFTER);
        let opened = meter.used();
        let start = thread_cpu_now();
        meter.shared.clock().open(Instant::now());
        for _ in 0..3 {
            burn(ms(2));
            assert_eq!(meter.tick(Instant::now()), Tick::Continue);
            assert!(
                matches!(meter.shared.clock().since, Some(Stamp::Cpu(_))),
                "a tick leaves a segment open on the thread clock"
            );
        }
        meter.shared.clock().close(Instant::now());
        let charged = meter.used() - opened;
        let spent = thread_cpu_now() - start;
        assert!(charged >= ms(6), "three 2 ms stretches: {charged:?}");
        assert!(
            charged <= spent,
            "never more than the thread computed ({spent:?}): {charged:?}"
        );
    }

    /// A stand-in for an invocation: counts its polls and is pending until
    /// told to finish.
    struct Guest {
        polls: Arc<AtomicU64>,
        done: Arc<AtomicBool>,
    }

    impl Future for Guest {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.done.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn guest(meter: &CpuMeter) -> (Polled<Guest>, Arc<AtomicU64>, Arc<AtomicBool>) {
        let (polls, done) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let inner = Guest {
            polls: polls.clone(),
            done: done.clone(),
        };
        (Polled::new(inner, meter.link()), polls, done)
    }

    /// A guest past its slice is polled only while it holds a lane slot,
    /// gives the slot back whenever it is pending (after its yield, or a
    /// host call that waits), and queues for it again before computing on;
    /// a light guest never touches the lane.
    #[test]
    fn heavy_guests_compute_only_in_the_lane_and_never_wait_in_it() {
        let lane = HeavyLane::new(1);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let laned = || CpuMeter::new(Duration::from_secs(1), Some(lane.clone()));

        let light = laned();
        let (mut polled, polls, _) = guest(&light);
        let held = lane.0.clone().try_acquire_owned().unwrap();
        assert!(std::pin::Pin::new(&mut polled).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1, "light: no lane needed");
        drop(held);

        let mut heavy = laned();
        let (mut polled, polls, done) = guest(&heavy);
        drop(heavy.yield_now()); // past its slice at a tick
        assert_eq!(heavy.yields(), 1);
        let other = lane.0.clone().try_acquire_owned().unwrap(); // another heavy guest's slice
        assert!(std::pin::Pin::new(&mut polled).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 0, "queued for the lane");
        drop(other);
        assert!(std::pin::Pin::new(&mut polled).poll(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "ran its slice in the lane"
        );
        assert_eq!(lane.0.available_permits(), 1, "pending: the slot went back");
        done.store(true, Ordering::Relaxed);
        assert!(std::pin::Pin::new(&mut polled).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
        assert_eq!(lane.0.available_permits(), 0, "held until dropped");
        drop(polled);
        assert_eq!(lane.0.available_permits(), 1);
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
