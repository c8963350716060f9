//! The host's in-memory copy of the records bucket.
//!
//! Every read of the catalog (namespaces, scripts, hostnames, asset
//! owners) is served from here, so serving needs no round trip to NATS and
//! keeps working while NATS is unreachable. A watch (see `watch.rs`) feeds
//! it every revision of the bucket in order; writes made by this host are
//! applied as soon as JetStream acknowledges them (read-your-writes), as
//! are revisions it reads from NATS directly, and the watch's copy of the
//! same revision is then a no-op. Each key keeps
//! the revision it was last set to, deletions included, so an older
//! revision arriving late can never resurrect or roll back a key.
//!
//! This module holds bytes only; it never decodes records or talks to NATS.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// One key's latest known state.
#[derive(Debug, Clone)]
struct Slot {
    revision: u64,
    /// `None`: deleted at `revision`.
    value: Option<Bytes>,
}

/// The mirror: key → latest value, plus the revision the watch reached.
#[derive(Default)]
pub struct Mirror {
    slots: RwLock<BTreeMap<String, Slot>>,
    /// Every revision up to this one has been applied from the watch
    /// (local writes may be ahead of it, with gaps).
    watched: AtomicU64,
}

impl Mirror {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `key` = `value` (or its deletion) at `revision`. `true` if
    /// the visible state changed (a new value, or a deletion of a present
    /// key); an older or equal revision changes nothing.
    pub fn apply(&self, key: &str, revision: u64, value: Option<Bytes>) -> bool {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(key) {
            Some(slot) if slot.revision >= revision => false,
            Some(slot) => {
                let changed = slot.value.is_some() || value.is_some();
                slot.revision = revision;
                slot.value = value;
                changed
            }
            None => {
                let changed = value.is_some();
                slots.insert(key.to_owned(), Slot { revision, value });
                changed
            }
        }
    }

    /// Marks `key` deleted without knowing the deletion's revision (the
    /// client library does not return it): the watch later confirms it
    /// with the real revision.
    pub fn forget(&self, key: &str) -> bool {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(key) {
            Some(slot) => slot.value.take().is_some(),
            None => false,
        }
    }

    /// Records that the watch applied every revision up to `revision`.
    pub fn watched_up_to(&self, revision: u64) {
        self.watched.fetch_max(revision, Ordering::Release);
    }

    /// The revision the watch has applied everything up to.
    pub fn revision(&self) -> u64 {
        self.watched.load(Ordering::Acquire)
    }

    /// The current value of `key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.read().get(key).and_then(|slot| slot.value.clone())
    }

    /// Every present key starting with `prefix`, in key order, with its
    /// value.
    pub fn scan(&self, prefix: &str) -> Vec<(String, Bytes)> {
        self.read()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, slot)| slot.value.clone().map(|v| (k.clone(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_revisions_never_roll_back_or_resurrect() {
        let m = Mirror::default();
        assert!(m.apply("sc.a.x", 5, Some(Bytes::from_static(b"v5"))));
        assert!(!m.apply("sc.a.x", 4, Some(Bytes::from_static(b"v4"))));
        assert_eq!(m.get("sc.a.x").as_deref(), Some(&b"v5"[..]));
        assert!(
            !m.apply("sc.a.x", 5, Some(Bytes::from_static(b"v5"))),
            "same revision twice"
        );
        assert!(m.apply("sc.a.x", 7, None));
        assert!(
            !m.apply("sc.a.x", 6, Some(Bytes::from_static(b"v6"))),
            "a late put stays dead"
        );
        assert_eq!(m.get("sc.a.x"), None);
        assert!(m.apply("sc.a.x", 8, Some(Bytes::from_static(b"v8"))));
        assert!(m.forget("sc.a.x"));
        assert!(!m.forget("sc.a.x"));
        assert!(
            !m.apply("sc.a.x", 8, Some(Bytes::from_static(b"v8"))),
            "forget keeps the revision"
        );
    }

    #[test]
    fn scans_only_their_prefix_in_order() {
        let m = Mirror::default();
        for (i, k) in ["sc.b.x", "sc.a.y", "sc.a.x", "sc.ab.z", "ns.a"]
            .iter()
            .enumerate()
        {
            m.apply(k, i as u64 + 1, Some(Bytes::from(k.to_string())));
        }
        m.apply("sc.a.z", 10, None);
        let keys: Vec<String> = m.scan("sc.a.").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["sc.a.x", "sc.a.y"]);
    }
}
