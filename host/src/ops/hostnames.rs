//! A namespace's hostname table: custom hostnames and wildcards → scripts.

use super::{Ops, OpsError, OpsResult, no_script};
use crate::base::host_pattern::HostPattern;
use crate::base::names::Name;
use crate::store::StoreError;

impl Ops {
    /// Every mapping of a namespace, by hostname.
    pub async fn hostnames(&self, ns: &Name) -> OpsResult<Vec<(String, Name)>> {
        let ns = ns.clone();
        self.with_store(move |store| {
            if store.get_namespace(&ns)?.is_none() {
                return Err(StoreError::NamespaceNotFound(ns).into());
            }
            Ok(store.list_hostnames(&ns)?)
        })
        .await
    }

    /// Maps `hostname` (exact or `*.suffix`, normalized) to an existing
    /// script; returns the normalized pattern.
    pub async fn put_hostname(
        &self,
        ns: &Name,
        hostname: &str,
        script: &Name,
    ) -> OpsResult<String> {
        let pattern = HostPattern::parse(hostname)?.to_string();
        let (n, host, s) = (ns.clone(), pattern.clone(), script.clone());
        self.with_store(move |store| {
            if store.get_script(&n, &s)?.is_none() {
                return Err(no_script(&n, &s));
            }
            Ok(store.put_hostname(&n, &host, &s)?)
        })
        .await?;
        Ok(pattern)
    }

    /// Removes a mapping; returns the normalized pattern.
    pub async fn delete_hostname(&self, ns: &Name, hostname: &str) -> OpsResult<String> {
        let pattern = HostPattern::parse(hostname)?.to_string();
        let (n, host) = (ns.clone(), pattern.clone());
        self.with_store(move |store| match store.delete_hostname(&n, &host)? {
            true => Ok(()),
            false => Err(OpsError::NotFound {
                what: "hostname",
                name: host,
            }),
        })
        .await?;
        Ok(pattern)
    }
}
