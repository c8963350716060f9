//! Bounded in-memory cache of loaded workers (pre-instantiated components).
//!
//! Keyed by namespace + script + role (user or dispatch worker: the same
//! component links differently in each). The operations layer evicts a key
//! whenever the script changes, so a cached worker is always the current
//! version; a change another host made arrives late, and then only workers
//! not built from the current record go ([`WorkerCache::evict_unless`]).
//! Concurrent first requests for the same script share one load
//! (a per-key `OnceCell`). A load in progress waits outside the LRU and
//! enters it only once it succeeded: a failed load is never cached, and
//! requests for scripts that do not exist (any hostname a client makes up)
//! can never push a loaded worker out.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use tokio::sync::OnceCell;

use super::{Role, Worker};
use crate::base::names::Name;

type Key = (Name, Name, Role);
type Slot<W> = Arc<OnceCell<Arc<W>>>;

/// LRU of loaded workers, and the loads in progress. Generic over what is
/// cached only so its rules can be tested without a compiled component.
pub struct WorkerCache<W = Worker> {
    inner: Mutex<Inner<W>>,
}

struct Inner<W> {
    loaded: LruCache<Key, Slot<W>>,
    loading: HashMap<Key, Slot<W>>,
}

impl<W> WorkerCache<W> {
    /// A cache holding up to `capacity` workers.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(Inner {
                loaded: LruCache::new(capacity),
                loading: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<W>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot for a script: its loaded worker's, or the load in progress
    /// (created if there is none). `true` for a loaded worker (a hit).
    pub fn slot(&self, namespace: &Name, script: &Name, role: Role) -> (Slot<W>, bool) {
        let mut inner = self.lock();
        let key = (namespace.clone(), script.clone(), role);
        if let Some(slot) = inner.loaded.get(&key) {
            return (slot.clone(), true);
        }
        let slot = inner.loading.entry(key).or_default().clone();
        (slot, false)
    }

    /// The load of a script finished: a worker enters the LRU (unless it
    /// was evicted while loading), a failure is forgotten.
    pub fn finished(&self, namespace: &Name, script: &Name, role: Role, slot: &Slot<W>) {
        let mut inner = self.lock();
        let key = (namespace.clone(), script.clone(), role);
        let Some(pending) = inner.loading.get(&key) else {
            return;
        };
        if !Arc::ptr_eq(pending, slot) {
            return;
        }
        let pending = inner.loading.remove(&key).unwrap_or_default();
        if pending.initialized() {
            inner.loaded.put(key, pending);
        }
    }

    /// Forgets a script in every role (after a change), loads in progress
    /// included: they may have read the old record.
    pub fn evict(&self, namespace: &Name, script: &Name) {
        self.evict_unless(namespace, script, |_| false);
    }

    /// Forgets a script in every role unless its loaded worker is
    /// `current` (built from the record the store holds now: a change
    /// notice that arrived after a request had already loaded the new
    /// record). Loads in progress go whatever they will build: they may
    /// have read the record before the change. Whether a loaded worker was
    /// kept.
    pub fn evict_unless(
        &self,
        namespace: &Name,
        script: &Name,
        current: impl Fn(&W) -> bool,
    ) -> bool {
        let mut inner = self.lock();
        let mut kept = false;
        for role in [Role::User, Role::Dispatch] {
            let key = (namespace.clone(), script.clone(), role);
            inner.loading.remove(&key);
            let keep = inner
                .loaded
                .peek(&key)
                .and_then(|slot| slot.get())
                .is_some_and(|worker| current(worker));
            if keep {
                kept = true;
            } else {
                inner.loaded.pop(&key);
            }
        }
        kept
    }

    /// Forgets every script of a namespace.
    pub fn evict_namespace(&self, namespace: &Name) {
        self.evict_namespace_unless(namespace, |_| false);
    }

