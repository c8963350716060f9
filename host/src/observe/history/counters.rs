//! What happened since the last sample: atomic counters the request path
//! bumps (relaxed adds, no locks, no allocation) and the sampler swaps back
//! to zero once a second. Also the fixed label sets the history uses, and
//! the latency buckets a quantile is read from.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::base::error::ErrorCode;

/// Status classes charted per script (`1xx` and out-of-range statuses are
/// counted in the host's total only).
pub const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Limit kinds, as `berth_limit_hits_total` names them (`limit_kind`);
/// any other kind is not charted.
pub const LIMIT_KINDS: [&str; 8] = [
    "cpu",
    "fuel",
    "wall",
    "memory",
    "subrequests",
    "concurrency",
    "request_body",
    "response_body",
];

/// Every `x-berth-error` code, in the SDK's order.
pub const CODES: [ErrorCode; ErrorCode::ALL.len()] = ErrorCode::ALL;

/// Upper bound of the first latency bucket: 50 µs.
const LATENCY_BASE_S: f64 = 50e-6;
/// Buckets per doubling: bounds 19 % apart, so a quantile interpolated
/// inside one is off by a few percent at most.
const PER_DOUBLING: f64 = 4.0;
/// 80 bounded buckets reach 50 µs × 2²⁰ ≈ 52 s; the last holds anything
/// slower.
pub const LATENCY_BUCKETS: usize = 81;

/// The bucket a latency falls in.
pub fn latency_bucket(seconds: f64) -> usize {
    // NaN and anything up to the base land in the first bucket.
    if seconds.is_nan() || seconds <= LATENCY_BASE_S {
        return 0;
    }
    let index = ((seconds / LATENCY_BASE_S).log2() * PER_DOUBLING).ceil();
    (index as usize).min(LATENCY_BUCKETS - 1)
}

/// Upper bound of bucket `i`, seconds.
fn upper_bound(i: usize) -> f64 {
    LATENCY_BASE_S * (i as f64 / PER_DOUBLING).exp2()
}

/// The `q` quantile (0..=1) of the latencies counted in `buckets`, ms,
/// interpolated linearly inside its bucket; `None` when nothing was
/// counted. Anything in the last (unbounded) bucket reads as its lower
/// bound.
pub fn quantile_ms(buckets: &[u32; LATENCY_BUCKETS], q: f64) -> Option<f32> {
    let total: u64 = buckets.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let through = below + u64::from(count);
        if through as f64 >= rank || i == LATENCY_BUCKETS - 1 {
            let lower = if i == 0 { 0.0 } else { upper_bound(i - 1) };
            if i == LATENCY_BUCKETS - 1 {
                return Some((lower * 1000.0) as f32);
            }
            let within = ((rank - below as f64) / f64::from(count)).clamp(0.0, 1.0);
            let seconds = lower + (upper_bound(i) - lower) * within;
            return Some((seconds * 1000.0) as f32);
        }
        below = through;
    }
    None
}

/// Takes a counter's value and leaves zero.
fn take(counter: &AtomicU64) -> u64 {
    counter.swap(0, Relaxed)
}

/// A count as a sample field, saturating.
pub fn sat32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn zeroed<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// Latencies counted by bucket.
pub struct Latency([AtomicU64; LATENCY_BUCKETS]);

impl Default for Latency {
    fn default() -> Self {
        Self(zeroed())
    }
}

impl Latency {
    /// Counts one latency.
    pub fn record(&self, seconds: f64) {
        self.0[latency_bucket(seconds)].fetch_add(1, Relaxed);
    }

    /// The counts since the last drain.
    pub fn drain(&self) -> [u32; LATENCY_BUCKETS] {
        std::array::from_fn(|i| sat32(take(&self.0[i])))
    }
}

