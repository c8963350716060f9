//! Prometheus metrics (`GET /metrics` on the admin listener).
//!
//! Per namespace/script: requests by status and `x-berth-error` code,
//! time to the response head, CPU time, limit hits by kind, subrequests
//! by outcome. Host-wide: instantiation and compile time, worker cache
//! hits/misses, pooling-allocator slots in use, admission queue depth.
//!
//! **Cardinality is bounded**, whatever guests do. Label values come from
//! fixed sets — status *class* (`1xx`…`5xx`, `other`; never the status a
//! guest chose), `x-berth-error` code (the SDK's table, or empty), limit
//! kind, subrequest outcome — except namespace and script: the first
//! `max_script_series` distinct
//! namespace/script pairs get their own label values; every later script
//! is reported as `script="_other"` in its namespace (and a namespace
//! beyond the bound as `namespace="_other"`). With 10,000 scripts and the
//! default bound of 1,000, the 1,000 first-seen scripts are itemised and
//! the rest aggregated, so a scrape stays a few hundred kilobytes. Raise
//! the bound if your Prometheus can take it.
//!
//! Every recording also feeds the dashboard's [`History`] under the same
//! labels, so the same bound holds there.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::history::{History, ScriptHandle};

pub use super::labels::ScriptLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    script: String,
    /// The status class (`2xx`…`5xx`, `other`): a guest picks any status,
    /// and 900 possible values per script would let one tenant multiply
    /// the series of every scrape.
    status: &'static str,
    /// The `x-berth-error` code (a fixed table) or empty.
    code: &'static str,
}

/// The class of an HTTP status: the label value of `status`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn request_labels(labels: &ScriptLabels, status: u16, code: &'static str) -> RequestLabels {
    RequestLabels {
        namespace: labels.namespace.clone(),
        script: labels.script.clone(),
        status: status_class(status),
        code,
    }
}

/// One script's series and history entry, looked up once
/// ([`Metrics::series`]); each metric's handle is taken on first use, so a
/// script shows no series it never recorded.
pub struct ScriptSeries {
    labels: ScriptLabels,
    history: ScriptHandle,
    /// `requests{status="2xx", code=""}`: the one outcome of most requests.
    answered: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
    cpu: OnceLock<Counter<f64, AtomicU64>>,
    memory: OnceLock<Histogram>,
}

impl ScriptSeries {
    /// The labels the script's series carry (its own, or `_other`).
    pub fn labels(&self) -> &ScriptLabels {
        &self.labels
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    namespace: String,
    script: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    namespace: String,
    script: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    kind: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// 1 MiB to 1 GiB, ×4: few buckets, as every script gets them.
fn memory_histogram() -> Histogram {
    Histogram::new(exponential_buckets(f64::from(1 << 20), 4.0, 6))
}

/// All metrics of one host.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<ScriptLabels, Histogram, fn() -> Histogram>,
    cpu: Family<ScriptLabels, Counter<f64, AtomicU64>>,
    fuel: Family<ScriptLabels, Counter>,
    memory: Family<ScriptLabels, Histogram, fn() -> Histogram>,
    limit_hits: Family<KindLabels, Counter>,
    subrequests: Family<OutcomeLabels, Counter>,
    instantiation: Histogram,
    compile: Histogram,
    cache: Family<ResultLabels, Counter>,
    /// `cache{result="hit"}` and `{result="miss"}`, looked up once: every
    /// request counts one of them.
    cache_hit: Counter,
    cache_miss: Counter,
    pool: Family<SlotLabels, Gauge>,
    queue_depth: Gauge,
    series: Mutex<HashSet<(String, String)>>,
    max_series: usize,
    history: History,
}

impl Metrics {
    /// A registry with every metric, itemising at most `max_series`
    /// namespace/script pairs.
    pub fn new(max_series: usize) -> Self {
        let cache = Family::<ResultLabels, Counter>::default();
        let result = |result: &str| {
            cache
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .clone()
        };
        let (cache_hit, cache_miss) = (result("hit"), result("miss"));
        let mut metrics = Self {
            registry: Registry::with_prefix("berth"),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            cpu: Family::default(),
            fuel: Family::default(),
            memory: Family::new_with_constructor(memory_histogram),
            limit_hits: Family::default(),
            subrequests: Family::default(),
            instantiation: latency_histogram(),
            compile: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            cache,
            cache_hit,
            cache_miss,
            pool: Family::default(),
            queue_depth: Gauge::default(),
            series: Mutex::new(HashSet::new()),
            max_series,
            history: History::default(),
        };
        metrics.register();
        metrics
    }

