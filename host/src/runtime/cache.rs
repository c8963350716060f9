//! Bounded in-memory cache of loaded workers (pre-instantiated components).
//!
//! Keyed by namespace + script + role (user or dispatch worker: the same
//! component links differently in each). The operations layer evicts a key
//! whenever the script changes, so a cached worker is always the current
//! version. Concurrent first requests for the same script share one load
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
type Slot = Arc<OnceCell<Arc<Worker>>>;

/// LRU of loaded workers, and the loads in progress.
pub struct WorkerCache {
    inner: Mutex<Inner>,
}

struct Inner {
    loaded: LruCache<Key, Slot>,
    loading: HashMap<Key, Slot>,
}

impl WorkerCache {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot for a script: its loaded worker's, or the load in progress
    /// (created if there is none). `true` for a loaded worker (a hit).
    pub fn slot(&self, namespace: &Name, script: &Name, role: Role) -> (Slot, bool) {
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
    pub fn finished(&self, namespace: &Name, script: &Name, role: Role, slot: &Slot) {
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
        let mut inner = self.lock();
        for role in [Role::User, Role::Dispatch] {
            let key = (namespace.clone(), script.clone(), role);
            inner.loaded.pop(&key);
            inner.loading.remove(&key);
        }
    }

    /// Forgets every script of a namespace.
    pub fn evict_namespace(&self, namespace: &Name) {
        let mut inner = self.lock();
        let keys: Vec<Key> = inner
            .loaded
            .iter()
            .map(|(k, _)| k)
            .chain(inner.loading.keys())
            .filter(|(ns, _, _)| ns == namespace)
            .cloned()
            .collect();
        for key in keys {
            inner.loaded.pop(&key);
            inner.loading.remove(&key);
        }
    }

    /// The workers loaded right now.
    pub fn loaded_workers(&self) -> Vec<Arc<Worker>> {
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

    /// Requests waiting in the admission queues of loaded workers.
    pub fn queued(&self) -> u32 {
        self.lock()
            .loaded
            .iter()
            .filter_map(|(_, slot)| slot.get())
            .map(|worker| worker.admission.queued())
            .sum()
    }

    /// Workers currently loaded.
    pub fn loaded(&self) -> usize {
        self.lock().loaded.len()
    }
}
