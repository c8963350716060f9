//! Core modules the host provides to components by import name.
//!
//! A component built from plain JavaScript does not carry the JS engine's
//! ~10 MB of code: it imports it as a core module (`berth-js-engine-c…`),
//! which the host compiled once (`crate::js`). The loader links a
//! component that imports core modules against this registry. A module
//! still being prepared (the host just started) is waited for, up to a
//! bound, instead of failing the load.
//!
//! Must never: hold a module a tenant supplied (only the host's own code is
//! registered here).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Module;

#[derive(Default)]
struct Inner {
    modules: HashMap<String, Module>,
    /// Preparations under way ([`HostModules::preparing`]).
    pending: usize,
}

/// The registry (shared by the loader and whoever prepares modules).
#[derive(Default)]
pub struct HostModules {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// Held while modules are being prepared; loads wait for it to drop.
pub struct Preparing(Arc<HostModules>);

impl Drop for Preparing {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.pending = inner.pending.saturating_sub(1);
        self.0.changed.notify_all();
    }
}

impl HostModules {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announces a preparation: until the guard drops, a lookup of a
    /// missing name waits instead of failing.
    pub fn preparing(self: &Arc<Self>) -> Preparing {
        self.lock().pending += 1;
        Preparing(self.clone())
    }

    /// Makes `module` importable as `name`.
    pub fn provide(&self, name: &str, module: Module) {
        self.lock().modules.insert(name.to_owned(), module);
        self.changed.notify_all();
    }

    /// The module imported as `name`, waiting up to `wait` while
    /// preparations are under way (blocking).
    pub fn get(&self, name: &str, wait: Duration) -> Option<Module> {
        let deadline = Instant::now() + wait;
        let mut inner = self.lock();
        loop {
            if let Some(module) = inner.modules.get(name) {
                return Some(module.clone());
            }
            let now = Instant::now();
            if inner.pending == 0 || now >= deadline {
                return None;
            }
            inner = self
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Names of the modules provided so far.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().modules.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_waits_for_a_preparation_and_not_longer() {
        let engine = wasmtime::Engine::default();
        let modules = Arc::new(HostModules::default());
        assert!(
            modules.get("m", Duration::from_secs(5)).is_none(),
            "nothing pending: no wait"
        );
        let guard = modules.preparing();
        let (m2, e2) = (modules.clone(), engine.clone());
        let provider = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            m2.provide("m", Module::new(&e2, b"\0asm\x01\0\0\0").expect("module"));
            drop(guard);
        });
        assert!(modules.get("m", Duration::from_secs(30)).is_some());
        provider.join().expect("provider");
        assert!(
            modules.get("other", Duration::from_secs(30)).is_none(),
            "done: no wait"
        );
        assert_eq!(modules.names(), vec!["m".to_owned()]);
    }
}
