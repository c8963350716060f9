//! The loader: from the store to a [`Worker`] ready to serve.
//!
//! It owns the linkers, the worker cache (one slot per script and role,
//! concurrent first requests sharing one load), the pre-instantiated
//! components shared by every script with identical bytes (single flight
//! per content and role), Cranelift's incremental cache, and the cache of
//! namespaces' trusted mode. A load prefers the stored artifact this
//! engine built; without one it compiles and stores the artifact. Tenant
//! bytes are only ever compiled, never deserialized.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::borrow::Cow;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::cache::WorkerCache;
use super::compile::{self, CompileError};
use super::compile_cache::CompileCache;
use super::gates::Gates;
use super::host_modules::HostModules;
use super::reuse;
use super::state::{self, WorkerState};
use super::stats::Counters;
use super::worker::BuiltFrom;
use super::worker::Worker;
use crate::base::Role;
use crate::base::error::WorkerError;
use crate::base::isolation::{Isolation, IsolationMode};
use crate::base::names::Name;
use crate::capabilities::WorkerSpec;
use crate::limits::ScriptLimits;
use crate::observe::metrics::Metrics;
use crate::store::{NamespaceStore, ScriptRecord, StoreError};

/// Per content and role, the lock a load holds (single flight).
type Flights = HashMap<(String, Role), Arc<Mutex<()>>>;

/// An upload that passed validation, with the artifact to store beside it.
pub struct CompiledUpload {
    /// Engine compatibility hash the artifact is valid for.
    pub engine_hash: String,
    /// Serialized precompiled component.
    pub artifact: Vec<u8>,
}

/// Loads workers from the store.
pub struct Loader {
    engine: Engine,
    user_linker: Linker<WorkerState>,
    dispatch_linker: Linker<WorkerState>,
    engine_hash: String,
    store: Arc<dyn NamespaceStore>,
    cache: WorkerCache,
    compile_cache: Option<Arc<CompileCache>>,
    prepared: Mutex<lru::LruCache<(String, Role), ProxyPre<WorkerState>>>,
    /// One load per content and role at a time (see [`Loader::prepared`]).
    flights: Mutex<Flights>,
    trusted: Mutex<HashMap<Name, bool>>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
    host_modules: Arc<HostModules>,
    /// Workers loaded from files (`[[dispatch]]` and outbound workers),
    /// which live in the dispatch table, not the cache: their warm
    /// instances are counted and reaped like any other.
    files: Mutex<Vec<std::sync::Weak<Worker>>>,
}

