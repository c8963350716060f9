//! The history as the dashboard reads it: the JSON of
//! `GET /v1/dashboard/history` (the host), `GET /v1/dashboard/scripts/
//! {ns}/{name}/history` (one script) and `GET /v1/dashboard/top` (the
//! heaviest scripts of the last minute).
//!
//! A history is [`WINDOW_S`] points one second apart, the last one the
//! second that ended most recently. Counts read as per-second rates. A
//! second the sampler did not cover (before the host started, a stalled
//! task) is `null` in every series; a covered second in which a script did
//! nothing is `0` in its counts and `null` in its latency.

use std::collections::BTreeMap;

use serde::Serialize;

use super::counters::{CODES, LIMIT_KINDS, STATUS_CLASSES};
use super::{History, HostSample, RecentError, ScriptSample, WINDOW_S, lock};
use crate::observe::metrics::ScriptLabels;

/// Seconds the top lists cover.
pub const TOP_WINDOW_S: u64 = 60;
/// Entries per top list.
pub const TOP_ENTRIES: usize = 10;

/// One value per second, `null` where there is none.
pub type Series = Vec<Option<f64>>;

/// The seconds a history covers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    /// Seconds between points (1).
    pub step_s: u64,
    /// Start of the first point's second, ms since the Unix epoch.
    pub start_ms: u64,
    /// Number of points ([`WINDOW_S`]).
    pub points: usize,
}

impl Window {
    /// The [`WINDOW_S`] seconds before the one `now_ms` falls in.
    fn ending_before(now_ms: u64) -> Self {
        let end = (now_ms / 1000).saturating_sub(1);
        Self {
            step_s: 1,
            start_ms: (end + 1).saturating_sub(WINDOW_S) * 1000,
            points: WINDOW_S as usize,
        }
    }

    fn start(&self) -> u64 {
        self.start_ms / 1000
    }

    /// The slot of `second`, if the window holds it.
    fn slot(&self, second: u64) -> Option<usize> {
        let i = second.checked_sub(self.start())? as usize;
        (i < self.points).then_some(i)
    }
}

/// The host's last 15 minutes.
#[derive(Debug, Serialize)]
pub struct HostHistory {
    /// The seconds covered.
    #[serde(flatten)]
    pub window: Window,
    /// The series.
    pub series: HostSeries,
}

/// The host's series.
#[derive(Debug, Serialize)]
pub struct HostSeries {
    /// Requests per second (every script).
    pub requests: Series,
    /// Failed requests per second by `x-berth-error` code: the codes seen
    /// in the window only.
    pub errors: BTreeMap<&'static str, Series>,
    /// Median time to the response head, ms.
    pub p50_ms: Series,
    /// 99th percentile time to the response head, ms.
    pub p99_ms: Series,
    /// CPU seconds guests used per second.
    pub cpu_s: Series,
    /// Bytes the host held for instances outside their linear memory.
    pub host_memory_bytes: Series,
    /// Component instances alive.
    pub instances: Series,
}

/// One script's last 15 minutes and its last errors.
#[derive(Debug, Serialize)]
pub struct ScriptHistory {
    /// The seconds covered.
    #[serde(flatten)]
    pub window: Window,
    /// `false` when the script is beyond `runtime.max_script_series`: its
    /// activity is counted in its namespace's `_other` and its own series
    /// stay empty.
    pub itemized: bool,
    /// The series.
    pub series: ScriptSeries,
    /// The newest failed requests first, at most 50.
    pub errors: Vec<RecentError>,
}

/// A script's series.
#[derive(Debug, Serialize)]
pub struct ScriptSeries {
    /// Requests per second by status class (`2xx` … `5xx`).
    pub requests: BTreeMap<&'static str, Series>,
    /// Limit hits per second by kind: the kinds hit in the window only.
    pub limit_hits: BTreeMap<&'static str, Series>,
    /// CPU seconds per second.
    pub cpu_s: Series,
    /// Fuel per second; `null` on hosts that do not meter fuel.
    pub fuel: Option<Series>,
    /// 99th percentile time to the response head, ms.
    pub p99_ms: Series,
}

