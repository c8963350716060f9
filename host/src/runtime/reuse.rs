//! Opt-in warm instance reuse (`settings.isolation = "reuse"`).
//!
//! By default every request gets a fresh instance. A script that opts in
//! may have an instance serve several *sequential* requests, the way a
//! Cloudflare isolate keeps its globals: after a request that ended
//! cleanly (no trap, no limit hit), its store and instance go back to this
//! pool, bounded per script by `reuse_max_idle`. An idle instance is
//! dropped after `reuse_idle_ms` or once it has served
//! `reuse_max_requests`. Instances are never shared across scripts (the
//! pool belongs to one loaded worker) and never serve two requests at once.
//!
//! The trade-off: state a request leaves behind (globals, grown memory) is
//! visible to the next request of the *same* script, and an idle instance
//! holds pooling-allocator slots.
//!
//! Not every guest runtime can take a second request: StarlingMonkey
//! (componentize-js) keeps a single `FetchEvent` and throws on the second
//! `respondWith`. [`reuse_blocker`] recognises such components by their
//! producers section and the runtime serves them fresh whatever their
//! settings say. An instance that returned without responding is never
//! reused either (it may still hold the response outparam).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::state::WorkerState;
use super::stdio::OutputCapture;
use crate::base::isolation::Isolation;

/// Why a component cannot serve several requests from one instance, if it
/// cannot (read from its top-level `producers` custom section).
pub fn reuse_blocker(component: &[u8]) -> Option<&'static str> {
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(section)) if section.name() == "producers" => {
                let data = section.data();
                let built_by = |tool: &[u8]| data.windows(tool.len()).any(|w| w == tool);
                if built_by(b"ComponentizeJS") {
                    return Some(
                        "componentize-js (StarlingMonkey) handles one fetch event per instance",
                    );
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// An instance waiting for its next request.
pub struct Idle {
    /// Its store (state is reset per request).
    pub store: Store<WorkerState>,
    /// The instantiated component.
    pub proxy: Proxy,
    /// Its stdout capture (cleared per request).
    pub stdout: OutputCapture,
    /// Its stderr capture.
    pub stderr: OutputCapture,
    /// Requests served so far.
    pub served: u32,
    since: Instant,
}

impl Idle {
    /// An instance that has just served a request.
    pub fn new(
        store: Store<WorkerState>,
        proxy: Proxy,
        stdout: OutputCapture,
        stderr: OutputCapture,
        served: u32,
    ) -> Self {
        Self {
            store,
            proxy,
            stdout,
            stderr,
            served,
            since: Instant::now(),
        }
    }
}

/// Idle instances of one worker.
#[derive(Default)]
pub struct ReusePool {
    idle: Mutex<Vec<Idle>>,
}

impl ReusePool {
    /// A warm instance, if one is fresh enough.
    pub fn take(&self, isolation: &Isolation) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let max_idle = Duration::from_millis(isolation.reuse_idle_ms);
        idle.retain(|i| i.since.elapsed() <= max_idle);
        idle.pop()
    }

    /// Drops idle instances older than `isolation.reuse_idle_ms` (the
    /// runtime's reaper calls this every second, so an idle instance does
    /// not hold its pool slot until the next request happens to come).
    pub fn reap(&self, isolation: &Isolation) -> usize {
        let max_idle = Duration::from_millis(isolation.reuse_idle_ms);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = idle.len();
        idle.retain(|i| i.since.elapsed() <= max_idle);
        before - idle.len()
    }

    /// Returns an instance after a clean request (dropped when it is worn
    /// out or the pool is full).
    pub fn put(&self, instance: Idle, isolation: &Isolation) {
        if instance.served >= isolation.reuse_max_requests {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < isolation.reuse_max_idle as usize {
            idle.push(instance);
        }
    }
}
