//! Scripts: read, list, delete (one, or every script a tag filter
//! selects), settings, tags and secrets. Every change evicts the script's
//! loaded worker.

use serde::Serialize;

use super::{Ops, OpsError, OpsResult, no_script};
use crate::base::Invalid;
use crate::base::listing::{ListQuery, Page};
use crate::base::metadata::{MAX_VARS_BYTES, validate_tag, validate_tags, validate_var_name};
use crate::base::names::Name;
use crate::base::settings::ScriptSettings;
use crate::store::{NamespaceStore, ScriptRecord, StoreError};

/// A script's settings and what is stored but not applied.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    /// The settings.
    #[serde(flatten)]
    pub settings: ScriptSettings,
    /// Why part of the settings is not applied (e.g. reuse of a component
    /// that cannot take a second request).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The record of a script that must exist.
fn existing(store: &dyn NamespaceStore, ns: &Name, name: &Name) -> OpsResult<ScriptRecord> {
    store
        .get_script(ns, name)?
        .ok_or_else(|| no_script(ns, name))
}

impl Ops {
    /// A script's record.
    pub async fn script(&self, ns: &Name, name: &Name) -> OpsResult<ScriptRecord> {
        let (ns, name) = (ns.clone(), name.clone());
        self.with_store(move |store| existing(store, &ns, &name))
            .await
    }

    /// Every script of a namespace, by name.
    pub async fn list_scripts(&self, ns: &Name) -> OpsResult<Vec<ScriptRecord>> {
        let ns = ns.clone();
        self.with_store(move |store| {
            if store.get_namespace(&ns)?.is_none() {
                return Err(StoreError::NamespaceNotFound(ns).into());
            }
            Ok(store.list_scripts(&ns)?)
        })
        .await
    }

    /// One page of a namespace's scripts.
    pub async fn list_scripts_page(&self, ns: &Name, query: ListQuery) -> OpsResult<Page> {
        query.filter()?;
        let scripts = self.list_scripts(ns).await?;
        Ok(query.page(scripts)?)
    }

    /// A script's component bytes as uploaded.
    pub async fn script_content(&self, ns: &Name, name: &Name) -> OpsResult<Vec<u8>> {
        let (ns, name) = (ns.clone(), name.clone());
        self.with_store(move |store| {
            store
                .script_content(&ns, &name)?
                .ok_or_else(|| no_script(&ns, &name))
        })
        .await
    }

    /// Deletes a script (and its KV bucket, assets' references, hostname
    /// targets stay as they are).
    pub async fn delete_script(&self, ns: &Name, name: &Name) -> OpsResult<()> {
        let (n, s) = (ns.clone(), name.clone());
        let deleted = self
            .with_store(move |store| Ok(store.delete_script(&n, &s)?))
            .await?;
        if !deleted {
            return Err(no_script(ns, name));
        }
        self.script_changed(ns, name);
        tracing::info!(namespace = %ns, script = %name, "script deleted");
        Ok(())
    }

    /// Deletes every script of `ns` the query's tag filter selects (a
    /// filter is required); returns their names.
    pub async fn delete_tagged(&self, ns: &Name, query: &ListQuery) -> OpsResult<Vec<Name>> {
        let filter = query.filter()?;
        if filter.is_empty() {
            return Err(
                Invalid::from("bulk delete needs a tags filter, e.g. ?tags=plan-free:yes").into(),
            );
        }
        let n = ns.clone();
        let deleted = self
            .with_store(move |store| {
                if store.get_namespace(&n)?.is_none() {
                    return Err(StoreError::NamespaceNotFound(n).into());
                }
                let mut deleted = Vec::new();
                for script in store.list_scripts(&n)? {
                    if filter.matches(&script.tags) && store.delete_script(&n, &script.name)? {
                        deleted.push(script.name);
                    }
                }
                Ok(deleted)
            })
            .await?;
        for name in &deleted {
            self.script_changed(ns, name);
        }
        tracing::info!(namespace = %ns, count = deleted.len(), "bulk delete by tags");
        Ok(deleted)
    }

    /// Changes a script's record with `change` (which may refuse);
    /// `refused` turns a refusal into the operation's error.
    async fn update_script(
        &self,
        ns: &Name,
        name: &Name,
        refused: impl FnOnce(Invalid) -> OpsError + Send + 'static,
        mut change: impl FnMut(&mut ScriptRecord) -> Result<(), Invalid> + Send + 'static,
    ) -> OpsResult<ScriptRecord> {
        let (n, s) = (ns.clone(), name.clone());
        let record = self
            .with_store(
                move |store| match store.update_script(&n, &s, &mut change)? {
                    None => Err(no_script(&n, &s)),
                    Some(Ok(record)) => Ok(record),
                    Some(Err(refusal)) => Err(refused(refusal)),
                },
            )
            .await?;
        self.script_changed(ns, name);
        Ok(record)
    }