/// The heaviest scripts of the last [`TOP_WINDOW_S`] seconds.
#[derive(Debug, Serialize)]
pub struct Top {
    /// Seconds covered.
    pub window_s: u64,
    /// CPU seconds used.
    pub by_cpu: Vec<TopEntry>,
    /// The most memory one invocation held (linear memory plus what the
    /// host held for it), bytes.
    pub by_memory: Vec<TopEntry>,
    /// Outbound requests made (any outcome).
    pub by_egress: Vec<TopEntry>,
    /// Invocations stopped by a limit (any kind).
    pub by_limit_hits: Vec<TopEntry>,
}

/// A script and its figure.
#[derive(Debug, Clone, Serialize)]
pub struct TopEntry {
    /// Namespace (`_other` beyond the series bound).
    pub namespace: String,
    /// Script (`_other`: every script of the namespace beyond the bound).
    pub script: String,
    /// The figure.
    pub value: f64,
    /// Set for `_other`: several scripts together.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aggregate: bool,
}

/// `v` rounded to four significant digits: enough for a chart, and short
/// JSON.
fn round(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A value per covered second, from `f`.
fn per_second(spans: &[Option<f64>], mut f: impl FnMut(usize, f64) -> Option<f64>) -> Series {
    spans
        .iter()
        .enumerate()
        .map(|(i, scale)| scale.and_then(|scale| f(i, scale)).map(round))
        .collect()
}

/// What turns a period's counts into per-second rates: 1 for a period of
/// about a second (the sampler's ticks jitter by milliseconds, and three
/// requests should read as 3/s, not 3.05/s); a period a late or extra tick
/// made much shorter or longer is scaled to one second.
fn rate_factor(span_ms: u32) -> f64 {
    if (900..=1100).contains(&span_ms) {
        1.0
    } else {
        1000.0 / f64::from(span_ms.max(1))
    }
}

fn finite(v: f32) -> Option<f64> {
    v.is_finite().then_some(f64::from(v))
}

impl History {
    /// The host's samples placed in `window`, and each covered second's
    /// factor from counts to per-second rates.
    fn host_slots(&self, window: &Window) -> (Vec<Option<HostSample>>, Vec<Option<f64>>) {
        let mut slots = vec![None; window.points];
        for sample in lock(&self.host_samples).iter() {
            if let Some(i) = window.slot(sample.second) {
                slots[i] = Some(*sample);
            }
        }
        let spans = slots
            .iter()
            .map(|s| s.map(|s| rate_factor(s.span_ms)))
            .collect();
        (slots, spans)
    }

    /// The host's last [`WINDOW_S`] seconds before `now_ms`.
    pub fn host_view(&self, now_ms: u64) -> HostHistory {
        let window = Window::ending_before(now_ms);
        let (slots, spans) = self.host_slots(&window);
        let at = |i: usize| slots[i].as_ref();
        let mut errors = BTreeMap::new();
        for (c, code) in CODES.iter().enumerate() {
            if slots.iter().flatten().any(|s| s.errors[c] > 0) {
                let series = per_second(&spans, |i, scale| {
                    at(i).map(|s| f64::from(s.errors[c]) * scale)
                });
                errors.insert(code.as_str(), series);
            }
        }
        HostHistory {
            window,
            series: HostSeries {
                requests: per_second(&spans, |i, scale| {
                    at(i).map(|s| f64::from(s.requests) * scale)
                }),
                errors,
                p50_ms: per_second(&spans, |i, _| at(i).and_then(|s| finite(s.p50_ms))),
                p99_ms: per_second(&spans, |i, _| at(i).and_then(|s| finite(s.p99_ms))),
                cpu_s: per_second(&spans, |i, scale| {
                    at(i).map(|s| s.cpu_us as f64 / 1e6 * scale)
                }),
                host_memory_bytes: per_second(&spans, |i, _| {
                    at(i).map(|s| s.host_memory_bytes as f64)
                }),
                instances: per_second(&spans, |i, _| at(i).map(|s| f64::from(s.instances))),
            },
        }
    }

    /// `script`'s last [`WINDOW_S`] seconds before `now_ms` and its last
    /// errors. `labels` are the ones `/metrics` gives it: its own, or its
    /// namespace's `_other` when it is beyond the series bound (then only
    /// its errors are its own). `fuel_metered`: whether this host meters
    /// fuel.
    pub fn script_view(
        &self,
        labels: &ScriptLabels,
        script: &str,
        fuel_metered: bool,
        now_ms: u64,
    ) -> ScriptHistory {
        let window = Window::ending_before(now_ms);
        let (_, spans) = self.host_slots(&window);
        let itemized = labels.script == script;
        let entry = self.existing(labels);
        let mut slots: Vec<Option<ScriptSample>> = vec![None; window.points];
        let mut errors = Vec::new();
        if let Some(entry) = &entry {
            if itemized {
                for sample in lock(&entry.samples).iter() {
                    if let Some(i) = window.slot(u64::from(sample.second)) {
                        slots[i] = Some(*sample);
                    }
                }
            }
            errors = lock(&entry.errors)
                .iter()
                .rev()
                .filter(|e| e.script == script)
                .cloned()
                .collect();
        }
        let at = |i: usize| slots[i].as_ref();
        let count = |i: usize, scale: f64, f: &dyn Fn(&ScriptSample) -> f64| {
            Some(at(i).map_or(0.0, f) * scale)
        };
        let requests = STATUS_CLASSES
            .iter()
            .enumerate()
            .map(|(c, class)| {
                let series = per_second(&spans, |i, scale| {
                    count(i, scale, &|s| f64::from(s.requests[c]))
                });
                (*class, series)
            })
            .collect();
        let limit_hits = LIMIT_KINDS
            .iter()
            .enumerate()
            .filter(|(k, _)| slots.iter().flatten().any(|s| s.limit_hits[*k] > 0))
            .map(|(k, kind)| {
                let series = per_second(&spans, |i, scale| {
                    count(i, scale, &|s| f64::from(s.limit_hits[k]))
                });
                (*kind, series)
            })
            .collect();
        ScriptHistory {
            window,
            itemized,
            series: ScriptSeries {
                requests,
                limit_hits,
                cpu_s: per_second(&spans, |i, scale| {
                    count(i, scale, &|s| f64::from(s.cpu_us) / 1e6)
                }),
                fuel: fuel_metered
                    .then(|| per_second(&spans, |i, scale| count(i, scale, &|s| s.fuel as f64))),
                p99_ms: per_second(&spans, |i, _| at(i).and_then(|s| finite(s.p99_ms))),
            },
            errors,
        }
    }

    /// The [`TOP_ENTRIES`] heaviest scripts of the last [`TOP_WINDOW_S`]
    /// seconds before `now_ms`, by CPU, memory, egress and limit hits.
    pub fn top(&self, now_ms: u64) -> Top {
        let end = (now_ms / 1000).saturating_sub(1);
        let first = (end + 1).saturating_sub(TOP_WINDOW_S);
        let (mut cpu, mut memory, mut egress, mut limits) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (labels, entry) in self.entries() {
            let (mut cpu_us, mut peak_kib, mut subrequests, mut hits) = (0u64, 0u64, 0u64, 0u64);
            for s in lock(&entry.samples)
                .iter()
                .rev()
                .take_while(|s| u64::from(s.second) >= first)
            {
                cpu_us += u64::from(s.cpu_us);
                peak_kib = peak_kib.max(u64::from(s.memory_peak_kib));
                subrequests += u64::from(s.subrequests);
                hits += s.limit_hits.iter().map(|&n| u64::from(n)).sum::<u64>();
            }
            let row = |value: f64| TopEntry {
                namespace: labels.namespace.clone(),
                script: labels.script.clone(),
                value,
                aggregate: labels.script == "_other",
            };
            for (list, value) in [
                (&mut cpu, round(cpu_us as f64 / 1e6)),
                (&mut memory, (peak_kib * 1024) as f64),
                (&mut egress, subrequests as f64),
                (&mut limits, hits as f64),
            ] {
                if value > 0.0 {
                    list.push(row(value));
                }
            }
        }
        let heaviest = |mut list: Vec<TopEntry>| {
            list.sort_by(|a, b| {
                b.value
                    .total_cmp(&a.value)
                    .then_with(|| (&a.namespace, &a.script).cmp(&(&b.namespace, &b.script)))
            });
            list.truncate(TOP_ENTRIES);
            list
        };
        Top {
            window_s: TOP_WINDOW_S,
            by_cpu: heaviest(cpu),
            by_memory: heaviest(memory),
            by_egress: heaviest(egress),
            by_limit_hits: heaviest(limits),
        }
    }
}