    /// Registers every metric (a clone shares its values) for the
    /// exposition.
    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register("requests", "Requests by script, HTTP status and x-berth-error code (empty when the guest answered)", self.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from admission to the response head",
            self.duration.clone(),
        );
        registry.register(
            "cpu_seconds",
            "CPU time guests spent executing",
            self.cpu.clone(),
        );
        registry.register(
            "fuel",
            "Fuel guests consumed (instructions, as Wasmtime meters them; only on hosts with [limits] fuel)",
            self.fuel.clone(),
        );
        registry.register(
            "memory_peak_bytes",
            "The most memory an invocation held: its linear memory plus what the host held for it",
            self.memory.clone(),
        );
        registry.register(
            "limit_hits",
            "Invocations stopped by a limit, by kind",
            self.limit_hits.clone(),
        );
        registry.register(
            "subrequests",
            "Outbound requests by outcome (ok, error, denied)",
            self.subrequests.clone(),
        );
        registry.register(
            "instantiation_seconds",
            "Time to instantiate a worker",
            self.instantiation.clone(),
        );
        registry.register(
            "compile_seconds",
            "Time to compile a component",
            self.compile.clone(),
        );
        registry.register(
            "worker_cache",
            "Worker cache lookups by result (hit, miss)",
            self.cache.clone(),
        );
        registry.register(
            "pool_slots_in_use",
            "Pooling allocator slots in use, by kind",
            self.pool.clone(),
        );
        registry.register(
            "admission_queue_depth",
            "Requests waiting for a concurrency slot",
            self.queue_depth.clone(),
        );
    }

    /// The dashboard's history, fed by every recording here.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The labels to use for a script, folding scripts beyond the bound
    /// into `_other`.
    pub fn labels(&self, namespace: &str, script: &str) -> ScriptLabels {
        self.fold(namespace, script, true)
    }

    /// The labels a script has or would get, without claiming a series
    /// for it (for readers such as the dashboard).
    pub fn labels_of(&self, namespace: &str, script: &str) -> ScriptLabels {
        self.fold(namespace, script, false)
    }

