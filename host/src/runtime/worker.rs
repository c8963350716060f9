//! A loaded worker: a script (or a platform component from a file) ready to
//! serve — its pre-instantiated component and everything an invocation
//! derives from its record. Plain data, built by the loader.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::reuse::ReusePool;
use super::state::WorkerState;
use crate::base::isolation::Isolation;
use crate::base::names::Name;
use crate::capabilities::{WorkerRef, WorkerSpec};
use crate::limits::{Admission, ScriptLimits};
use crate::observe::metrics::{Metrics, ScriptSeries};
use crate::store::{AssetConfig, AssetEntry, NamespaceRecord, ScriptRecord};

/// A script ready to serve.
pub struct Worker {
    /// What capabilities know of it (names, KV bucket, egress rules).
    pub spec: WorkerSpec,
    /// Pre-instantiated component.
    pub pre: ProxyPre<WorkerState>,
    /// Environment variables the guest sees (vars and secrets).
    pub env: Vec<(String, String)>,
    /// The script's own limits.
    pub limits: ScriptLimits,
    /// Fresh instance per request, or warm reuse.
    pub isolation: Isolation,
    /// Warm instances (only used with `isolation.mode = "reuse"`).
    pub pool: ReusePool,
    /// Static assets of the script.
    pub assets: Arc<BTreeMap<String, AssetEntry>>,
    /// How its assets are served.
    pub asset_config: AssetConfig,
    /// Admission control (`max_concurrency`), shared with every other load
    /// of the same script (see the runtime's gates).
    pub admission: Arc<Admission>,
    /// Why `settings.isolation = "reuse"` is not applied to this script,
    /// if it asked for reuse and its component cannot be reused.
    pub reuse_refused: Option<&'static str>,
    /// Its metric series and history entry, looked up on its first
    /// invocation (see [`Worker::series`]).
    pub series: OnceLock<ScriptSeries>,
    /// The records a stored script was built from (`None`: a platform
    /// component from a file), so a late change notice can tell whether
    /// this worker is already current ([`Worker::built_from_current`]).
    pub built_from: Option<BuiltFrom>,
}

/// The store records a worker derives everything from.
#[derive(Debug)]
pub struct BuiltFrom {
    /// The script's record (component hash, vars, secrets, limits,
    /// egress, assets, isolation; a script created again has a new one).
    pub script: ScriptRecord,
    /// Its namespace's record (egress rules, mode).
    pub namespace: NamespaceRecord,
}

impl Worker {
    /// Namespace of the script.
    pub fn namespace(&self) -> &Name {
        &self.spec.namespace
    }

    /// Script name.
    pub fn name(&self) -> &Name {
        &self.spec.name
    }

    /// Its metric series, looked up once: every invocation records through
    /// them without a lookup.
    pub fn series(&self, metrics: &Metrics) -> &ScriptSeries {
        self.series
            .get_or_init(|| metrics.series(self.spec.namespace.as_str(), self.spec.name.as_str()))
    }

    /// Whether this worker was built from exactly these records; with no
    /// script record, from this namespace record (after a change to the
    /// namespace alone). A file's component never was: it is not in the
    /// store.
    pub fn built_from_current(
        &self,
        script: Option<&ScriptRecord>,
        namespace: &NamespaceRecord,
    ) -> bool {
        self.built_from.as_ref().is_some_and(|built| {
            built.namespace == *namespace && script.is_none_or(|s| built.script == *s)
        })
    }

    /// This worker as capabilities see it.
    pub fn into_ref(self: Arc<Self>) -> WorkerRef {
        WorkerRef::new(self.spec.name.clone(), self)
    }
}
