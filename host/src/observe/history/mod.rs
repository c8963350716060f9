//! The dashboard's history: what this host did in the last 15 minutes,
//! second by second, in memory, so the dashboard needs no Prometheus (an
//! operator can still scrape `/metrics` as before).
//!
//! - **Counting** ([`counters`]): the invoke pipeline already reports every
//!   request, CPU time, fuel, limit hit, subrequest and memory peak to
//!   [`Metrics`](super::metrics::Metrics); it bumps the host's counters and
//!   the script's here too — a map lookup and relaxed atomic adds, no lock
//!   held across anything, no allocation (but the first time a script is
//!   seen).
//! - **Sampling** ([`History::sample`]): one background task calls it once
//!   a second. It swaps the counters back to zero and appends one sample
//!   for the host, and one per script that did anything: an idle second
//!   costs a script nothing.
//! - **Views** ([`view`]): the JSON of `GET /v1/dashboard/history`,
//!   `…/scripts/{ns}/{name}/history` and `…/top`.
//! - **Last errors**: per script, the 50 newest failed requests (request
//!   id, status, outcome, path), recorded by the invoke pipeline.
//!
//! **Bounds.** Scripts are keyed by the labels `/metrics` uses, so the
//! same `runtime.max_script_series` bounds them: scripts beyond it share
//! their namespace's `_other` entry (and `_other/_other` for namespaces
//! beyond it); their own charts are empty, `itemized: false`, and they show
//! in the top lists as `_other`. Per entry: at most [`WINDOW_S`] samples of
//! 64 bytes (≈ 58 KB for a script busy every second of 15 minutes;
//! ≈ 58 MB for 1,000 such scripts) and [`MAX_ERRORS`] errors with paths cut
//! to [`MAX_ERROR_PATH`] bytes; the host ring holds [`WINDOW_S`] samples.
//!
//! It records; it never decides anything about a request.

pub mod counters;
pub mod view;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use super::labels::ScriptLabels;
use counters::{
    CODES, HostCounters, LIMIT_KINDS, STATUS_CLASSES, ScriptCounters, quantile_ms, sat32,
};

/// Seconds of history kept (15 minutes).
pub const WINDOW_S: u64 = 900;
/// Errors kept per script.
pub const MAX_ERRORS: usize = 50;
/// Bytes of a path kept in an error record.
pub const MAX_ERROR_PATH: usize = 256;

/// What the sampler reads from the runtime each second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Bytes the host holds for instances outside their linear memory.
    pub host_memory_bytes: u64,
    /// Component instances alive in the pooling allocator.
    pub instances: u64,
}

/// One second of the host.
#[derive(Debug, Clone, Copy)]
struct HostSample {
    second: u64,
    /// How long the sample covers (normally 1,000 ms): counts are divided
    /// by it to read as per-second rates.
    span_ms: u32,
    requests: u32,
    errors: [u32; CODES.len()],
    p50_ms: f32,
    p99_ms: f32,
    cpu_us: u64,
    host_memory_bytes: u64,
    instances: u32,
}

/// One second of one script (only seconds it did something in).
#[derive(Debug, Clone, Copy)]
struct ScriptSample {
    second: u32,
    requests: [u32; STATUS_CLASSES.len()],
    limit_hits: [u16; LIMIT_KINDS.len()],
    cpu_us: u32,
    fuel: u64,
    /// `NaN` when no request finished in the second.
    p99_ms: f32,
    subrequests: u32,
    memory_peak_kib: u32,
}

/// A failed request, as the script page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RecentError {
    /// When it finished, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The request id (`berth-request-id`).
    pub request_id: Option<String>,
    /// The status the client got.
    pub status: u16,
    /// The `x-berth-error` code, or `ok` for a 5xx the guest chose.
    pub outcome: &'static str,
    /// The URL path, without the query string, cut to [`MAX_ERROR_PATH`]
    /// bytes.
    pub path: String,
    /// The script (entries folded into `_other` keep their own name).
    #[serde(skip)]
    pub script: String,
}

impl RecentError {
    /// A record of a failed request; the path is cut to
    /// [`MAX_ERROR_PATH`] bytes.
    pub fn new(
        script: &str,
        request_id: Option<String>,
        status: u16,
        outcome: &'static str,
        path: &str,
        timestamp_ms: u64,
    ) -> Self {
        let mut end = path.len().min(MAX_ERROR_PATH);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            timestamp_ms,
            request_id,
            status,
            outcome,
            path: path[..end].to_owned(),
            script: script.to_owned(),
        }
    }
}

