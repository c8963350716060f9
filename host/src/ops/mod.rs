//! The operations layer: every change to namespaces and scripts, and what
//! must follow it, in one place for every caller — the admin API, the
//! embedding API ([`crate::Berth`]), the CLI (through the admin API), the
//! Cloudflare-shaped API and the dashboard.
//!
//! An operation validates its input, runs the store calls on a blocking
//! thread ([`crate::store::blocking`]), and then drops what the runtime had
//! loaded from the old records: **eviction is this layer's job**, never a
//! caller's memory. Changes other hosts make to a shared store arrive as
//! [`StoreChange`]s and take the same path ([`Ops::follow_changes`]).
//!
//! Reads go through here too, so every caller sees the same errors
//! ([`OpsError`]). This layer knows nothing of HTTP: the admin API maps
//! an [`OpsError`] to its status and code in one place.

mod assets;
mod cluster;
mod deploy;
mod hostnames;
mod kv;
mod namespaces;
mod scripts;

use std::sync::Arc;

pub use deploy::{JsDeploy, JsUpload, Upload};
pub use namespaces::NamespaceInfo;
pub use scripts::SettingsView;

use crate::base::Invalid;
use crate::base::names::Name;
use crate::js::{JsEngine, JsError};
use crate::runtime::{CompileError, Runtime};
use crate::store::{NamespaceStore, StoreChange, StoreError};

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Upload metadata or a settings patch is invalid; names the key.
    #[error("{0}")]
    Metadata(#[source] Invalid),
    /// Any other input is invalid (a secret's name, a tag, a manifest).
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The uploaded component cannot serve.
    #[error(transparent)]
    Component(#[from] CompileError),
    /// A plain JavaScript upload did not build.
    #[error(transparent)]
    Js(#[from] JsError),
    /// No such script.
    #[error("script {script:?} does not exist in namespace {namespace:?}")]
    ScriptNotFound {
        /// Its namespace.
        namespace: Name,
        /// The script.
        script: Name,
    },
    /// No such secret, hostname or key.
    #[error("no {what} {name:?}")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The server's default namespace cannot be deleted.
    #[error("namespace {0:?} is the server's default_namespace and cannot be deleted")]
    DefaultNamespace(Name),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of an operation.
pub type OpsResult<T> = Result<T, OpsError>;

/// The operations over one runtime and its store.
#[derive(Clone)]
pub struct Ops {
    runtime: Arc<Runtime>,
    default_namespace: Name,
    js: Option<Arc<JsEngine>>,
}

impl Ops {
    /// Operations over `runtime`'s store; `default_namespace` can never be
    /// deleted.
    pub fn new(runtime: Arc<Runtime>, default_namespace: Name) -> Self {
        Self {
            runtime,
            default_namespace,
            js: None,
        }
    }

    /// The same operations, building plain JavaScript uploads with `js`.
    pub fn with_js(mut self, js: Arc<JsEngine>) -> Self {
        self.js = Some(js);
        self
    }

    /// The JS engine, if this host builds plain JavaScript.
    pub fn js(&self) -> Option<&Arc<JsEngine>> {
        self.js.as_ref()
    }

    /// The runtime (for what only it knows: stats, metrics, the tail).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The namespace the built-in router serves.
    pub fn default_namespace(&self) -> &Name {
        &self.default_namespace
    }

    fn store(&self) -> Arc<dyn NamespaceStore> {
        self.runtime.store().clone()
    }

    /// Runs `work` with the store on a blocking thread.
    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn NamespaceStore) -> OpsResult<T> + Send + 'static,
    ) -> OpsResult<T> {
        let store = self.store();
        crate::store::blocking(move || work(store.as_ref())).await
    }

    /// Drops what the runtime loaded from records that changed: the one
    /// place eviction happens, for this host's writes and other hosts'.
    fn changed(&self, change: StoreChange) {
        match change {
            StoreChange::Script { namespace, name } => self.runtime.evict(&namespace, &name),
            StoreChange::Namespace(namespace) => self.runtime.evict_namespace(&namespace),
        }
    }

    fn script_changed(&self, namespace: &Name, name: &Name) {
        self.changed(StoreChange::Script {
            namespace: namespace.clone(),
            name: name.clone(),
        });
    }

    /// Applies changes to a shared store (other hosts', and the echo of
    /// this host's own) for as long as the runtime lives. A notice can
    /// arrive after a request already loaded the new record, so it evicts
    /// only workers not built from the records the store holds now. A
    /// lagging receiver (a burst of changes) evicts everything rather than
    /// serve a stale version.
    pub async fn follow_changes(
        runtime: std::sync::Weak<Runtime>,
        default_namespace: Name,
        mut changes: tokio::sync::broadcast::Receiver<StoreChange>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = changes.recv().await;
            let Some(runtime) = runtime.upgrade() else {
                break;
            };
            let ops = Ops::new(runtime, default_namespace.clone());
            match change {
                Ok(change) => {
                    // Late by nature: a request may have loaded the new
                    // record already, so only stale workers go (reading the
                    // store, hence off the async threads).
                    let runtime = ops.runtime.clone();
                    let followed = crate::store::blocking(move || {
                        match change {
                            StoreChange::Script { namespace, name } => {
                                runtime.evict_stale(&namespace, &name)
                            }
                            StoreChange::Namespace(namespace) => {
                                runtime.evict_namespace_stale(&namespace)
                            }
                        }
                        Ok::<_, StoreError>(())
                    })
                    .await;
                    if let Err(error) = followed {
                        tracing::warn!(%error, "applying a store change failed; dropping every cached worker");
                        ops.runtime.evict_all();
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "store changes arrived faster than applied; dropping every cached worker"
                    );
                    ops.runtime.evict_all();
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
}

/// The error for a missing script.
fn no_script(namespace: &Name, script: &Name) -> OpsError {
    OpsError::ScriptNotFound {
        namespace: namespace.clone(),
        script: script.clone(),
    }
}
