//! The embedding API, in process: routers driven with `oneshot`, deploys
//! without HTTP, a warm-reuse dispatch worker, and a shutdown that leaves no
//! epoch thread behind. Plus the `embed` example, run as its own process.

use std::process::Command;

use axum::body::Body;
use berth_host::{Berth, Config, IsolationConfig, IsolationMode, Name};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::harness::{wasm, wasm_path};

/// Threads of this process named `berth-epoch` (Linux: /proc).
fn epoch_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|name| name.trim() == "berth-epoch")
                })
                .count()
        })
        .unwrap_or(0)
}

async fn get(router: &axum::Router, host: &str, path: &str) -> (u16, String, Option<String>) {
    let request = http::Request::builder()
        .uri(path)
        .header(http::header::HOST, host)
        .body(Body::empty())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-berth-error")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), code)
}

/// A GET through the in-process admin router with the token, as JSON.
async fn admin_get(admin: &axum::Router, path: &str) -> serde_json::Value {
    let request = http::Request::builder()
        .uri(path)
        .header("authorization", "Bearer in-process")
        .body(Body::empty())
        .expect("request");
    let response = admin.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200, "{path}");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&body).expect("JSON")
}

/// `berth_instantiation_seconds_count` of the in-process host.
async fn instantiations(admin: &axum::Router) -> u64 {
    let request = http::Request::builder()
        .uri("/metrics")
        .header("authorization", "Bearer in-process")
        .body(Body::empty())
        .expect("request");
    let response = admin.clone().oneshot(request).await.expect("infallible");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("berth_instantiation_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instantiation count in {text}"))
}

/// Waits until `warm_idle_instances` reaches `want` (the harness's
/// deadline, then fails naming what it saw): a warm instance goes back to
/// its pool after the guest's call returns, which may be just after the
/// client has the response.
async fn wait_for_idle(admin: &axum::Router, want: u64) {
    crate::harness::eventually_showing(
        "the dispatch worker's instance back in its pool",
        std::time::Duration::from_secs(30),
        || async {
            let runtime = admin_get(admin, "/v1/runtime").await;
            let idle = runtime["result"]["warm_idle_instances"].as_u64();
            (idle == Some(want))
                .then_some(())
                .ok_or_else(|| runtime.to_string())
        },
    )
    .await
}