/// A script's live counters, its samples and its last errors.
#[derive(Default)]
struct ScriptEntry {
    counters: ScriptCounters,
    samples: Mutex<VecDeque<ScriptSample>>,
    errors: Mutex<VecDeque<RecentError>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host's and every itemised script's last 15 minutes.
#[derive(Default)]
pub struct History {
    host: HostCounters,
    host_samples: Mutex<VecDeque<HostSample>>,
    /// When the sampler last ran, ms since the Unix epoch (0: never).
    last_sample_ms: AtomicU64,
    scripts: RwLock<HashMap<ScriptLabels, Arc<ScriptEntry>>>,
}

/// One script's history entry, looked up once: what a loaded worker keeps
/// so that counting its requests takes no lock and hashes no label.
#[derive(Clone)]
pub struct ScriptHandle(Arc<ScriptEntry>);

impl History {
    /// The history entry of a script's labels (created the first time),
    /// for the request path to count through without a lookup.
    pub fn script(&self, labels: &ScriptLabels) -> ScriptHandle {
        ScriptHandle(self.entry(labels))
    }

    /// [`History::request`] through a looked-up entry.
    pub fn request_of(&self, script: &ScriptHandle, status: u16, code: &str, seconds: f64) {
        self.host.request(code, seconds);
        script.0.counters.request(status, seconds);
    }

    /// [`History::cpu`] through a looked-up entry.
    pub fn cpu_of(&self, script: &ScriptHandle, seconds: f64) {
        self.host.cpu(seconds);
        script.0.counters.cpu(seconds);
    }

    /// [`History::memory`] through a looked-up entry.
    pub fn memory_of(&self, script: &ScriptHandle, bytes: u64) {
        script.0.counters.memory(bytes);
    }

    /// [`History::fuel`] through a looked-up entry.
    pub fn fuel_of(&self, script: &ScriptHandle, fuel: u64) {
        script.0.counters.fuel(fuel);
    }

    /// The entry of a script's labels, created the first time.
    fn entry(&self, labels: &ScriptLabels) -> Arc<ScriptEntry> {
        if let Some(entry) = self
            .scripts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(labels)
        {
            return entry.clone();
        }
        self.scripts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(labels.clone())
            .or_default()
            .clone()
    }

    /// The entry of a script's labels, if it was ever seen.
    fn existing(&self, labels: &ScriptLabels) -> Option<Arc<ScriptEntry>> {
        self.scripts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(labels)
            .cloned()
    }

