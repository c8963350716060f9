//! Bounded in-memory cache of loaded workers (pre-instantiated components).
//!
//! Keyed by namespace + script + role (user or dispatch worker: the same
//! component links differently in each). The admin layer evicts a key whenever the
//! script is redeployed or deleted, so a cached worker is always the current
//! version. Concurrent first requests for the same script share one load
//! (a per-key `OnceCell`); a failed load is not cached.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use tokio::sync::OnceCell;

use super::{Role, Worker};
use crate::base::names::Name;

type Key = (Name, Name, Role);
type Slot = Arc<OnceCell<Arc<Worker>>>;

/// LRU of loaded workers.
pub struct WorkerCache {
    slots: Mutex<LruCache<Key, Slot>>,
}

impl WorkerCache {
    /// A cache holding up to `capacity` workers.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            slots: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Key, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot for a script, created empty if absent. `true` if the slot
    /// already held a loaded worker (a cache hit).
    pub fn slot(&self, namespace: &Name, script: &Name, role: Role) -> (Slot, bool) {
        let mut slots = self.lock();
        let key = (namespace.clone(), script.clone(), role);
        if let Some(slot) = slots.get(&key) {
            let hit = slot.initialized();
            return (slot.clone(), hit);
        }
        let slot = Slot::default();
        slots.put(key, slot.clone());
        (slot, false)
    }

    /// Forgets a script in every role (after redeploy or delete).
    pub fn evict(&self, namespace: &Name, script: &Name) {
        let mut slots = self.lock();
        for role in [Role::User, Role::Dispatch] {
            slots.pop(&(namespace.clone(), script.clone(), role));
        }
    }

    /// Forgets a script in one role.
    pub fn evict_role(&self, namespace: &Name, script: &Name, role: Role) {
        self.lock().pop(&(namespace.clone(), script.clone(), role));
    }

    /// Forgets every script of a namespace.
    pub fn evict_namespace(&self, namespace: &Name) {
        let mut slots = self.lock();
        let keys: Vec<Key> = slots
            .iter()
            .filter(|((ns, _, _), _)| ns == namespace)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            slots.pop(&key);
        }
    }

    /// The workers loaded right now.
    pub fn loaded_workers(&self) -> Vec<Arc<Worker>> {
        self.lock()
            .iter()
            .filter_map(|(_, slot)| slot.get().cloned())
            .collect()
    }

    /// Forgets every loaded worker (shutdown).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Requests waiting in the admission queues of loaded workers.
    pub fn queued(&self) -> u32 {
        self.lock()
            .iter()
            .filter_map(|(_, slot)| slot.get())
            .map(|worker| worker.admission.queued())
            .sum()
    }

    /// Workers currently loaded.
    pub fn loaded(&self) -> usize {
        self.lock().iter().filter(|(_, s)| s.initialized()).count()
    }
}
