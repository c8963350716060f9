//! Deploying a script: validate the metadata, compile and check the
//! component (unless this engine compiled identical bytes before), store
//! bytes, record and artifact in one durable write, evict the old version.

use sha2::{Digest, Sha256};

use super::{Ops, OpsError, OpsResult};
use crate::base::Invalid;
use crate::base::metadata::ScriptMetadata;
use crate::base::names::Name;
use crate::store::{NewScript, ScriptRecord, StoreError};

/// A new version of a script.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The component bytes.
    pub component: Vec<u8>,
    /// What the upload says beyond its code; each field left out keeps
    /// the previous version's.
    pub metadata: ScriptMetadata,
}

impl Ops {
    /// Validates, compiles and durably stores a new version of `name` in
    /// `ns`; the next request runs it.
    pub async fn deploy(&self, ns: &Name, name: &Name, upload: Upload) -> OpsResult<ScriptRecord> {
        let Upload {
            component,
            metadata,
        } = upload;
        metadata.validate().map_err(OpsError::Metadata)?;
        if component.is_empty() {
            return Err(Invalid::from("the component is empty").into());
        }
        // Fail fast before spending CPU on compilation.
        let n = ns.clone();
        self.with_store(move |store| match store.get_namespace(&n)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NamespaceNotFound(n).into()),
        })
        .await?;
        let sha256 = hex::encode(Sha256::digest(&component));
        let runtime = self.runtime.clone();
        let digest = sha256.clone();
        let (component, compiled) = crate::store::blocking(move || {
            // Identical bytes were validated and compiled before (platforms
            // deploy one template for many customers): this engine's
            // artifact is stored, so there is nothing to compile.
            if runtime.has_artifact(&digest) {
                return Ok::<_, OpsError>((component, None));
            }
            let compiled = runtime.compile_upload(&component)?;
            Ok((component, Some(compiled)))
        })
        .await?;
        let script = NewScript {
            sha256,
            content: component,
            tags: metadata.tags,
            vars: metadata.vars,
            limits: metadata.limits,
            egress: metadata.egress,
            artifact: compiled.map(|c| (c.engine_hash, c.artifact)),
        };
        let (n, s) = (ns.clone(), name.clone());
        let record = self
            .with_store(move |store| Ok(store.put_script(&n, &s, script)?))
            .await?;
        self.script_changed(ns, name);
        tracing::info!(namespace = %ns, script = %name, version = record.version,
            sha256 = %record.sha256, "deployed");
        Ok(record)
    }
}