    /// The one folding rule: a known pair, or a new one while there is
    /// room (claimed if `claim`), keeps its labels; any other is `_other`
    /// in its namespace, or in `_other` if the namespace is unknown too.
    fn fold(&self, namespace: &str, script: &str, claim: bool) -> ScriptLabels {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), script.to_owned());
        let known = series.contains(&key);
        if known || series.len() < self.max_series {
            if claim && !known {
                series.insert(key.clone());
            }
            return ScriptLabels {
                namespace: key.0,
                script: key.1,
            };
        }
        let namespace_known = series.iter().any(|(ns, _)| ns == namespace);
        ScriptLabels {
            namespace: if namespace_known {
                key.0
            } else {
                "_other".into()
            },
            script: "_other".into(),
        }
    }

    /// A script's series, looked up once (claiming its itemised series
    /// as [`Metrics::labels`] does) for a loaded worker to keep: recording
    /// through it takes no lock and neither hashes nor copies a label.
    /// The labels it holds stay right for the host's lifetime, because an
    /// itemised series is never dropped (so a pair folded into `_other`
    /// stays folded, and a known pair stays known).
    pub fn series(&self, namespace: &str, script: &str) -> ScriptSeries {
        self.series_of(self.labels(namespace, script))
    }

    /// The series of labels already folded.
    fn series_of(&self, labels: ScriptLabels) -> ScriptSeries {
        ScriptSeries {
            history: self.history.script(&labels),
            labels,
            answered: OnceLock::new(),
            duration: OnceLock::new(),
            cpu: OnceLock::new(),
            memory: OnceLock::new(),
        }
    }

    /// [`Metrics::request`] through a script's looked-up series.
    pub fn request_of(&self, series: &ScriptSeries, status: u16, code: &'static str, seconds: f64) {
        let labels = &series.labels;
        if code.is_empty() && (200..300).contains(&status) {
            series
                .answered
                .get_or_init(|| {
                    self.requests
                        .get_or_create(&request_labels(labels, status, code))
                        .clone()
                })
                .inc();
        } else {
            self.requests
                .get_or_create(&request_labels(labels, status, code))
                .inc();
        }
        series
            .duration
            .get_or_init(|| self.duration.get_or_create(labels).clone())
            .observe(seconds);
        self.history
            .request_of(&series.history, status, code, seconds);
    }

    /// [`Metrics::cpu`] through a script's looked-up series.
    pub fn cpu_of(&self, series: &ScriptSeries, seconds: f64) {
        series
            .cpu
            .get_or_init(|| self.cpu.get_or_create(&series.labels).clone())
            .inc_by(seconds);
        self.history.cpu_of(&series.history, seconds);
    }

    /// [`Metrics::memory`] through a script's looked-up series.
    pub fn memory_of(&self, series: &ScriptSeries, bytes: u64) {
        series
            .memory
            .get_or_init(|| self.memory.get_or_create(&series.labels).clone())
            .observe(bytes as f64);
        self.history.memory_of(&series.history, bytes);
    }

    /// [`Metrics::fuel`] through a script's looked-up series.
    pub fn fuel_of(&self, series: &ScriptSeries, fuel: u64) {
        self.fuel.get_or_create(&series.labels).inc_by(fuel);
        self.history.fuel_of(&series.history, fuel);
    }

    /// Records one request's outcome: its status (by class) and its
    /// `x-berth-error` code (empty when the guest answered).
    pub fn request(&self, labels: &ScriptLabels, status: u16, code: &'static str, seconds: f64) {
        self.request_of(&self.series_of(labels.clone()), status, code, seconds);
    }

    /// Records CPU time a guest used.
    pub fn cpu(&self, labels: &ScriptLabels, seconds: f64) {
        self.cpu_of(&self.series_of(labels.clone()), seconds);
    }

    /// Records fuel a guest consumed.
    pub fn fuel(&self, labels: &ScriptLabels, fuel: u64) {
        self.fuel_of(&self.series_of(labels.clone()), fuel);
    }

    /// Records the most memory an invocation held (linear memory plus
    /// what the host held for it).
    pub fn memory(&self, labels: &ScriptLabels, bytes: u64) {
        self.memory_of(&self.series_of(labels.clone()), bytes);
    }

    /// Records a limit hit (`cpu`, `fuel`, `wall`, `memory`, `subrequests`,
    /// `request_body`, `response_body`, `concurrency`).
    pub fn limit_hit(&self, labels: &ScriptLabels, kind: &str) {
        self.limit_hits
            .get_or_create(&KindLabels {
                namespace: labels.namespace.clone(),
                script: labels.script.clone(),
                kind: kind.into(),
            })
            .inc();
        self.history.limit_hit(labels, kind);
    }

    /// Records a subrequest outcome (`ok`, `error`, `denied`).
    pub fn subrequest(&self, namespace: &str, script: &str, outcome: &str) {
        let labels = self.labels(namespace, script);
        self.history.subrequest(&labels);
        self.subrequests
            .get_or_create(&OutcomeLabels {
                namespace: labels.namespace,
                script: labels.script,
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records an instantiation.
    pub fn instantiated(&self, seconds: f64) {
        self.instantiation.observe(seconds);
    }

    /// Records a compile.
    pub fn compiled(&self, seconds: f64) {
        self.compile.observe(seconds);
    }

    /// Records a worker cache lookup.
    pub fn cache_lookup(&self, hit: bool) {
        match hit {
            true => self.cache_hit.inc(),
            false => self.cache_miss.inc(),
        };
    }

    /// Updates the pool and queue gauges (at scrape time).
    pub fn set_gauges(&self, slots: &[(&str, i64)], queued: i64) {
        for (kind, value) in slots {
            self.pool
                .get_or_create(&SlotLabels {
                    kind: (*kind).into(),
                })
                .set(*value);
        }
        self.queue_depth.set(queued);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_beyond_the_bound_fold_into_other() {
        let m = Metrics::new(2);
        assert_eq!(m.labels("a", "x").script, "x");
        assert_eq!(m.labels("a", "y").script, "y");
        let folded = m.labels("a", "z");
        assert_eq!(
            (folded.namespace.as_str(), folded.script.as_str()),
            ("a", "_other")
        );
        let unknown_ns = m.labels("b", "z");
        assert_eq!(
            (unknown_ns.namespace.as_str(), unknown_ns.script.as_str()),
            ("_other", "_other")
        );
        assert_eq!(
            m.labels("a", "x").script,
            "x",
            "known series keep their labels"
        );
    }

    #[test]
    fn reading_labels_claims_no_series() {
        let m = Metrics::new(1);
        assert_eq!(m.labels_of("a", "x").script, "x");
        assert_eq!(m.labels_of("a", "y").script, "y", "nothing claimed yet");
        assert_eq!(m.labels("a", "x").script, "x");
        let folded = m.labels_of("a", "y");
        assert_eq!(
            (folded.namespace.as_str(), folded.script.as_str()),
            ("a", "_other")
        );
        assert_eq!(m.labels_of("b", "y").namespace, "_other");
    }

    /// The issue-25 measurement, as a bound: 900 distinct statuses from
    /// one script make at most one series per class.
    #[test]
    fn guest_chosen_statuses_cannot_multiply_series() {
        let m = Metrics::new(10);
        let l = m.labels("ns", "app");
        for status in 100..1000 {
            m.request(&l, status, "", 0.001);
        }
        let series = m
            .encode()
            .lines()
            .filter(|line| line.starts_with("berth_requests_total{"))
            .count();
        assert_eq!(series, 6, "1xx-5xx and other");
    }

    #[test]
    fn exposition_has_the_recorded_series() {
        let m = Metrics::new(10);
        let l = m.labels("ns", "app");
        m.request(&l, 503, "cpu-limit", 0.01);
        m.limit_hit(&l, "cpu");
        m.subrequest("ns", "app", "denied");
        m.fuel(&l, 1234);
        let text = m.encode();
        assert!(
            text.contains(r#"berth_fuel_total{namespace="ns",script="app"} 1234"#),
            "{text}"
        );
        assert!(text.contains(r#"berth_requests_total{namespace="ns",script="app",status="5xx",code="cpu-limit"} 1"#), "{text}");
        assert!(
            text.contains(r#"berth_limit_hits_total{namespace="ns",script="app",kind="cpu"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"berth_subrequests_total{namespace="ns",script="app",outcome="denied"} 1"#
            ),
            "{text}"
        );
    }

    /// A worker's looked-up series record into the same series (and the
    /// same history) as a lookup per request would, show nothing they never
    /// recorded, and fold like any other labels.
    #[test]
    fn looked_up_series_record_what_per_request_lookups_would() {
        let by_series = Metrics::new(1);
        let by_labels = Metrics::new(1);
        let series = by_series.series("ns", "app");
        let labels = by_labels.labels("ns", "app");
        assert!(
            !by_series.encode().contains(r#"script="app""#),
            "nothing recorded, no series"
        );
        for (status, code) in [(200, ""), (204, ""), (503, "cpu-limit"), (404, "")] {
            by_series.request_of(&series, status, code, 0.002);
            by_labels.request(&labels, status, code, 0.002);
        }
        by_series.cpu_of(&series, 0.5);
        by_labels.cpu(&labels, 0.5);
        by_series.memory_of(&series, 4096);
        by_labels.memory(&labels, 4096);
        by_series.fuel_of(&series, 77);
        by_labels.fuel(&labels, 77);
        // Series come out in a family's hash order: compare them as sets.
        let sorted = |m: &Metrics| {
            let mut lines: Vec<String> = m.encode().lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&by_series), sorted(&by_labels));
        assert!(
            by_series.encode().contains(
                r#"berth_requests_total{namespace="ns",script="app",status="2xx",code=""} 2"#
            ),
            "{}",
            by_series.encode()
        );
        let second = 1_700_000_000_000;
        for m in [&by_series, &by_labels] {
            m.history().sample(second + 10, Default::default());
        }
        let view = |m: &Metrics| {
            serde_json::to_value(m.history().script_view(&labels, "app", true, second + 1010))
                .unwrap()
        };
        assert_eq!(view(&by_series), view(&by_labels));
        let twos = view(&by_series)["series"]["requests"]["2xx"].clone();
        assert!(
            twos.as_array()
                .is_some_and(|points| points.contains(&2.0.into())),
            "the second's two 2xx: {twos}"
        );
        let folded = by_series.series("ns", "other-app");
        assert_eq!(folded.labels().script, "_other", "the bound holds");
    }
}
