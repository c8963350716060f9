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
//!
//! With a [`TailRelay`] (a cluster store), a tail on any host also receives
//! the script's events from every other host, and this host sends its own
//! events out while some other host tails the script. Events travel as
//! serialized JSON lines, built once per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::base::names::Name;
use crate::base::tail_relay::TailRelay;

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
type Channels = HashMap<Key, broadcast::Sender<Bytes>>;

/// Per-script broadcast channels of JSON lines.
#[derive(Default)]
pub struct TailHub {
    channels: Mutex<Channels>,
    relay: OnceLock<Arc<dyn TailRelay>>,
}

impl TailHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects this hub to the other hosts of a cluster (once).
    pub fn set_relay(&self, relay: Arc<dyn TailRelay>) {
        let _ = self.relay.set(relay);
    }

    /// Whether anyone, here or on another host, tails `namespace/script`
    /// (to skip building events).
    pub fn is_tailed(&self, namespace: &Name, script: &Name) -> bool {
        let local = self
            .lock()
            .get(&(namespace.clone(), script.clone()))
            .is_some_and(|tx| tx.receiver_count() > 0);
        local
            || self
                .relay
                .get()
                .is_some_and(|relay| relay.remote_interest(namespace, script))
    }

    /// Starts tailing a script: one JSON line per event, from this host
    /// and, in a cluster, from every other.
    pub fn subscribe(&self, namespace: &Name, script: &Name) -> broadcast::Receiver<Bytes> {
        let mut channels = self.lock();
        let key = (namespace.clone(), script.clone());
        if let Some(sender) = channels.get(&key)
            && sender.receiver_count() > 0
        {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(BUFFER);
        channels.insert(key, sender.clone());
        if let Some(relay) = self.relay.get() {
            // Lines from other hosts go into the same channel while anyone
            // here still listens to it.
            relay.listen(
                namespace,
                script,
                Box::new(move |line| match line {
                    Some(line) => sender.send(line).is_ok(),
                    None => sender.receiver_count() > 0,
                }),
            );
        }
        receiver
    }

    /// Delivers an event to the script's tails here and elsewhere; forgets
    /// channels nobody listens to any more.
    pub fn publish(&self, namespace: &Name, script: &Name, event: TailEvent) {
        let line = match serde_json::to_vec(&event) {
            Ok(json) => Bytes::from(json),
            Err(_) => return,
        };
        if let Some(relay) = self.relay.get()
            && relay.remote_interest(namespace, script)
        {
            relay.send(namespace, script, line.clone());
        }
        let mut channels = self.lock();
        let key = (namespace.clone(), script.clone());
        if let Some(sender) = channels.get(&key)
            && sender.send(line).is_err()
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
        let line: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(line["script"], "a");
        drop(rx);
        hub.publish(&ns, &a, event("a"));
        assert!(!hub.is_tailed(&ns, &a), "an abandoned channel is dropped");
    }
}