/// One script's counters since the last sample.
pub struct ScriptCounters {
    requests: [AtomicU64; STATUS_CLASSES.len()],
    latency: Latency,
    cpu_ns: AtomicU64,
    fuel: AtomicU64,
    limit_hits: [AtomicU64; LIMIT_KINDS.len()],
    subrequests: AtomicU64,
    memory_peak: AtomicU64,
    /// Set by every count, cleared by the sampler: idle scripts are
    /// skipped without reading the rest.
    busy: AtomicBool,
}

impl Default for ScriptCounters {
    fn default() -> Self {
        Self {
            requests: zeroed(),
            latency: Latency::default(),
            cpu_ns: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            limit_hits: zeroed(),
            subrequests: AtomicU64::new(0),
            memory_peak: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }
}

/// What one script did in one sampling period.
pub struct ScriptDrain {
    pub requests: [u32; STATUS_CLASSES.len()],
    pub latency: [u32; LATENCY_BUCKETS],
    pub cpu_ns: u64,
    pub fuel: u64,
    pub limit_hits: [u32; LIMIT_KINDS.len()],
    pub subrequests: u32,
    pub memory_peak: u64,
}

impl ScriptCounters {
    fn touch(&self) {
        self.busy.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Counts a finished request.
    pub fn request(&self, status: u16, seconds: f64) {
        if let Some(class) = status_index(status) {
            self.requests[class].fetch_add(1, Relaxed);
        }
        self.latency.record(seconds);
        self.touch();
    }

    /// Counts CPU time.
    pub fn cpu(&self, seconds: f64) {
        self.cpu_ns.fetch_add((seconds * 1e9) as u64, Relaxed);
        self.touch();
    }

    /// Counts fuel.
    pub fn fuel(&self, fuel: u64) {
        self.fuel.fetch_add(fuel, Relaxed);
        self.touch();
    }

    /// Counts a limit hit of a known kind.
    pub fn limit_hit(&self, kind: &str) {
        if let Some(i) = LIMIT_KINDS.iter().position(|k| *k == kind) {
            self.limit_hits[i].fetch_add(1, Relaxed);
            self.touch();
        }
    }

    /// Counts a subrequest.
    pub fn subrequest(&self) {
        self.subrequests.fetch_add(1, Relaxed);
        self.touch();
    }

    /// Keeps the largest memory an invocation held.
    pub fn memory(&self, bytes: u64) {
        self.memory_peak.fetch_max(bytes, Relaxed);
        self.touch();
    }

    /// The counts since the last drain, or `None` if nothing was counted.
    pub fn drain(&self) -> Option<ScriptDrain> {
        if !self.busy.swap(false, std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        Some(ScriptDrain {
            requests: std::array::from_fn(|i| sat32(take(&self.requests[i]))),
            latency: self.latency.drain(),
            cpu_ns: take(&self.cpu_ns),
            fuel: take(&self.fuel),
            limit_hits: std::array::from_fn(|i| sat32(take(&self.limit_hits[i]))),
            subrequests: sat32(take(&self.subrequests)),
            memory_peak: take(&self.memory_peak),
        })
    }
}

/// The host's counters since the last sample (every script, itemised or
/// not).
pub struct HostCounters {
    requests: AtomicU64,
    errors: [AtomicU64; CODES.len()],
    latency: Latency,
    cpu_ns: AtomicU64,
}

impl Default for HostCounters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: zeroed(),
            latency: Latency::default(),
            cpu_ns: AtomicU64::new(0),
        }
    }
}

/// What the host did in one sampling period.
pub struct HostDrain {
    pub requests: u32,
    pub errors: [u32; CODES.len()],
    pub latency: [u32; LATENCY_BUCKETS],
    pub cpu_ns: u64,
}

