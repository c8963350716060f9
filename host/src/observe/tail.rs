//! Live tail: a stream of events per script, `wrangler tail`-style.
//!
//! `GET /v1/namespaces/{ns}/scripts/{name}/tail` (admin API) streams
//! newline-delimited JSON, one [`TailEvent`] per finished invocation of
//! that script — method, URL path (never the query string, which may carry
//! secrets), status, outcome, duration, CPU, subrequests, the guest's
//! stdout/stderr lines, the request id and, for dispatch workers, which
//! scripts they dispatched to. `berth tail NS NAME` prints them.
//!
//! Publishing costs one map lookup when nobody tails a script. Each
//! subscriber has a bounded buffer; a subscriber that falls behind gets a
//! `{"lagged": n}` line instead of unbounded memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::base::names::Name;

/// Events buffered per subscriber.
const BUFFER: usize = 256;

/// One guest output line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line.
    pub line: String,
}

/// One finished invocation.
#[derive(Debug, Clone, Serialize)]
pub struct TailEvent {
    /// Milliseconds since the Unix epoch, at the end of the invocation.
    pub timestamp_ms: u64,
    /// Namespace of the script.
    pub namespace: String,
    /// The script.
    pub script: String,
    /// The request id (also in logs and the `berth-request-id` header).
    pub request_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// URL path, without the query string.
    pub path: String,
    /// Status sent to the caller (the guest's, or the host's on failure).
    pub status: Option<u16>,
    /// `ok`, or the `x-berth-error` code.
    pub outcome: String,
    /// Wall time of the invocation, ms.
    pub duration_ms: u64,
    /// CPU time the guest spent executing, ms.
    pub cpu_ms: f64,
    /// Fuel the guest consumed (hosts with `[limits] fuel` only): the same
    /// figure for the same work on any machine, under any load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Outbound requests made.
    pub subrequests: u32,
    /// Scripts a dispatch worker dispatched to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dispatched_to: Vec<String>,
    /// Guest output.
    pub logs: Vec<LogLine>,
}

type Key = (Name, Name);

/// Per-script broadcast channels.
#[derive(Default)]
pub struct TailHub {
    channels: Mutex<HashMap<Key, broadcast::Sender<Arc<TailEvent>>>>,
}

impl TailHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, broadcast::Sender<Arc<TailEvent>>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anyone tails `namespace/script` (to skip building events).
    pub fn is_tailed(&self, namespace: &Name, script: &Name) -> bool {
        self.lock()
            .get(&(namespace.clone(), script.clone()))
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Starts tailing a script.
    pub fn subscribe(
        &self,
        namespace: &Name,
        script: &Name,
    ) -> broadcast::Receiver<Arc<TailEvent>> {
        let mut channels = self.lock();
        let sender = channels
            .entry((namespace.clone(), script.clone()))
            .or_insert_with(|| broadcast::channel(BUFFER).0);
        sender.subscribe()
    }

    /// Delivers an event to the script's tails; forgets channels nobody
    /// listens to any more.
    pub fn publish(&self, namespace: &Name, script: &Name, event: TailEvent) {
        let mut channels = self.lock();
        let key = (namespace.clone(), script.clone());
        if let Some(sender) = channels.get(&key)
            && sender.send(Arc::new(event)).is_err()
        {
            channels.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(script: &str) -> TailEvent {
        TailEvent {
            timestamp_ms: 1,
            namespace: "ns".into(),
            script: script.into(),
            request_id: None,
            method: "GET".into(),
            path: "/".into(),
            status: Some(200),
            outcome: "ok".into(),
            duration_ms: 1,
            cpu_ms: 0.1,
            fuel: None,
            subrequests: 0,
            dispatched_to: vec![],
            logs: vec![],
        }
    }

    #[tokio::test]
    async fn events_reach_only_their_scripts_tails() {
        let hub = TailHub::default();
        let (ns, a, b) = (
            Name::new("ns").unwrap(),
            Name::new("a").unwrap(),
            Name::new("b").unwrap(),
        );
        assert!(!hub.is_tailed(&ns, &a));
        let mut rx = hub.subscribe(&ns, &a);
        assert!(hub.is_tailed(&ns, &a));
        hub.publish(&ns, &b, event("b"));
        hub.publish(&ns, &a, event("a"));
        assert_eq!(rx.recv().await.unwrap().script, "a");
        drop(rx);
        hub.publish(&ns, &a, event("a"));
        assert!(!hub.is_tailed(&ns, &a), "an abandoned channel is dropped");
    }
}
