//! Fuel, the deterministic meter beside CPU time: a per-request budget
//! (`[limits] fuel`, lowered by a script's own), `fuel-limit` when it runs
//! out, and the fuel each request consumed in its tail event and
//! `/metrics` — the same figure for the same work, whatever the machine or
//! its load. Dispatch workers built against `berth:platform@0.1.0` keep
//! working on a host that meters fuel and see running out of fuel as
//! `cpu-limit-exceeded`, the closest 0.1.0 variant; those built against
//! 0.2.0 or 0.3.0 see `fuel-limit-exceeded`.

use serde_json::json;

use crate::harness::{Berth, start_with_config, wasm, wasm_path};
use crate::observe::{next_event, open_tail};

/// A host metering fuel, with CPU and wall budgets far above what the fuel
/// budgets below allow, so fuel is what stops a spinning guest.
fn start() -> Berth {
    start_with_config(&format!(
        "[limits]\ncpu_ms = 30000\nwall_ms = 60000\nfuel = 2_000_000_000\n\n\
         [[dispatch]]\nhostnames = [\"probe.test\"]\nworker = \"{}\"\nnamespace = \"probing\"\n",
        wasm_path("probe").display()
    ))
}

const SCRIPT_FUEL: u64 = 20_000_000;

async fn deploy_fueled(berth: &Berth, ns: &str, name: &str) {
    let reply = berth
        .upload_with_metadata(
            ns,
            name,
            wasm("tenant"),
            json!({ "limits": { "fuel": SCRIPT_FUEL } }),
        )
        .await;
    assert_eq!(reply.status, 200, "deploy {ns}/{name}: {}", reply.text());
}

#[tokio::test]
async fn a_spinning_guest_runs_out_of_fuel_and_fuel_is_reported() {
    let berth = start();
    deploy_fueled(&berth, "default", "spinner").await;
    let mut tail = open_tail(&berth, "default", "spinner").await;
    let mut buf = Vec::new();

    let spin = berth.get("spinner.localhost", "/spin").await;
    assert_eq!(spin.status, 503, "{}", spin.text());
    assert_eq!(spin.error_code().as_deref(), Some("fuel-limit"));
    assert!(
        spin.text().starts_with("Worker exceeded fuel limit"),
        "{}",
        spin.text()
    );
    let event = next_event(&mut tail, &mut buf).await;
    assert_eq!(event["outcome"], "fuel-limit", "{event}");
    assert_eq!(event["status"], 503, "{event}");
    assert_eq!(event["fuel"], SCRIPT_FUEL, "all of it: {event}");

    // The same work costs the same fuel, every time.
    let mut used = Vec::new();
    for _ in 0..2 {
        let reply = berth.get("spinner.localhost", "/alloc?mb=2").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let event = next_event(&mut tail, &mut buf).await;
        assert_eq!(event["outcome"], "ok", "{event}");
        used.push(event["fuel"].as_u64().expect("fuel in the tail event"));
    }
    assert!(used[0] > 0 && used[0] < SCRIPT_FUEL, "{used:?}");
    assert_eq!(used[0], used[1], "fuel is deterministic");

    let stats = berth.runtime_stats().await;
    assert_eq!(stats["fuel_limit_hits"], 1, "{stats}");
    assert_eq!(stats["cpu_limit_hits"], 0, "{stats}");

    let metrics = berth.admin_get("/metrics").await.text();
    let total = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"berth_fuel_total{namespace="default",script="spinner"} "#))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no fuel series in {metrics}"));
    assert_eq!(total, SCRIPT_FUEL + used[0] + used[1], "{metrics}");
    assert!(
        metrics.contains(
            r#"berth_limit_hits_total{namespace="default",script="spinner",kind="fuel"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_0_1_dispatch_worker_works_on_a_fuel_metered_host() {
    let berth = start();
    deploy_fueled(&berth, "probing", "t").await;
    // The probe is built against berth:platform@0.1.0.
    let ok = berth.get("probe.test", "/call/t/echo").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().starts_with("ok 200\n"), "{}", ok.text());
    // Running out of fuel reaches it as its closest variant.
    let spin = berth.get("probe.test", "/call/t/spin").await;
    assert_eq!(spin.status, 200, "{}", spin.text());
    assert!(
        spin.text().starts_with("err cpu-limit-exceeded"),
        "{}",
        spin.text()
    );
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["fuel_limit_hits"], 1, "it was fuel: {stats}");
}

/// The example dispatcher is built against `berth:platform@0.3.0` (the
/// SDK's `platform-0-3` feature): it tells running out of fuel apart from
/// running out of CPU time, and answers it as the limit it is (429 with
/// its JSON error naming it).
#[tokio::test]
async fn a_0_3_dispatch_worker_sees_fuel_as_itself() {
    let berth = start_with_config(&format!(
        "[limits]\ncpu_ms = 30000\nwall_ms = 60000\nfuel = 2_000_000_000\n\n\
         [[dispatch]]\nhostnames = [\"*.platform.test\"]\nworker = \"{}\"\nnamespace = \"customers\"\n\
         vars = {{ PLATFORM_DOMAIN = \"platform.test\" }}\n",
        wasm_path("dispatcher").display()
    ));
    deploy_fueled(&berth, "customers", "t").await;
    let spin = berth.get("t.platform.test", "/spin").await;
    assert_eq!(spin.status, 429, "{}", spin.text());
    assert_eq!(
        spin.json()["error"],
        "fuel-limit-exceeded",
        "{}",
        spin.text()
    );
    let stats = berth.runtime_stats().await;
    assert_eq!(stats["fuel_limit_hits"], 1, "it was fuel: {stats}");
}

/// `berth:platform@0.2.0` is linked beside 0.1.0: a component importing it
/// (wasm-tools' dummy of the `dispatch-worker` world) is accepted as a
/// dispatch worker — a host lacking it refuses to start with "cannot be
/// linked" — and runs (the dummy's handler traps, so the answer is the
/// guest's `exception`).
#[tokio::test]
async fn a_0_2_dispatch_worker_links_beside_0_1() {
    let tool = std::env::var("BERTH_WASM_TOOLS")
        .expect("BERTH_WASM_TOOLS must point at wasm-tools; run the tests with `make test`");
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/v0.2");
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    let component = dir.path().join("dispatch-0.2.wasm");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(&tool)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "component".as_ref(),
        "embed".as_ref(),
        "--dummy".as_ref(),
        wit.as_os_str(),
        "--world".as_ref(),
        "dispatch-worker".as_ref(),
        "-o".as_ref(),
        core.as_os_str(),
    ]);
    run(&[
        "component".as_ref(),
        "new".as_ref(),
        core.as_os_str(),
        "-o".as_ref(),
        component.as_os_str(),
    ]);
    let berth = start_with_config(&format!(
        "[[dispatch]]\nhostnames = [\"v2.test\"]\nworker = \"{}\"\nnamespace = \"v2\"\n",
        component.display()
    ));
    assert!(
        berth.log().contains("dispatch entry ready"),
        "{}",
        berth.log()
    );
    let reply = berth.get("v2.test", "/").await;
    assert_eq!(
        reply.error_code().as_deref(),
        Some("exception"),
        "{}",
        reply.text()
    );
}