impl HostCounters {
    /// Counts a finished request and its `x-berth-error` code (empty when
    /// the guest answered).
    pub fn request(&self, code: &str, seconds: f64) {
        self.requests.fetch_add(1, Relaxed);
        if let Some(i) = code_index(code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
        self.latency.record(seconds);
    }

    /// Counts CPU time.
    pub fn cpu(&self, seconds: f64) {
        self.cpu_ns.fetch_add((seconds * 1e9) as u64, Relaxed);
    }

    /// The counts since the last drain.
    pub fn drain(&self) -> HostDrain {
        HostDrain {
            requests: sat32(take(&self.requests)),
            errors: std::array::from_fn(|i| sat32(take(&self.errors[i]))),
            latency: self.latency.drain(),
            cpu_ns: take(&self.cpu_ns),
        }
    }
}

/// Index of a status's class in [`STATUS_CLASSES`].
fn status_index(status: u16) -> Option<usize> {
    match status {
        200..=299 => Some(0),
        300..=399 => Some(1),
        400..=499 => Some(2),
        500..=599 => Some(3),
        _ => None,
    }
}

/// Index of an `x-berth-error` code in [`CODES`] (`None` for an empty or
/// unknown one).
fn code_index(code: &str) -> Option<usize> {
    if code.is_empty() {
        return None;
    }
    CODES.iter().position(|c| c.as_str() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_cover_microseconds_to_a_minute() {
        assert_eq!(latency_bucket(0.0), 0);
        assert_eq!(latency_bucket(f64::NAN), 0);
        assert_eq!(latency_bucket(50e-6), 0);
        assert_eq!(latency_bucket(100e-6), 4, "one doubling is four buckets");
        assert_eq!(latency_bucket(3600.0), LATENCY_BUCKETS - 1);
        let mut last = 0;
        for ms in [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0] {
            let b = latency_bucket(ms / 1000.0);
            assert!(b > last, "{ms} ms");
            assert!(upper_bound(b) >= ms / 1000.0 && upper_bound(b - 1) < ms / 1000.0);
            last = b;
        }
    }

    #[test]
    fn quantiles_are_read_within_a_few_percent() {
        let latency = Latency::default();
        assert_eq!(quantile_ms(&latency.drain(), 0.5), None);
        // 1..=1000 ms, one request each.
        for ms in 1..=1000 {
            latency.record(f64::from(ms) / 1000.0);
        }
        let buckets = latency.drain();
        let p50 = quantile_ms(&buckets, 0.5).unwrap();
        let p99 = quantile_ms(&buckets, 0.99).unwrap();
        assert!((p50 - 500.0).abs() < 500.0 * 0.1, "p50 {p50}");
        assert!((p99 - 990.0).abs() < 990.0 * 0.1, "p99 {p99}");
        assert_eq!(quantile_ms(&latency.drain(), 0.5), None, "drained");
    }

    #[test]
    fn an_idle_script_drains_to_nothing_and_counts_reset() {
        let c = ScriptCounters::default();
        assert!(c.drain().is_none());
        c.request(503, 0.01);
        c.request(204, 0.01);
        c.request(999, 0.01);
        c.limit_hit("cpu");
        c.limit_hit("no-such-kind");
        c.memory(10);
        c.memory(7);
        let d = c.drain().unwrap();
        assert_eq!(d.requests, [1, 0, 0, 1]);
        assert_eq!(d.limit_hits[0], 1);
        assert_eq!(d.memory_peak, 10);
        assert_eq!(d.latency.iter().sum::<u32>(), 3);
        assert!(c.drain().is_none());
    }

    #[test]
    fn host_errors_are_counted_by_code() {
        let h = HostCounters::default();
        h.request("", 0.001);
        h.request("cpu-limit", 0.001);
        h.request("not-a-code", 0.001);
        let d = h.drain();
        assert_eq!(d.requests, 3);
        let cpu = CODES
            .iter()
            .position(|c| c.as_str() == "cpu-limit")
            .unwrap();
        assert_eq!(d.errors[cpu], 1);
        assert_eq!(d.errors.iter().sum::<u32>(), 1);
    }
}
