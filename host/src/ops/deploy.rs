//! Deploying a script: validate the metadata, compile and check the
//! component (unless this engine compiled identical bytes before), store
//! bytes, record and artifact in one durable write, evict the old version.
//! A plain JavaScript upload is first built into a component on this host
//! (`crate::js`); nothing is stored when that build fails.

use sha2::{Digest, Sha256};

use super::{Ops, OpsError, OpsResult};
use crate::base::Invalid;
use crate::base::metadata::{ScriptMetadata, validate_var_name};
use crate::base::names::Name;
use crate::js::{JsBuild, JsBundle, JsError};
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
        if metadata.main_module.is_some() || metadata.kv_bindings.is_some() {
            return Err(OpsError::Metadata(Invalid::from(
                "metadata.main_module and metadata.kv_bindings apply to JavaScript uploads, not components",
            )));
        }
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

/// A new version of a script written in plain JavaScript.
#[derive(Debug, Clone, Default)]
pub struct JsUpload {
    /// The modules and bindings.
    pub bundle: JsBundle,
    /// Tags, vars, limits, egress (as for a component upload).
    pub metadata: ScriptMetadata,
    /// Secrets set together with this version (Cloudflare's
    /// `secret_text` bindings); others are kept.
    pub secrets: Vec<(String, String)>,
}

/// A deployed JavaScript version and how its build went.
#[derive(Debug, Clone)]
pub struct JsDeploy {
    /// The stored script.
    pub record: ScriptRecord,
    /// The build (component, timings, what the top level printed).
    pub build: JsBuild,
}

impl Ops {
    /// Builds a plain JavaScript upload into a component on this host,
    /// then deploys it like any component; with `secrets`, sets them.
    /// A script that does not build (syntax error, a throw or a runaway
    /// top level, a missing module) stores nothing.
    pub async fn deploy_js(&self, ns: &Name, name: &Name, upload: JsUpload) -> OpsResult<JsDeploy> {
        let JsUpload {
            bundle,
            mut metadata,
            secrets,
        } = upload;
        // Carried by the bundle; the component deploy refuses them.
        metadata.main_module = None;
        metadata.kv_bindings = None;
        metadata.validate().map_err(OpsError::Metadata)?;
        for (key, value) in &secrets {
            validate_var_name(key)?;
            if value.contains('\0') {
                return Err(Invalid(format!("secret {key:?} contains a NUL character")).into());
            }
        }
        if let Some(vars) = &metadata.vars {
            for binding in &bundle.kv_bindings {
                if vars.contains_key(binding) {
                    return Err(Invalid(format!(
                        "{binding:?} is both a var and a kv_namespace binding"
                    ))
                    .into());
                }
            }
            for (key, _) in &secrets {
                if vars.contains_key(key) {
                    return Err(Invalid(format!("{key:?} is both a var and a secret")).into());
                }
            }
        }
        let js = self.js.as_ref().ok_or_else(|| {
            JsError::Unavailable("this host was started without a JS engine (Ops::with_js)".into())
        })?;
        let n = ns.clone();
        self.with_store(move |store| match store.get_namespace(&n)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NamespaceNotFound(n).into()),
        })
        .await?;
        let build = js.build(bundle).await?;
        let record = self
            .deploy(
                ns,
                name,
                Upload {
                    component: build.component.clone(),
                    metadata,
                },
            )
            .await?;
        let mut record = record;
        if !secrets.is_empty() {
            for (key, value) in secrets {
                self.put_secret(ns, name, key, value).await?;
            }
            record = self.script(ns, name).await?;
        }
        tracing::info!(namespace = %ns, script = %name, init_ms = build.timings.init_ms,
            snapshot_ms = build.timings.snapshot_ms, assemble_ms = build.timings.assemble_ms,
            snapshot_bytes = build.snapshot_bytes, "built JavaScript");
        Ok(JsDeploy { record, build })
    }
}
