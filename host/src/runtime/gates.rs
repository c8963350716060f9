//! The admission gates of every script, by role. A gate outlives the
//! loaded worker it belongs to, so neither an eviction nor a redeploy hands
//! a tenant fresh slots while its old invocations still run; a gate nobody
//! holds or waits for is dropped with the script's eviction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::base::Role;
use crate::base::names::Name;
use crate::limits::{Admission, HostLimits, ScriptLimits};

/// A tenant's share of a shared worker: (the worker's namespace and name,
/// the tenant's namespace and name).
type ShareKey = (Name, Name, Name, Name);

/// Every script's gate.
pub struct Gates {
    gates: Mutex<HashMap<(Name, Name, Role), Arc<Admission>>>,
    /// Tenants' shares of workers all tenants call (outbound workers).
    shares: Mutex<HashMap<ShareKey, Arc<Admission>>>,
    limits: HostLimits,
    instances_capacity: u32,
}

impl Gates {
    /// Gates sized by the host's limits; a `[[dispatch]]` entry without its
    /// own `max_concurrency` gets `instances_capacity` slots.
    pub fn new(limits: HostLimits, instances_capacity: u32) -> Self {
        Self {
            gates: Mutex::default(),
            shares: Mutex::default(),
            limits,
            instances_capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Name, Name, Role), Arc<Admission>>> {
        self.gates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The gate of a script in a role: the one it already has (resized to
    /// the script's current `max_concurrency`), or a new one.
    pub fn gate(
        &self,
        namespace: &Name,
        name: &Name,
        role: Role,
        limits: &ScriptLimits,
    ) -> Arc<Admission> {
        let mut gates = self.lock();
        let key = (namespace.clone(), name.clone(), role);
        match gates.get(&key) {
            Some(gate) => {
                gate.resize(self.limits.concurrency(limits));
                gate.clone()
            }
            None => {
                let gate = Arc::new(self.for_limits(limits));
                gates.insert(key, gate.clone());
                gate
            }
        }
    }

    /// A tenant's own gate into a worker every tenant shares (an outbound
    /// worker): as many slots as the worker has, so a tenant whose
    /// upstreams are slow fills its own share and no other tenant's.
    pub fn share(&self, worker: (&Name, &Name), tenant: &(Name, Name)) -> Arc<Admission> {
        let key = (
            worker.0.clone(),
            worker.1.clone(),
            tenant.0.clone(),
            tenant.1.clone(),
        );
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        shares
            .entry(key)
            .or_insert_with(|| Arc::new(self.for_limits(&ScriptLimits::default())))
            .clone()
    }

    /// Drops the gates (and shares) of matching scripts that nobody holds
    /// or waits for (a gate in use stays, so its count survives the
    /// eviction).
    pub fn prune(&self, mut matches: impl FnMut(&Name, &Name) -> bool) {
        self.lock()
            .retain(|(ns, name, _), gate| !(matches(ns, name) && gate.is_idle()));
        self.shares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, _, ns, name), gate| !(matches(ns, name) && gate.is_idle()));
    }

    /// The gate of a `[[dispatch]]` entry: `max_concurrency` slots (default
    /// the instance pool's size), the host's queue bounds.
    pub fn dispatch_gate(&self, max_concurrency: Option<u32>) -> Admission {
        self.with_slots(max_concurrency.unwrap_or(self.instances_capacity))
    }

    /// A gate for a platform component loaded from a file.
    pub fn for_limits(&self, limits: &ScriptLimits) -> Admission {
        self.with_slots(self.limits.concurrency(limits))
    }

    fn with_slots(&self, slots: u32) -> Admission {
        Admission::new(
            slots,
            self.limits.max_queue,
            Duration::from_millis(self.limits.queue_timeout_ms),
        )
    }
}