    /// Forgets every script of a namespace whose loaded worker is not
    /// `current`, and every load in progress of the namespace.
    pub fn evict_namespace_unless(&self, namespace: &Name, current: impl Fn(&W) -> bool) {
        let mut inner = self.lock();
        inner.loading.retain(|(ns, _, _), _| ns != namespace);
        let stale: Vec<Key> = inner
            .loaded
            .iter()
            .filter(|((ns, _, _), slot)| {
                ns == namespace && !slot.get().is_some_and(|worker| current(worker))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            inner.loaded.pop(&key);
        }
    }

    /// The workers loaded right now.
    pub fn loaded_workers(&self) -> Vec<Arc<W>> {
        self.lock()
            .loaded
            .iter()
            .filter_map(|(_, slot)| slot.get().cloned())
            .collect()
    }

    /// Forgets every loaded worker.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.loaded.clear();
        inner.loading.clear();
    }

    /// Workers currently loaded.
    pub fn loaded(&self) -> usize {
        self.lock().loaded.len()
    }
}

impl WorkerCache<Worker> {
    /// Requests waiting in the admission queues of loaded workers.
    pub fn queued(&self) -> u32 {
        self.lock()
            .loaded
            .iter()
            .filter_map(|(_, slot)| slot.get())
            .map(|worker| worker.admission.queued())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    /// A cache of "workers" that are just the record revision they were
    /// built from.
    fn loaded(cache: &WorkerCache<u64>, ns: &str, script: &str, role: Role, revision: u64) {
        let (slot, hit) = cache.slot(&name(ns), &name(script), role);
        assert!(!hit);
        slot.set(Arc::new(revision)).expect("a fresh slot");
        cache.finished(&name(ns), &name(script), role, &slot);
    }

    fn cached(cache: &WorkerCache<u64>, ns: &str, script: &str, role: Role) -> Option<u64> {
        let (slot, hit) = cache.slot(&name(ns), &name(script), role);
        let value = slot.get().map(|v| **v);
        if !hit {
            // Leave no load behind for the next look.
            cache.evict(&name(ns), &name(script));
        }
        hit.then_some(value).flatten()
    }

    #[test]
    fn a_late_notice_keeps_a_worker_built_from_the_current_record() {
        let cache = WorkerCache::<u64>::new(8);
        loaded(&cache, "ns", "app", Role::User, 2);
        loaded(&cache, "ns", "app", Role::Dispatch, 1);
        // The store holds revision 2: the user worker is current, the
        // dispatch-role one (built from 1) is stale.
        assert!(cache.evict_unless(&name("ns"), &name("app"), |r| *r == 2));
        assert_eq!(cached(&cache, "ns", "app", Role::User), Some(2));
        assert_eq!(cached(&cache, "ns", "app", Role::Dispatch), None);
        // A notice for a newer revision drops it.
        assert!(!cache.evict_unless(&name("ns"), &name("app"), |r| *r == 3));
        assert_eq!(cached(&cache, "ns", "app", Role::User), None);
    }

    #[test]
    fn a_load_in_progress_at_a_notice_is_never_cached() {
        let cache = WorkerCache::<u64>::new(8);
        let (slot, _) = cache.slot(&name("ns"), &name("app"), Role::User);
        // The load may have read the record before the change, whatever
        // it builds.
        assert!(!cache.evict_unless(&name("ns"), &name("app"), |_| true));
        slot.set(Arc::new(1)).expect("a fresh slot");
        cache.finished(&name("ns"), &name("app"), Role::User, &slot);
        assert_eq!(cache.loaded(), 0);
    }

    #[test]
    fn a_namespace_notice_keeps_only_its_current_workers() {
        let cache = WorkerCache::<u64>::new(8);
        loaded(&cache, "ns", "fresh", Role::User, 7);
        loaded(&cache, "ns", "stale", Role::User, 6);
        loaded(&cache, "other", "stale", Role::User, 6);
        let (_loading, _) = cache.slot(&name("ns"), &name("loading"), Role::User);
        cache.evict_namespace_unless(&name("ns"), |r| *r == 7);
        assert_eq!(cached(&cache, "ns", "fresh", Role::User), Some(7));
        assert_eq!(cached(&cache, "ns", "stale", Role::User), None);
        assert_eq!(cached(&cache, "other", "stale", Role::User), Some(6));
        assert!(
            cache.lock().loading.is_empty(),
            "the namespace's load in progress went"
        );
        cache.evict_namespace(&name("ns"));
        assert_eq!(
            cache.loaded(),
            1,
            "only the other namespace's worker is left"
        );
    }
}