/// How long a load waits for a host module still being prepared (the JS
/// engine compiling at first start).
const HOST_MODULE_WAIT: Duration = Duration::from_secs(600);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Loader {
    /// A loader for `engine` over `store`, caching up to `capacity` workers.
    pub fn new(
        engine: &Engine,
        store: Arc<dyn NamespaceStore>,
        capacity: usize,
        compile_cache: Option<Arc<CompileCache>>,
        counters: Arc<Counters>,
        metrics: Arc<Metrics>,
        host_modules: Arc<HostModules>,
    ) -> anyhow::Result<Self> {
        let capacity = std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(Self {
            engine: engine.clone(),
            user_linker: state::build_linker(engine, Role::User)?,
            dispatch_linker: state::build_linker(engine, Role::Dispatch)?,
            engine_hash: super::engine::compatibility_hash(engine),
            store,
            cache: WorkerCache::new(capacity.get()),
            compile_cache,
            prepared: Mutex::new(lru::LruCache::new(capacity)),
            flights: Mutex::default(),
            trusted: Mutex::default(),
            counters,
            metrics,
            host_modules,
            files: Mutex::default(),
        })
    }

    /// Every loaded worker still in use: the cache's and the file-based
    /// ones.
    pub fn loaded_workers(&self) -> Vec<Arc<Worker>> {
        let mut all = self.cache.loaded_workers();
        let mut files = lock(&self.files);
        files.retain(|w| w.strong_count() > 0);
        all.extend(files.iter().filter_map(std::sync::Weak::upgrade));
        all
    }

    /// The worker cache.
    pub fn cache(&self) -> &WorkerCache {
        &self.cache
    }

    /// Functions the incremental compile cache supplied and missed.
    pub fn compile_cache_stats(&self) -> (u64, u64) {
        self.compile_cache.as_ref().map_or((0, 0), |c| c.stats())
    }

    fn linker(&self, role: Role) -> &Linker<WorkerState> {
        match role {
            Role::User => &self.user_linker,
            Role::Dispatch => &self.dispatch_linker,
        }
    }

    /// The linker for `component` in `role`: the role's own, plus the host
    /// modules it imports (a JS component imports the engine's code).
    fn linker_for(
        &self,
        role: Role,
        component: &Component,
    ) -> Result<Cow<'_, Linker<WorkerState>>, CompileError> {
        let wanted: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::Module(_)))
            .map(|(name, _)| name.to_owned())
            .collect();
        if wanted.is_empty() {
            return Ok(Cow::Borrowed(self.linker(role)));
        }
        let mut linker = self.linker(role).clone();
        for name in wanted {
            let module = self.host_modules.get(&name, HOST_MODULE_WAIT).ok_or_else(|| {
                CompileError::Link(format!(
                    "the component imports the core module {name:?}, which this host does not provide{}",
                    if name.starts_with("berth-js-engine-") {
                        " (a JS script built by a host with another JS engine, or this host has none: see [js] engine_dir)"
                    } else {
                        ""
                    }
                ))
            })?;
            linker
                .root()
                .module(&name, &module)
                .map_err(|e| CompileError::Link(format!("{e:#}")))?;
        }
        Ok(Cow::Owned(linker))
    }

    /// Whether this engine's artifact for content `sha256` is stored (so the
    /// content was already validated and compiled).
    pub fn has_artifact(&self, sha256: &str) -> bool {
        matches!(self.store.has_artifact(sha256, &self.engine_hash), Ok(true))
    }

    /// Validates and compiles an upload (blocking). A component is accepted
    /// if it links as a user worker, or as a dispatch worker (so a platform
    /// can keep its dispatch worker in the store).
    pub fn compile_upload(&self, bytes: &[u8]) -> Result<CompiledUpload, CompileError> {
        let started = Instant::now();
        let component = compile::compile(&self.engine, bytes)?;
        if let Err(user_error) =
            compile::prepare(&*self.linker_for(Role::User, &component)?, &component)
        {
            match (
                &user_error,
                compile::prepare(&*self.linker_for(Role::Dispatch, &component)?, &component),
            ) {
                (_, Ok(_)) => {}
                (CompileError::Link(_), Err(CompileError::WrongWorld(e))) => {
                    return Err(CompileError::WrongWorld(e));
                }
                _ => return Err(user_error),
            }
        }
        Counters::bump(&self.counters.compiles);
        self.metrics.compiled(started.elapsed().as_secs_f64());
        let artifact = component
            .serialize()
            .map_err(|e| CompileError::Invalid(format!("cannot serialize: {e:#}")))?;
        tracing::info!(
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled uploaded component"
        );
        Ok(CompiledUpload {
            engine_hash: self.engine_hash.clone(),
            artifact,
        })
    }

    /// The loaded worker for a script in `role`, loading it on first use
    /// (concurrent first requests share one load; a failed load is not
    /// cached).
    pub async fn worker(
        self: &Arc<Self>,
        namespace: &Name,
        script: &Name,
        role: Role,
        gates: &Arc<Gates>,
    ) -> Result<Arc<Worker>, WorkerError> {
        let (slot, hit) = self.cache.slot(namespace, script, role);
        let counter = match hit {
            true => &self.counters.cache_hits,
            false => &self.counters.cache_misses,
        };
        Counters::bump(counter);
        self.metrics.cache_lookup(hit);
        let worker = slot
            .get_or_try_init(|| {
                let (this, gates) = (self.clone(), gates.clone());
                let (ns, name) = (namespace.clone(), script.clone());
                async move {
                    crate::store::blocking(move || this.load(&ns, &name, role, &gates)).await
                }
            })
            .await;
        let worker = worker.cloned();
        if !hit {
            self.cache.finished(namespace, script, role, &slot);
        }
        worker
    }

    /// Loads a script from the store (blocking).
    fn load(
        &self,
        namespace: &Name,
        name: &Name,
        role: Role,
        gates: &Gates,
    ) -> Result<Arc<Worker>, WorkerError> {
        let not_found =
            || WorkerError::NotFound(format!("no script {name:?} in namespace {namespace:?}"));
        let record = self
            .store
            .get_script(namespace, name)?
            .ok_or_else(not_found)?;
        let namespace_record = self.store.get_namespace(namespace)?.ok_or_else(not_found)?;
        let egress_rules: Vec<_> = [
            namespace_record.egress.compile("namespace"),
            record.egress.compile("script"),
        ]
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| WorkerError::Internal(format!("stored egress rules: {e}")))?;
        let pre = self.prepared(&record, role)?;
        let (isolation, reuse_refused) = self.isolation_of(&record);
        let built_from = BuiltFrom {
            script: record.clone(),
            namespace: namespace_record,
        };
        Ok(Arc::new(Worker {
            spec: WorkerSpec {
                namespace: namespace.clone(),
                name: name.clone(),
                kv: Some(record.kv_bucket()),
                egress_rules: Arc::new(egress_rules),
            },
            pre,
            env: record
                .vars
                .iter()
                .chain(record.secrets.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits: record.limits,
            isolation,
            pool: Default::default(),
            assets: Arc::new(record.assets.clone()),
            asset_config: record.asset_config.clone(),
            admission: gates.gate(namespace, name, role, &record.limits),
            reuse_refused,
            series: Default::default(),
            built_from: Some(built_from),
        }))
    }

    /// The isolation a script is served with: its setting, unless it asks
    /// for reuse and its component cannot take a second request (then
    /// fresh, and why).
    fn isolation_of(&self, record: &ScriptRecord) -> (Isolation, Option<&'static str>) {
        let mut isolation = record.isolation.clone();
        if !isolation.reuse() {
            return (isolation, None);
        }
        let content = self
            .store
            .script_content(&record.namespace, &record.name)
            .ok()
            .flatten();
        let Some(reason) = content.as_deref().and_then(reuse::reuse_blocker) else {
            return (isolation, None);
        };
        tracing::warn!(namespace = %record.namespace, script = %record.name, reason,
            "settings.isolation \"reuse\" ignored: serving a fresh instance per request");
        isolation.mode = IsolationMode::Fresh;
        (isolation, Some(reason))
    }

    /// The pre-instantiated component for a script's content in `role`,
    /// shared by every script with identical bytes: platforms deploy one
    /// template for many customers, and each copy would otherwise hold its
    /// own deserialized code.
    fn prepared(
        &self,
        record: &ScriptRecord,
        role: Role,
    ) -> Result<ProxyPre<WorkerState>, WorkerError> {
        let key = (record.sha256.clone(), role);
        if let Some(pre) = lock(&self.prepared).get(&key) {
            return Ok(pre.clone());
        }
        // Scripts with the same bytes loading at once (a restart's preload
        // and a first request, or many customers' copies of one template)
        // wait for one load and share it instead of each deserializing
        // the artifact.
        let flight = lock(&self.flights).entry(key.clone()).or_default().clone();
        let _one_at_a_time = lock(&flight);
        if let Some(pre) = lock(&self.prepared).get(&key) {
            return Ok(pre.clone());
        }
        let prepared = self.prepare_uncached(record, role);
        lock(&self.flights).remove(&key);
        let pre = prepared?;
        lock(&self.prepared).put(key, pre.clone());
        Ok(pre)
    }

    /// Loads (or compiles) the component of `record` for `role`.
    fn prepare_uncached(
        &self,
        record: &ScriptRecord,
        role: Role,
    ) -> Result<ProxyPre<WorkerState>, WorkerError> {
        let (namespace, name) = (&record.namespace, &record.name);
        let started = Instant::now();
        let artifact = self.store.get_artifact(&record.sha256, &self.engine_hash)?;
        let component = match artifact.map(|a| compile::load_artifact(&self.engine, &a)) {
            Some(Ok(component)) => {
                Counters::bump(&self.counters.artifact_loads);
                tracing::info!(%namespace, script = %name, version = record.version,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded precompiled artifact");
                component
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(%namespace, script = %name, error = %e, "stored artifact unusable; recompiling");
                }
                self.recompile(record)?
            }
        };
        compile::build_memory_image(&component, &format_args!("{namespace}/{name}"));
        let linker = self.linker_for(role, &component).map_err(|e| {
            WorkerError::Internal(format!("script {namespace}/{name} cannot be linked: {e}"))
        })?;
        compile::prepare(&linker, &component).map_err(|e| {
            WorkerError::Internal(format!(
                "script {namespace}/{name} cannot run as a {} worker: {e}",
                match role {
                    Role::User => "user",
                    Role::Dispatch => "dispatch",
                }
            ))
        })
    }

    /// Compiles a stored script that has no artifact for this engine, and
    /// stores the artifact.
    fn recompile(
        &self,
        record: &ScriptRecord,
    ) -> Result<wasmtime::component::Component, WorkerError> {
        let bytes = self
            .store
            .script_content(&record.namespace, &record.name)?
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("{}/{}", record.namespace, record.name),
                message: "script content vanished".into(),
            })?;
        let component = compile::compile(&self.engine, &bytes)
            .map_err(|e| WorkerError::Internal(format!("recompiling stored component: {e}")))?;
        Counters::bump(&self.counters.compiles);
        tracing::info!(namespace = %record.namespace, script = %record.name,
            "compiled stored component (no artifact for this engine)");
        if let Ok(artifact) = component.serialize() {
            self.store
                .put_artifact(&record.sha256, &self.engine_hash, &artifact)?;
        }
        Ok(component)
    }

    /// Compiles a platform component from a file the operator configured —
    /// a dispatch worker or an outbound worker (blocking). `label` (the
    /// namespace it serves) names it in logs; `vars` become its
    /// environment. No egress rules apply beyond the host policy.
    pub fn load_file(
        &self,
        path: &std::path::Path,
        label: &Name,
        vars: &std::collections::BTreeMap<String, String>,
        role: Role,
        isolation: Isolation,
        gates: &Gates,
    ) -> Result<Arc<Worker>, CompileError> {
        let bytes = std::fs::read(path)
            .map_err(|e| CompileError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        let mut isolation = isolation;
        let mut reuse_refused = None;
        if isolation.reuse()
            && let Some(reason) = reuse::reuse_blocker(&bytes)
        {
            tracing::warn!(path = %path.display(), reason,
                "isolation \"reuse\" ignored: serving a fresh instance per request");
            isolation.mode = IsolationMode::Fresh;
            reuse_refused = Some(reason);
        }
        let component = compile::compile(&self.engine, &bytes)?;
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
        compile::build_memory_image(&component, &path.display());
        let pre = compile::prepare(&*self.linker_for(role, &component)?, &component)?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| Name::new(&s.to_ascii_lowercase().replace('_', "-")).ok())
            .unwrap_or_else(|| label.clone());
        let worker = Arc::new(Worker {
            spec: WorkerSpec {
                namespace: label.clone(),
                name: stem,
                kv: None,
                egress_rules: Arc::new(Vec::new()),
            },
            pre,
            env: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            limits: ScriptLimits::default(),
            isolation,
            pool: Default::default(),
            assets: Arc::new(Default::default()),
            asset_config: Default::default(),
            admission: Arc::new(gates.for_limits(&ScriptLimits::default())),
            reuse_refused,
            series: Default::default(),
            built_from: None,
        });
        lock(&self.files).push(Arc::downgrade(&worker));
        Ok(worker)
    }

    /// Whether a namespace is trusted (cached; a missing namespace is not).
    pub fn namespace_trusted(&self, namespace: &Name) -> bool {
        if let Some(trusted) = lock(&self.trusted).get(namespace) {
            return *trusted;
        }
        let trusted = matches!(self.store.get_namespace(namespace), Ok(Some(ns)) if ns.trusted);
        lock(&self.trusted).insert(namespace.clone(), trusted);
        trusted
    }

    /// Forgets a script's loaded worker (redeploy, delete, settings).
    pub fn evict(&self, namespace: &Name, script: &Name) {
        self.cache.evict(namespace, script);
    }

    /// Forgets a script's workers unless they are built from the records
    /// the store holds now (a store that cannot say: forgets them).
    /// Whether a loaded worker was kept.
    pub fn evict_stale(&self, namespace: &Name, script: &Name) -> bool {
        // The namespace is read only for a script that still exists.
        let current = match self.store.get_script(namespace, script) {
            Ok(Some(record)) => self
                .store
                .get_namespace(namespace)
                .map(|ns| ns.map(|ns| (record, ns))),
            other => other.map(|_| None),
        };
        match current {
            Ok(Some((script_record, namespace_record))) => {
                self.cache.evict_unless(namespace, script, |worker| {
                    worker.built_from_current(Some(&script_record), &namespace_record)
                })
            }
            Ok(None) | Err(_) => {
                self.cache.evict(namespace, script);
                false
            }
        }
    }

    /// Forgets a namespace's cached mode, and its workers unless they are
    /// built from the namespace record the store holds now.
    pub fn evict_namespace_stale(&self, namespace: &Name) {
        lock(&self.trusted).remove(namespace);
        match self.store.get_namespace(namespace) {
            Ok(Some(record)) => self.cache.evict_namespace_unless(namespace, |worker| {
                worker.built_from_current(None, &record)
            }),
            Ok(None) | Err(_) => self.cache.evict_namespace(namespace),
        }
    }

    /// Forgets every loaded worker of a namespace and its cached mode.
    pub fn evict_namespace(&self, namespace: &Name) {
        lock(&self.trusted).remove(namespace);
        self.cache.evict_namespace(namespace);
    }

    /// Forgets every loaded worker and cached mode (changes this host
    /// could not follow one by one).
    pub fn evict_all(&self) {
        lock(&self.trusted).clear();
        self.cache.clear();
    }

    /// Forgets everything loaded, compiled code included (shutdown).
    pub fn clear(&self) {
        self.evict_all();
        lock(&self.prepared).clear();
    }
}
