//! The seam between the live tail (`observe::tail`) and a transport that
//! carries tail events between hosts (the NATS store's relay). Plain
//! trait, no I/O: the tail never knows about NATS, the store never knows
//! about tail events — they meet here as serialized lines.

use bytes::Bytes;

use super::names::Name;

/// Carries serialized tail events between the hosts of a cluster.
pub trait TailRelay: Send + Sync + 'static {
    /// Whether some other host tails `namespace/script` now (so this host
    /// must build and send its events).
    fn remote_interest(&self, namespace: &Name, script: &Name) -> bool;
    /// Sends one event (a JSON line) to the hosts tailing the script.
    fn send(&self, namespace: &Name, script: &Name, line: Bytes);
    /// Tails the script on every other host: tells them to send, and hands
    /// each of their lines to `deliver`. `deliver(None)` is a liveness
    /// check made about once a second; listening stops the first time
    /// `deliver` returns `false`.
    fn listen(
        &self,
        namespace: &Name,
        script: &Name,
        deliver: Box<dyn Fn(Option<Bytes>) -> bool + Send + Sync>,
    );
}
