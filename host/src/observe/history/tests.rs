//! The history's unit tests: counting, sampling, the views and their
//! bounds, on a clock the tests choose.

use super::view::TOP_WINDOW_S;
use super::*;

fn labels(ns: &str, script: &str) -> ScriptLabels {
    ScriptLabels {
        namespace: ns.into(),
        script: script.into(),
    }
}

/// Milliseconds at the start of second `s` (plus a little, as the
/// sampler's ticks land just after a second boundary).
fn at(s: u64) -> u64 {
    s * 1000 + 10
}

const T0: u64 = 1_700_000_000;

#[test]
fn samples_stay_as_small_as_the_documented_bounds() {
    // docs/dashboard.md: 64 bytes a script-second, about 100 a host-second.
    assert!(std::mem::size_of::<ScriptSample>() <= 64);
    assert!(std::mem::size_of::<HostSample>() <= 112);
}

#[test]
fn a_second_of_requests_reads_as_rates_and_uncovered_seconds_are_null() {
    let h = History::default();
    let app = labels("ns", "app");
    h.sample(at(T0), Gauges::default());
    for _ in 0..3 {
        h.request(&app, 200, "", 0.002);
    }
    h.request(&app, 503, "cpu-limit", 0.050);
    h.limit_hit(&app, "cpu");
    h.cpu(&app, 0.25);
    h.sample(
        at(T0 + 1),
        Gauges {
            host_memory_bytes: 4096,
            instances: 2,
        },
    );

    // Asked during the next second, before its sample.
    let now = at(T0 + 1) + 400;
    let view = h.host_view(now);
    assert_eq!(view.window.points, 900);
    assert_eq!(view.window.start_ms, (T0 + 1 - 900) * 1000);
    let last = 899;
    let s = &view.series;
    assert_eq!(s.requests[last], Some(4.0));
    assert_eq!(s.requests[last - 1], Some(0.0), "covered but idle");
    assert_eq!(s.requests[last - 2], None, "before the sampler ran");
    assert_eq!(s.errors.keys().copied().collect::<Vec<_>>(), ["cpu-limit"]);
    assert_eq!(s.errors["cpu-limit"][last], Some(1.0));
    assert_eq!(s.cpu_s[last], Some(0.25));
    assert_eq!(s.host_memory_bytes[last], Some(4096.0));
    assert_eq!(s.instances[last], Some(2.0));
    let p99 = s.p99_ms[last].unwrap();
    assert!((40.0..=60.0).contains(&p99), "p99 {p99}");
    assert_eq!(s.p50_ms[last - 1], None, "no latency in an idle second");

    let script = h.script_view(&app, "app", false, now);
    assert!(script.itemized);
    assert_eq!(script.series.requests["2xx"][last], Some(3.0));
    assert_eq!(script.series.requests["5xx"][last], Some(1.0));
    assert_eq!(script.series.requests["4xx"][last - 1], Some(0.0));
    assert_eq!(script.series.requests["4xx"][last - 2], None);
    assert_eq!(
        script.series.limit_hits.keys().copied().collect::<Vec<_>>(),
        ["cpu"]
    );
    assert!(script.series.fuel.is_none(), "fuel is not metered here");
    let json = serde_json::to_value(&script).unwrap();
    assert_eq!(json["step_s"], 1);
    assert!(json["series"]["fuel"].is_null());
}

#[test]
fn idle_scripts_keep_no_samples_and_old_samples_expire() {
    let h = History::default();
    let busy = labels("ns", "busy");
    let idle = labels("ns", "idle");
    h.request(&idle, 200, "", 0.001);
    h.sample(at(T0), Gauges::default());
    for s in 1..=WINDOW_S + 5 {
        h.request(&busy, 200, "", 0.001);
        h.sample(at(T0 + s), Gauges::default());
    }
    let entries = h.entries();
    let count = |l: &ScriptLabels| {
        let entry = entries.iter().find(|(k, _)| k == l).unwrap();
        lock(&entry.1.samples).len()
    };
    assert_eq!(count(&idle), 0, "its one second is older than the window");
    assert_eq!(count(&busy) as u64, WINDOW_S);
    assert_eq!(lock(&h.host_samples).len() as u64, WINDOW_S);
}

