//! What a host tells the others sharing its store, and what the dashboard's
//! cluster view shows: plain data, no I/O.
//!
//! A host of a shared store (NATS) announces a [`HostPresence`] every few
//! seconds; every host keeps the latest of each and forgets the ones it has
//! not heard from for a while. A store only one host uses has no presence:
//! the view then lists that host alone.

use serde::{Deserialize, Serialize};

/// Longest host id kept from an announcement (anything longer is not a
/// Berth host's and is ignored).
pub const MAX_HOST_ID_LEN: usize = 128;

/// One host as it last announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPresence {
    /// Stable for the life of the process: the machine's name and a
    /// random suffix, so two hosts on one machine stay apart.
    pub host_id: String,
    /// When the host announced this, ms since the Unix epoch (its clock).
    pub last_seen_ms: u64,
    /// The revision of the shared records the host had applied (`None`:
    /// the store has no revisions).
    pub revision: Option<u64>,
    /// Revisions the host was behind the store when it announced this.
    pub lag: u64,
    /// Scripts the host has loaded (its worker cache).
    pub loaded_scripts: u64,
}

impl HostPresence {
    /// Whether an announcement from another host is well-formed enough to
    /// show (a bounded, printable id).
    pub fn is_plausible(&self) -> bool {
        !self.host_id.is_empty()
            && self.host_id.len() <= MAX_HOST_ID_LEN
            && self
                .host_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    }
}

/// The hosts sharing a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The store backend (`sled`, `nats`, or an embedder's own).
    pub backend: &'static str,
    /// The newest revision of the shared records any host reported
    /// (`None`: the store has no revisions).
    pub revision: Option<u64>,
    /// Hosts heard from recently, this one included, by id.
    pub hosts: Vec<HostPresence>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_printable_host_ids_are_plausible() {
        let mut p = HostPresence {
            host_id: "web-1.a1b2".into(),
            last_seen_ms: 1,
            revision: Some(3),
            lag: 0,
            loaded_scripts: 2,
        };
        assert!(p.is_plausible());
        for bad in ["", "a b", "<script>", &"x".repeat(MAX_HOST_ID_LEN + 1)] {
            p.host_id = bad.into();
            assert!(!p.is_plausible(), "{bad:?}");
        }
    }
}