    /// A script's settings, with warnings for what is stored but not
    /// applied.
    pub async fn script_settings(&self, ns: &Name, name: &Name) -> OpsResult<SettingsView> {
        let record = self.script(ns, name).await?;
        Ok(self.settings_view(&record).await)
    }

    /// `isolation = "reuse"` on a component that cannot be reused is
    /// served fresh; the caller is told why (not only the server log).
    async fn settings_view(&self, record: &ScriptRecord) -> SettingsView {
        let settings = ScriptSettings::of(record);
        let mut warnings = Vec::new();
        if settings.isolation.reuse()
            && let Ok(worker) = self.runtime.worker(&record.namespace, &record.name).await
            && let Some(reason) = worker.reuse_refused
        {
            warnings.push(format!(
                "settings.isolation \"reuse\" is stored but not applied: {reason}; \
                 every request gets a fresh instance"
            ));
        }
        SettingsView { settings, warnings }
    }

    /// Applies a JSON merge patch to a script's settings (validated as a
    /// whole before anything is stored).
    pub async fn patch_script_settings(
        &self,
        ns: &Name,
        name: &Name,
        patch: serde_json::Value,
    ) -> OpsResult<SettingsView> {
        let record = self
            .update_script(ns, name, OpsError::Metadata, move |record| {
                let settings = ScriptSettings::of(record).patched(&patch)?;
                if let Some(clash) = settings
                    .vars
                    .keys()
                    .find(|k| record.secrets.contains_key(*k))
                {
                    return Err(format!("{clash:?} is already a secret of this script").into());
                }
                settings.apply_to(record);
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, script = %name, "settings updated");
        Ok(self.settings_view(&record).await)
    }

    /// Replaces a script's tags (duplicates dropped).
    pub async fn set_tags(
        &self,
        ns: &Name,
        name: &Name,
        tags: Vec<String>,
    ) -> OpsResult<Vec<String>> {
        validate_tags(&tags)?;
        let mut unique: Vec<String> = Vec::new();
        for tag in tags {
            if !unique.contains(&tag) {
                unique.push(tag);
            }
        }
        self.change_tags(ns, name, move |current| *current = unique.clone())
            .await
    }

    /// Adds one tag to a script.
    pub async fn add_tag(&self, ns: &Name, name: &Name, tag: String) -> OpsResult<Vec<String>> {
        validate_tag(&tag)?;
        self.change_tags(ns, name, move |current| {
            if !current.contains(&tag) {
                current.push(tag.clone());
            }
        })
        .await
    }

    /// Removes one tag from a script.
    pub async fn remove_tag(&self, ns: &Name, name: &Name, tag: String) -> OpsResult<Vec<String>> {
        self.change_tags(ns, name, move |current| current.retain(|t| *t != tag))
            .await
    }

    async fn change_tags(
        &self,
        ns: &Name,
        name: &Name,
        mut change: impl FnMut(&mut Vec<String>) + Send + 'static,
    ) -> OpsResult<Vec<String>> {
        let record = self
            .update_script(ns, name, OpsError::Invalid, move |record| {
                change(&mut record.tags);
                validate_tags(&record.tags)
            })
            .await?;
        Ok(record.tags)
    }

    /// The names of a script's secrets (values are never returned).
    pub async fn secret_names(&self, ns: &Name, name: &Name) -> OpsResult<Vec<String>> {
        Ok(self.script(ns, name).await?.secrets.into_keys().collect())
    }

    /// Sets a secret: a write-only environment variable, kept across
    /// redeploys, never logged; a name cannot be both a var and a secret.
    pub async fn put_secret(
        &self,
        ns: &Name,
        name: &Name,
        key: String,
        value: String,
    ) -> OpsResult<()> {
        validate_var_name(&key)?;
        if value.contains('\0') {
            return Err(Invalid(format!("secret {key:?} contains a NUL character")).into());
        }
        let secret = key.clone();
        self.update_script(ns, name, OpsError::Invalid, move |record| {
            if record.vars.contains_key(&key) {
                return Err(format!(
                    "{key:?} is already a var of this script; remove the var first"
                )
                .into());
            }
            record.secrets.insert(key.clone(), value.clone());
            let total: usize = record.secrets.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > MAX_VARS_BYTES {
                return Err(
                    format!("secrets total {total} bytes; the limit is {MAX_VARS_BYTES}").into(),
                );
            }
            Ok(())
        })
        .await?;
        tracing::info!(namespace = %ns, script = %name, %secret, "secret set");
        Ok(())
    }

    /// Removes a secret.
    pub async fn delete_secret(&self, ns: &Name, name: &Name, key: String) -> OpsResult<()> {
        let secret = key.clone();
        let missing = OpsError::NotFound {
            what: "secret",
            name: key.clone(),
        };
        self.update_script(
            ns,
            name,
            move |_| missing,
            move |record| match record.secrets.remove(&key) {
                Some(_) => Ok(()),
                None => Err(Invalid::from("no such secret")),
            },
        )
        .await?;
        tracing::info!(namespace = %ns, script = %name, %secret, "secret deleted");
        Ok(())
    }
}