#[test]
fn two_ticks_in_one_second_make_one_sample() {
    let h = History::default();
    let app = labels("ns", "app");
    h.sample(at(T0), Gauges::default());
    h.request(&app, 200, "", 0.001);
    h.sample(at(T0 + 1), Gauges::default());
    h.request(&app, 200, "", 0.001);
    h.sample(at(T0 + 1) + 500, Gauges::default());
    assert_eq!(lock(&h.host_samples).len(), 2);
    let view = h.host_view(at(T0 + 1) + 600);
    // Two requests over 1.5 s.
    let rate = view.series.requests[899].unwrap();
    assert!((rate - 2.0 / 1.5).abs() < 0.01, "{rate}");
}

#[test]
fn the_last_errors_are_bounded_newest_first_and_their_own() {
    let h = History::default();
    let other = labels("ns", "_other");
    for i in 0..(MAX_ERRORS + 10) {
        let script = if i % 2 == 0 { "far-a" } else { "far-b" };
        let path = format!("/{i}{}", "é".repeat(MAX_ERROR_PATH));
        h.error(
            &other,
            RecentError::new(
                script,
                Some(format!("id-{i}")),
                500,
                "exception",
                &path,
                i as u64,
            ),
        );
    }
    let view = h.script_view(&other, "far-a", false, at(T0));
    assert!(!view.itemized, "a folded script's series are not its own");
    assert_eq!(view.errors.len(), MAX_ERRORS / 2);
    assert_eq!(view.errors[0].request_id.as_deref(), Some("id-58"));
    assert!(
        view.errors
            .windows(2)
            .all(|w| w[0].timestamp_ms > w[1].timestamp_ms)
    );
    assert!(view.errors.iter().all(|e| e.path.len() <= MAX_ERROR_PATH));
    let json = serde_json::to_value(&view.errors[0]).unwrap();
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["outcome", "path", "request_id", "status", "timestamp_ms"]
    );
}

#[test]
fn top_lists_rank_the_last_minute_only() {
    let h = History::default();
    let (a, b, c) = (labels("ns", "a"), labels("ns", "b"), labels("ns", "_other"));
    h.sample(at(T0), Gauges::default());
    // Long ago: `a` burnt a lot.
    h.cpu(&a, 100.0);
    h.sample(at(T0 + 1), Gauges::default());
    for s in 2..(2 + TOP_WINDOW_S + 5) {
        h.sample(at(T0 + s), Gauges::default());
    }
    let now = T0 + 2 + TOP_WINDOW_S + 5;
    h.cpu(&a, 0.5);
    h.cpu(&b, 2.0);
    h.memory(&b, 3 << 20);
    h.memory(&a, 5 << 20);
    h.subrequest(&c);
    h.limit_hit(&b, "memory");
    h.sample(at(now), Gauges::default());
    let top = h.top(at(now) + 100);
    let names = |l: &[view::TopEntry]| l.iter().map(|e| e.script.clone()).collect::<Vec<_>>();
    assert_eq!(names(&top.by_cpu), ["b", "a"]);
    assert_eq!(
        top.by_cpu[1].value, 0.5,
        "the old burst is outside the window"
    );
    assert_eq!(names(&top.by_memory), ["a", "b"]);
    assert_eq!(top.by_memory[0].value, (5 << 20) as f64);
    assert_eq!(names(&top.by_egress), ["_other"]);
    assert!(top.by_egress[0].aggregate);
    assert_eq!(names(&top.by_limit_hits), ["b"]);
    let json = serde_json::to_value(&top).unwrap();
    assert_eq!(json["window_s"], 60);
    assert!(json["by_cpu"][0].get("aggregate").is_none());
}