    /// Every entry (the sampler's walk: no labels copied).
    fn all(&self) -> Vec<Arc<ScriptEntry>> {
        self.scripts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every entry with its labels, for the top lists.
    fn entries(&self) -> Vec<(ScriptLabels, Arc<ScriptEntry>)> {
        self.scripts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A finished request: its status, `x-berth-error` code (empty when the
    /// guest answered) and time to the response head.
    pub fn request(&self, labels: &ScriptLabels, status: u16, code: &str, seconds: f64) {
        self.request_of(&self.script(labels), status, code, seconds);
    }

    /// CPU time a guest used.
    pub fn cpu(&self, labels: &ScriptLabels, seconds: f64) {
        self.cpu_of(&self.script(labels), seconds);
    }

    /// Fuel a guest consumed.
    pub fn fuel(&self, labels: &ScriptLabels, fuel: u64) {
        self.fuel_of(&self.script(labels), fuel);
    }

    /// An invocation stopped by a limit of `kind`.
    pub fn limit_hit(&self, labels: &ScriptLabels, kind: &str) {
        self.entry(labels).counters.limit_hit(kind);
    }

    /// An outbound request (any outcome).
    pub fn subrequest(&self, labels: &ScriptLabels) {
        self.entry(labels).counters.subrequest();
    }

    /// The most memory one invocation held (linear plus host memory).
    pub fn memory(&self, labels: &ScriptLabels, bytes: u64) {
        self.memory_of(&self.script(labels), bytes);
    }

    /// A failed request, kept among the script's last [`MAX_ERRORS`].
    pub fn error(&self, labels: &ScriptLabels, error: RecentError) {
        let entry = self.entry(labels);
        let mut errors = lock(&entry.errors);
        if errors.len() >= MAX_ERRORS {
            errors.pop_front();
        }
        errors.push_back(error);
    }

    /// Closes the period that ended at `now_ms`: one host sample, one
    /// sample per script that did anything, and samples older than
    /// [`WINDOW_S`] dropped. Called once a second by one task.
    pub fn sample(&self, now_ms: u64, gauges: Gauges) {
        let host = self.host.drain();
        let mut samples = lock(&self.host_samples);
        // The period is the second that just ended; a late or early tick
        // joins the newest sample rather than reorder them.
        let mut second = (now_ms / 1000).saturating_sub(1);
        if let Some(last) = samples.back() {
            second = second.max(last.second);
        }
        let span_ms = match self.last_sample_ms.swap(now_ms, Ordering::Relaxed) {
            0 => 1000,
            last => sat32(now_ms.saturating_sub(last).clamp(1, 10_000)),
        };
        let sample = HostSample {
            second,
            span_ms,
            requests: host.requests,
            errors: host.errors,
            p50_ms: quantile_ms(&host.latency, 0.5).unwrap_or(f32::NAN),
            p99_ms: quantile_ms(&host.latency, 0.99).unwrap_or(f32::NAN),
            cpu_us: host.cpu_ns / 1000,
            host_memory_bytes: gauges.host_memory_bytes,
            instances: sat32(gauges.instances),
        };
        match samples.back_mut() {
            Some(last) if last.second == second => merge_host(last, &sample),
            _ => samples.push_back(sample),
        }
        let oldest = second.saturating_sub(WINDOW_S - 1);
        while samples.front().is_some_and(|s| s.second < oldest) {
            samples.pop_front();
        }
        drop(samples);

        let second32 = u32::try_from(second).unwrap_or(u32::MAX);
        let oldest32 = u32::try_from(oldest).unwrap_or(u32::MAX);
        for entry in self.all() {
            let drained = entry.counters.drain();
            let mut ring = lock(&entry.samples);
            if let Some(d) = drained {
                let sample = ScriptSample {
                    second: second32,
                    requests: d.requests,
                    limit_hits: d.limit_hits.map(|n| u16::try_from(n).unwrap_or(u16::MAX)),
                    cpu_us: sat32(d.cpu_ns / 1000),
                    fuel: d.fuel,
                    p99_ms: quantile_ms(&d.latency, 0.99).unwrap_or(f32::NAN),
                    subrequests: d.subrequests,
                    memory_peak_kib: sat32(d.memory_peak.div_ceil(1024)),
                };
                match ring.back_mut() {
                    Some(last) if last.second == second32 => merge_script(last, &sample),
                    _ => ring.push_back(sample),
                }
            }
            while ring.front().is_some_and(|s| s.second < oldest32) {
                ring.pop_front();
            }
            if ring.is_empty() && ring.capacity() > 0 {
                ring.shrink_to_fit();
            }
        }
    }
}

fn merge_host(into: &mut HostSample, more: &HostSample) {
    into.span_ms = into.span_ms.saturating_add(more.span_ms);
    into.requests = into.requests.saturating_add(more.requests);
    for (a, b) in into.errors.iter_mut().zip(more.errors) {
        *a = a.saturating_add(b);
    }
    into.p50_ms = into.p50_ms.max(more.p50_ms);
    into.p99_ms = into.p99_ms.max(more.p99_ms);
    into.cpu_us += more.cpu_us;
    into.host_memory_bytes = more.host_memory_bytes;
    into.instances = more.instances;
}

fn merge_script(into: &mut ScriptSample, more: &ScriptSample) {
    for (a, b) in into.requests.iter_mut().zip(more.requests) {
        *a = a.saturating_add(b);
    }
    for (a, b) in into.limit_hits.iter_mut().zip(more.limit_hits) {
        *a = a.saturating_add(b);
    }
    into.cpu_us = into.cpu_us.saturating_add(more.cpu_us);
    into.fuel = into.fuel.saturating_add(more.fuel);
    into.p99_ms = into.p99_ms.max(more.p99_ms);
    into.subrequests = into.subrequests.saturating_add(more.subrequests);
    into.memory_peak_kib = into.memory_peak_kib.max(more.memory_peak_kib);
}

#[cfg(test)]
mod tests;
