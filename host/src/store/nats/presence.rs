//! Which hosts share the cluster, for the dashboard's cluster view.
//!
//! Every host announces a [`HostPresence`] (its id, the records revision it
//! has applied and how far behind the bucket it was, the scripts it has
//! loaded) on the core NATS subject `<prefix>.hosts` every couple of
//! seconds, and remembers every other host's latest announcement for
//! [`STALE`]: a host not heard from since is left out of the view. Nothing
//! is stored in JetStream: presence is ephemeral, and keeping it out of the
//! records bucket keeps the records' revision a measure of configuration
//! changes alone, so a host's lag means what it says.
//!
//! Announcements are other processes' words: at most [`MAX_ANNOUNCEMENT`]
//! bytes are decoded, implausible ones are dropped, and at most
//! [`MAX_HOSTS`] hosts are remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::base::cluster::HostPresence;

/// How long an announcement counts: a few missed announcements.
pub const STALE: Duration = Duration::from_secs(10);
/// Most hosts remembered.
const MAX_HOSTS: usize = 1024;
/// Largest announcement decoded, bytes.
const MAX_ANNOUNCEMENT: usize = 4096;

/// This host's id and every host's latest announcement.
pub struct Presence {
    host_id: String,
    subject: String,
    seen: Mutex<HashMap<String, (HostPresence, Instant)>>,
}

impl Presence {
    /// Presence under `prefix`, listening for other hosts from now on (on
    /// the client's runtime, for as long as the returned value lives).
    pub fn start(
        client: &async_nats::Client,
        prefix: &str,
        handle: &tokio::runtime::Handle,
    ) -> Arc<Self> {
        let mut suffix = [0u8; 4];
        let _ = getrandom::fill(&mut suffix);
        let presence = Arc::new(Self {
            host_id: format!("{}-{}", super::super::machine_name(), hex::encode(suffix)),
            subject: format!("{prefix}.hosts"),
            seen: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&presence);
        let (client, subject) = (client.clone(), presence.subject.clone());
        handle.spawn(async move {
            let Ok(mut announcements) = client.subscribe(subject).await else {
                tracing::warn!(
                    "cannot subscribe to host announcements; the cluster view shows this host only"
                );
                return;
            };
            while let Some(message) = announcements.next().await {
                let Some(presence) = weak.upgrade() else {
                    break;
                };
                presence.heard(&message.payload);
            }
        });
        presence
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The subject announcements go to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Another host's announcement, as received.
    fn heard(&self, payload: &[u8]) {
        if payload.len() > MAX_ANNOUNCEMENT {
            return;
        }
        let Ok(presence) = serde_json::from_slice::<HostPresence>(payload) else {
            return;
        };
        // This host's own announcement is remembered when it is made.
        if presence.is_plausible() && presence.host_id != self.host_id {
            self.remember(presence);
        }
    }

    /// Keeps `presence` as its host's latest.
    pub fn remember(&self, presence: HostPresence) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, (_, at)| now.duration_since(*at) < STALE);
        if seen.len() >= MAX_HOSTS && !seen.contains_key(&presence.host_id) {
            return;
        }
        seen.insert(presence.host_id.clone(), (presence, now));
    }

    /// Hosts heard from within [`STALE`], this one included once it has
    /// announced itself, by id.
    pub fn hosts(&self) -> Vec<HostPresence> {
        let now = Instant::now();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut hosts: Vec<HostPresence> = seen
            .values()
            .filter(|(_, at)| now.duration_since(*at) < STALE)
            .map(|(p, _)| p.clone())
            .collect();
        hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence() -> Presence {
        Presence {
            host_id: "me-00".into(),
            subject: "t.hosts".into(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn announcement(id: &str) -> Vec<u8> {
        serde_json::to_vec(&HostPresence {
            host_id: id.into(),
            last_seen_ms: 1,
            revision: Some(7),
            lag: 0,
            loaded_scripts: 3,
        })
        .unwrap()
    }

    #[test]
    fn other_hosts_are_remembered_and_junk_is_not() {
        let p = presence();
        p.heard(&announcement("b-01"));
        p.heard(&announcement("a-01"));
        p.heard(&announcement("a-01"));
        p.heard(&announcement("me-00"));
        p.heard(&announcement("<img src=x>"));
        p.heard(b"not json");
        p.heard(&vec![b' '; MAX_ANNOUNCEMENT + 1]);
        let ids: Vec<String> = p.hosts().into_iter().map(|h| h.host_id).collect();
        assert_eq!(ids, ["a-01", "b-01"], "its own echo is not counted twice");
    }

    #[test]
    fn the_number_of_hosts_is_bounded() {
        let p = presence();
        for i in 0..(MAX_HOSTS + 10) {
            p.heard(&announcement(&format!("h-{i}")));
        }
        assert_eq!(p.hosts().len(), MAX_HOSTS);
    }
}
