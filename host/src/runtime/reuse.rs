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

use serde::{Deserialize, Serialize};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::state::WorkerState;
use super::stdio::OutputCapture;

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

/// How a script's instances are isolated, as stored with the script. The
/// API shows it flat (`settings.isolation` = the mode, `settings.reuse_*`
/// beside it; see `crate::settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Isolation {
    /// `fresh` (default: a new instance per request) or `reuse`.
    pub mode: String,
    /// Requests one instance may serve before it is dropped.
    pub reuse_max_requests: u32,
    /// How long an instance may sit idle before it is dropped, ms.
    pub reuse_idle_ms: u64,
    /// Idle instances kept per script.
    pub reuse_max_idle: u32,
}

impl Default for Isolation {
    fn default() -> Self {
        Self {
            mode: "fresh".into(),
            reuse_max_requests: 1000,
            reuse_idle_ms: 30_000,
            reuse_max_idle: 4,
        }
    }
}

impl Isolation {
    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode != "fresh" && self.mode != "reuse" {
            return Err(format!(
                "isolation must be \"fresh\" or \"reuse\", got {:?}",
                self.mode
            ));
        }
        for (key, value) in [
            ("reuse_max_requests", u64::from(self.reuse_max_requests)),
            ("reuse_idle_ms", self.reuse_idle_ms),
            ("reuse_max_idle", u64::from(self.reuse_max_idle)),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        Ok(())
    }

    /// Whether instances are reused.
    pub fn reuse(&self) -> bool {
        self.mode == "reuse"
    }
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

    /// Idle instances right now.
    pub fn len(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// Whether no instance is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_settings_are_checked() {
        assert!(Isolation::default().validate().is_ok());
        assert!(!Isolation::default().reuse());
        let bad = Isolation {
            mode: "shared".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("isolation must be"));
        let zero = Isolation {
            mode: "reuse".into(),
            reuse_max_idle: 0,
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().contains("reuse_max_idle"));
    }
}
