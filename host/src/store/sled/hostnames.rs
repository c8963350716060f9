//! Namespaces' hostname tables on sled, and their copy in memory.
//!
//! The built-in router looks a request's host up on every request (the
//! exact name, then each `*.suffix`): against sled that was two tree reads
//! and their page-cache bookkeeping per request (≈ 3 % of a warm-reuse
//! request's CPU). Only this process writes its sled database (sled locks
//! it), so the table is read once at open and every write updates the copy
//! under the store's write lock, right after sled's tree took the change:
//! the copy answers what a read of the tree would. Reads never touch sled.
//! It must never be written to except alongside sled.

use std::collections::HashMap;
use std::sync::RwLock;

use super::SledStore;
use crate::base::names::Name;
use crate::store::{Hostnames, StoreError, StoreResult};

/// One namespace's table: hostname key → script, or why the stored value
/// is not a script name (reported on lookup, as a read of sled did).
type Table = HashMap<String, Result<Name, String>>;

/// Every namespace's table, by namespace.
#[derive(Default)]
pub(super) struct HostnameTable {
    tables: RwLock<HashMap<String, Table>>,
}

impl HostnameTable {
    /// The table as `tree` holds it (`<ns>/<hostname>` → script).
    pub(super) fn load(tree: &sled::Tree) -> StoreResult<Self> {
        let table = Self::default();
        for entry in tree.iter() {
            let (key, value) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let Some((namespace, hostname)) = key.split_once('/') else {
                continue;
            };
            table.insert(namespace, hostname, parse(&value));
        }
        Ok(table)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Table>> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, namespace: &str, hostname: &str, script: Result<Name, String>) {
        self.write()
            .entry(namespace.to_owned())
            .or_default()
            .insert(hostname.to_owned(), script);
    }

    pub(super) fn remove(&self, namespace: &str, hostname: &str) {
        let mut tables = self.write();
        if let Some(table) = tables.get_mut(namespace) {
            table.remove(hostname);
            if table.is_empty() {
                tables.remove(namespace);
            }
        }
    }

    fn get(&self, namespace: &str, hostname: &str) -> Option<Result<Name, String>> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)?
            .get(hostname)
            .cloned()
    }
}

/// A stored script name, or why it is not one.
fn parse(value: &[u8]) -> Result<Name, String> {
    Name::new(&String::from_utf8_lossy(value)).map_err(|e| e.to_string())
}

impl Hostnames for SledStore {
    fn put_hostname(&self, namespace: &Name, hostname: &str, script: &Name) -> StoreResult<()> {
        let _guard = self.lock();
        if self.namespaces.get(namespace.as_str())?.is_none() {
            return Err(StoreError::NamespaceNotFound(namespace.clone()));
        }
        self.hostnames.insert(
            format!("{namespace}/{hostname}").as_bytes(),
            script.as_str().as_bytes(),
        )?;
        self.hostname_table
            .insert(namespace.as_str(), hostname, Ok(script.clone()));
        self.flush()
    }

    fn delete_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<bool> {
        let _guard = self.lock();
        let removed = self
            .hostnames
            .remove(format!("{namespace}/{hostname}").as_bytes())?
            .is_some();
        self.hostname_table.remove(namespace.as_str(), hostname);
        self.flush()?;
        Ok(removed)
    }

    fn get_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        match self.hostname_table.get(namespace.as_str(), hostname) {
            None => Ok(None),
            Some(Ok(script)) => Ok(Some(script)),
            Some(Err(message)) => Err(StoreError::Corrupt {
                key: format!("{namespace}/{hostname}"),
                message,
            }),
        }
    }

    fn list_hostnames(&self, namespace: &Name) -> StoreResult<Vec<(String, Name)>> {
        let prefix = format!("{namespace}/");
        self.hostnames
            .scan_prefix(prefix.as_bytes())
            .map(|entry| {
                let (k, v) = entry?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let script = parse(&v).map_err(|message| StoreError::Corrupt {
                    key: key.clone(),
                    message,
                })?;
                Ok((key[prefix.len()..].to_owned(), script))
            })
            .collect()
    }
}
