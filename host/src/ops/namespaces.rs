//! Namespaces: list, create, read, delete, and their settings.

use serde::Serialize;

use super::{Ops, OpsError, OpsResult};
use crate::base::names::Name;
use crate::base::settings::NamespaceSettings;
use crate::store::{NamespaceRecord, NamespaceStore, StoreChange, StoreError, rfc3339};

/// A namespace as the APIs show it.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: Name,
    /// When it was created (RFC 3339).
    pub created_on: String,
    /// Scripts it holds.
    pub script_count: usize,
    /// Whether its workers see platform metadata headers.
    pub trusted: bool,
}

fn info(store: &dyn NamespaceStore, record: NamespaceRecord) -> OpsResult<NamespaceInfo> {
    let script_count = store.list_scripts(&record.name)?.len();
    Ok(NamespaceInfo {
        created_on: rfc3339(record.created_ms),
        name: record.name,
        script_count,
        trusted: record.trusted,
    })
}

impl Ops {
    /// Whether the store answers (readiness).
    pub async fn store_ready(&self) -> bool {
        self.with_store(|store| Ok(store.list_namespaces().map(drop)?))
            .await
            .is_ok()
    }

    /// Every namespace, by name.
    pub async fn list_namespaces(&self) -> OpsResult<Vec<NamespaceInfo>> {
        self.with_store(|store| {
            store
                .list_namespaces()?
                .into_iter()
                .map(|record| info(store, record))
                .collect()
        })
        .await
    }

    /// One namespace.
    pub async fn namespace(&self, name: &Name) -> OpsResult<NamespaceInfo> {
        let name = name.clone();
        self.with_store(move |store| {
            let record = store
                .get_namespace(&name)?
                .ok_or(StoreError::NamespaceNotFound(name))?;
            info(store, record)
        })
        .await
    }

    /// Creates a namespace, trusted or not.
    pub async fn create_namespace(&self, name: &Name, trusted: bool) -> OpsResult<NamespaceInfo> {
        let ns = name.clone();
        let created = self
            .with_store(move |store| {
                let mut record = store.create_namespace(&ns)?;
                if trusted
                    && let Some(Ok(updated)) = store.update_namespace(&ns, &mut |r| {
                        r.trusted = true;
                        Ok(())
                    })?
                {
                    record = updated;
                }
                info(store, record)
            })
            .await?;
        self.changed(StoreChange::Namespace(name.clone()));
        Ok(created)
    }

    /// Creates a namespace unless it exists.
    pub async fn ensure_namespace(&self, name: &Name) -> OpsResult<NamespaceRecord> {
        let ns = name.clone();
        self.with_store(move |store| Ok(store.ensure_namespace(&ns)?))
            .await
    }

    /// Deletes a namespace (with `force`, its scripts too); returns the
    /// scripts deleted.
    pub async fn delete_namespace(&self, name: &Name, force: bool) -> OpsResult<Vec<Name>> {
        if *name == self.default_namespace {
            return Err(OpsError::DefaultNamespace(name.clone()));
        }
        let ns = name.clone();
        let deleted = self
            .with_store(move |store| Ok(store.delete_namespace(&ns, force)?))
            .await?;
        self.changed(StoreChange::Namespace(name.clone()));
        tracing::info!(namespace = %name, scripts_deleted = deleted.len(), "namespace deleted");
        Ok(deleted)
    }

    /// A namespace's settings.
    pub async fn namespace_settings(&self, name: &Name) -> OpsResult<NamespaceSettings> {
        let ns = name.clone();
        self.with_store(move |store| {
            let record = store
                .get_namespace(&ns)?
                .ok_or(StoreError::NamespaceNotFound(ns))?;
            Ok(NamespaceSettings::of(&record))
        })
        .await
    }

    /// Applies a JSON merge patch to a namespace's settings.
    pub async fn patch_namespace_settings(
        &self,
        name: &Name,
        patch: serde_json::Value,
    ) -> OpsResult<NamespaceSettings> {
        let ns = name.clone();
        let record = self
            .with_store(move |store| {
                let outcome = store.update_namespace(&ns, &mut |record| {
                    let settings = NamespaceSettings::of(record).patched(&patch)?;
                    record.egress = settings.egress;
                    record.trusted = settings.trusted;
                    Ok(())
                })?;
                match outcome {
                    None => Err(StoreError::NamespaceNotFound(ns).into()),
                    Some(Ok(record)) => Ok(record),
                    Some(Err(refusal)) => Err(OpsError::Metadata(refusal)),
                }
            })
            .await?;
        self.changed(StoreChange::Namespace(name.clone()));
        tracing::info!(namespace = %name, "namespace settings updated");
        Ok(NamespaceSettings::of(&record))
    }
}