/// One test on purpose: it counts this process's epoch threads, so no other
/// in-process host may start or stop while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_host_serves_in_process_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    config.runtime.instances = 20;
    config.limits.cpu_ms = 5_000;
    // A dispatch worker with warm reuse: its cached instances hold a
    // dispatch binding, which must not keep the runtime alive.
    let mut entry = berth_host::DispatchConfig::new(
        vec!["*.platform.localhost".into()],
        wasm_path("dispatcher").display().to_string(),
        Name::new("customers").unwrap(),
    );
    entry.vars = [(
        "PLATFORM_DOMAIN".to_owned(),
        "platform.localhost".to_owned(),
    )]
    .into();
    entry.isolation = Some(IsolationConfig::Mode(IsolationMode::Reuse));
    config.dispatch.push(entry);
    let before = epoch_threads();
    let berth = Berth::builder(config)
        .admin_token("in-process")
        .build()
        .await
        .expect("build");
    assert_eq!(epoch_threads(), before + 1, "one epoch thread per host");

    // Deploy from Rust, serve through the data router without a listener.
    let default = Name::new("default").unwrap();
    let customers = Name::new("customers").unwrap();
    let record = berth
        .deploy(
            &default,
            &Name::new("hello").unwrap(),
            wasm("hello"),
            Default::default(),
        )
        .await
        .expect("deploy");
    assert_eq!(record.version, 1);
    let data = berth.data_router();
    let (status, body, _) = get(&data, "hello.localhost", "/in-process?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "Hello from Berth! You requested /in-process?x=1\n");
    let (status, _, code) = get(&data, "nobody.localhost", "/").await;
    assert_eq!((status, code.as_deref()), (404, Some("worker-not-found")));

    // The dispatch worker reaches a user worker of its namespace, warm.
    let metadata = serde_json::from_value(serde_json::json!({
        "vars": {"GREETING": "hi from a"}
    }))
    .unwrap();
    berth
        .deploy(
            &customers,
            &Name::new("customer-a").unwrap(),
            wasm("hello"),
            metadata,
        )
        .await
        .expect("deploy customer-a");
    let admin = berth.admin_router();
    let instantiated_before = instantiations(&admin).await;
    for _ in 0..3 {
        let (status, body, _) = get(&data, "customer-a.platform.localhost", "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("hi from a"), "{body}");
        // The client may have the whole response before the dispatch
        // worker's call has returned and put its instance back: wait for
        // the instance to be idle in its pool (customer-a runs fresh, so it
        // is the only one) rather than racing it.
        wait_for_idle(&admin, 1).await;
    }
    // Three fresh user workers and one dispatch worker instance, which
    // served all three requests warm.
    let instantiated = instantiations(&admin).await - instantiated_before;
    assert_eq!(
        instantiated, 4,
        "{instantiated} instantiations for 3 user and 3 dispatch requests"
    );

    // The admin router works in process too, with its token: it lists
    // what was deployed from Rust…
    let listing = admin_get(&admin, "/v1/namespaces/customers/scripts").await;
    let names: Vec<&str> = listing["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{listing}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["customer-a"], "{listing}");
    // …and shows the dispatch worker's warm instance still holding its
    // pool slot (nothing else runs now): what the shutdown below must not
    // be kept alive by.
    let runtime = admin_get(&admin, "/v1/runtime").await;
    assert_eq!(runtime["result"]["warm_idle_instances"], 1, "{runtime}");
    assert!(
        runtime["result"]["pool"]["component_instances"].as_u64() >= Some(1),
        "{runtime}"
    );

    // Delete without HTTP: the next request does not find it.
    assert!(
        berth
            .delete(&default, &Name::new("hello").unwrap())
            .await
            .unwrap()
    );
    let (status, _, code) = get(&data, "hello.localhost", "/").await;
    assert_eq!((status, code.as_deref()), (404, Some("worker-not-found")));

    drop((data, admin));
    berth.shutdown().await;
    assert_eq!(
        epoch_threads(),
        before,
        "the epoch thread is gone after shutdown"
    );
}

/// An example program of this crate (built by `cargo test` next to the
/// test binaries).
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(name))
        .unwrap();
    assert!(
        path.exists(),
        "{} is missing; `cargo test` builds examples",
        path.display()
    );
    Command::new(path)
}

/// The store seam is implementable outside the crate: the example wraps
/// `SledStore` in a store of its own (an audit trail of every write), and
/// Berth deploys, serves, runs guest KV and deletes through it.
#[test]
fn a_store_of_the_embedders_own_serves_deploys_kv_and_deletes() {
    let out = example("custom_store")
        .arg(wasm_path("hello"))
        .arg(wasm_path("tenant"))
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "hello.localhost/: 200",
        "notes.localhost/kv/get?key=k: 200 v1",
        "hello.localhost/ after delete: 404",
        "audit: put script default/hello",
        "audit: kv set default/notes k (2 bytes)",
        "audit: delete script default/hello",
        "self-test passed",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

/// The example service (its own routes + Berth for *.apps.localhost) runs
/// and answers its self-test.
#[test]
fn the_embed_example_runs() {
    let out = example("embed")
        .arg("--self-test")
        .arg(wasm_path("hello"))
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("deployed default/hello version 1"),
        "{stdout}"
    );
    assert!(stdout.contains("hello.apps.localhost: 200"), "{stdout}");
    assert!(
        stdout.contains("nobody.apps.localhost: 404 worker-not-found"),
        "{stdout}"
    );
    assert!(stdout.contains("self-test passed"), "{stdout}");
}
