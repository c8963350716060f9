//! Namespaces' hostname tables on sled.

use super::SledStore;
use crate::base::names::Name;
use crate::store::{Hostnames, StoreError, StoreResult};

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
        self.flush()
    }

    fn delete_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<bool> {
        let _guard = self.lock();
        let removed = self
            .hostnames
            .remove(format!("{namespace}/{hostname}").as_bytes())?
            .is_some();
        self.flush()?;
        Ok(removed)
    }

    fn get_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        let key = format!("{namespace}/{hostname}");
        match self.hostnames.get(key.as_bytes())? {
            None => Ok(None),
            Some(value) => {
                let text = String::from_utf8_lossy(&value).into_owned();
                Name::new(&text).map(Some).map_err(|e| StoreError::Corrupt {
                    key,
                    message: e.to_string(),
                })
            }
        }
    }

    fn list_hostnames(&self, namespace: &Name) -> StoreResult<Vec<(String, Name)>> {
        let prefix = format!("{namespace}/");
        self.hostnames
            .scan_prefix(prefix.as_bytes())
            .map(|entry| {
                let (k, v) = entry?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let script =
                    Name::new(&String::from_utf8_lossy(&v)).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        message: e.to_string(),
                    })?;
                Ok((key[prefix.len()..].to_owned(), script))
            })
            .collect()
    }
}
