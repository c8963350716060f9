//! The runtime: one shared Wasmtime engine serving every tenant.
//!
//! Owns the engine and its epoch ticker, the linker, and the cache of loaded
//! workers; knows how to validate an upload ([`Runtime::compile_upload`]),
//! find the worker for a script ([`Runtime::worker`]) and run a request
//! through it ([`Runtime::invoke`]). It never touches HTTP routing or the
//! admin API, and it never deserializes bytes a tenant supplied.

mod cache;
pub mod compile;
pub mod compile_cache;
pub mod config;
pub mod engine;
mod invoke;
pub mod reuse;
pub mod state;
pub mod stdio;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use compile::CompileError;
pub use config::RuntimeConfig;
pub use invoke::InvokeOptions;
pub use state::WorkerState;

use crate::base::error::WorkerError;
use crate::base::isolation::{Isolation, IsolationMode};
use crate::base::names::Name;
use crate::capabilities::http::Egress;
use crate::capabilities::{
    BoxFuture, CallOptions, Invoker, WorkerRef, WorkerRequest, WorkerResponse,
};
use crate::limits::{Admission, HostLimits, ScriptLimits};
use crate::observe::metrics::Metrics;
use crate::observe::tail::TailHub;
use crate::store::{Hostnames, NamespaceStore, ScriptRecord};
use cache::WorkerCache;
use engine::EpochTicker;

/// What a loaded component serves as; decides which imports it is linked
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A tenant's worker: `wasi:http/proxy` only.
    User,
    /// A platform's dispatch worker: also imports `berth:platform/dispatcher`.
    Dispatch,
}

/// A script ready to serve: its pre-instantiated component and the
/// per-invocation inputs derived from its metadata.
pub struct Worker {
    /// Namespace of the script.
    pub namespace: Name,
    /// Script name.
    pub name: Name,
    /// Pre-instantiated component.
    pub pre: ProxyPre<WorkerState>,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// The script's own limits.
    pub limits: ScriptLimits,
    /// Fresh instance per request, or warm reuse.
    pub isolation: Isolation,
    /// Warm instances (only used with `isolation.mode = "reuse"`).
    pub pool: reuse::ReusePool,
    /// Static assets of the script, and how to serve them.
    pub assets: Arc<std::collections::BTreeMap<String, crate::store::AssetEntry>>,
    /// Asset serving options.
    pub asset_config: crate::store::AssetConfig,
    /// Whether the worker is a stored script with its own KV bucket.
    pub kv_enabled: bool,
    /// Namespace and script egress rules, parsed.
    pub egress_rules: Arc<Vec<crate::base::egress_rules::CompiledRules>>,
    /// Admission control (`max_concurrency`), shared with every other load
    /// of the same script (see [`Runtime::gate`]).
    pub admission: Arc<Admission>,
    /// Why `settings.isolation = "reuse"` is not applied to this script,
    /// if it asked for reuse and its component cannot be reused.
    pub reuse_refused: Option<&'static str>,
}

/// Per content and role, the lock a load holds (single flight).
type PreparingMap = std::collections::HashMap<(String, Role), Arc<std::sync::Mutex<()>>>;

/// An upload that passed validation, with the artifact to store beside it.
pub struct CompiledUpload {
    /// Engine compatibility hash the artifact is valid for.
    pub engine_hash: String,
    /// Serialized precompiled component.
    pub artifact: Vec<u8>,
}

/// Monotonic counters describing the runtime's work since start-up.
#[derive(Default)]
pub struct Counters {
    compiles: AtomicU64,
    artifact_loads: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    wall_limit_hits: AtomicU64,
    cpu_limit_hits: AtomicU64,
    memory_limit_hits: AtomicU64,
    fuel_limit_hits: AtomicU64,
    overloaded: AtomicU64,
    request_body_limit_hits: AtomicU64,
    response_body_limit_hits: Arc<AtomicU64>,
}

impl Counters {
    fn response_body_limit_hits_handle(&self) -> Arc<AtomicU64> {
        self.response_body_limit_hits.clone()
    }
}

/// A snapshot of [`Counters`] plus pool occupancy, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeStats {
    /// Components compiled from source bytes (uploads and artifact misses).
    pub compiles: u64,
    /// Components loaded from stored precompiled artifacts.
    pub artifact_loads: u64,
    /// Requests whose worker was already loaded.
    pub cache_hits: u64,
    /// Requests that had to load their worker.
    pub cache_misses: u64,
    /// Invocations cut off by their wall-clock deadline.
    pub wall_limit_hits: u64,
    /// Invocations stopped for exceeding their CPU time.
    pub cpu_limit_hits: u64,
    /// Invocations that failed on their memory limit.
    pub memory_limit_hits: u64,
    /// Invocations stopped when their fuel ran out.
    pub fuel_limit_hits: u64,
    /// Requests refused with `overloaded` (admission queue or pool full).
    pub overloaded: u64,
    /// Requests refused for an oversized request body.
    pub request_body_limit_hits: u64,
    /// Responses cut off for an oversized body.
    pub response_body_limit_hits: u64,
    /// Workers currently loaded in memory.
    pub cached_workers: usize,
    /// Bytes the host holds for instances outside their linear memory
    /// (buffered bodies, KV values in flight, captured output), all
    /// instances together; see `limits::host_memory`.
    pub host_memory_bytes: u64,
    /// Functions the incremental compile cache supplied, since start.
    pub compile_cache_hits: u64,
    /// Functions compiled because the cache lacked them, since start.
    pub compile_cache_misses: u64,
    /// Pooling allocator occupancy.
    pub pool: PoolStats,
}

/// Pooling allocator slots in use.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// Component instances alive.
    pub component_instances: u64,
    /// Core instances alive.
    pub core_instances: u64,
    /// Linear memories in use.
    pub memories: usize,
    /// Tables in use.
    pub tables: usize,
    /// Fiber stacks in use.
    pub stacks: usize,
    /// Capacity: component instances.
    pub component_instances_capacity: u32,
}

/// The shared engine, linker and worker cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<WorkerState>,
    dispatch_linker: Linker<WorkerState>,
    engine_hash: String,
    store: Arc<dyn NamespaceStore>,
    cache: WorkerCache,
    /// Cranelift's incremental cache, if the host gave it a directory.
    compile_cache: Option<Arc<compile_cache::CompileCache>>,
    counters: Counters,
    limits: HostLimits,
    egress: Arc<Egress>,
    trusted: std::sync::Mutex<std::collections::HashMap<Name, bool>>,
    prepared: std::sync::Mutex<lru::LruCache<(String, Role), ProxyPre<WorkerState>>>,
    /// One load per content and role at a time (see [`Runtime::prepared`]).
    preparing: std::sync::Mutex<PreparingMap>,
    metrics: Arc<Metrics>,
    tail: Arc<TailHub>,
    stdio_capture_bytes: usize,
    /// Host memory charged by every instance's meter together.
    host_memory_total: Arc<AtomicU64>,
    instances_capacity: u32,
    ticker: std::sync::Mutex<Option<EpochTicker>>,
    closed: std::sync::atomic::AtomicBool,
    gates: std::sync::Mutex<std::collections::HashMap<(Name, Name, Role), Arc<Admission>>>,
    assets: crate::assets::AssetCache,
    heavy_lane: crate::limits::cpu::HeavyLane,
}

/// Bytes of static asset content kept in memory, shared by all scripts.
const ASSET_CACHE_BYTES: usize = 64 << 20;

impl Runtime {
    /// Builds the engine, linker and ticker.
    pub fn new(
        cfg: &RuntimeConfig,
        limits: HostLimits,
        egress: Arc<Egress>,
        store: Arc<dyn NamespaceStore>,
    ) -> anyhow::Result<Self> {
        let compile_cache = match &cfg.compile_cache_dir {
            Some(dir) => match compile_cache::CompileCache::open(dir) {
                Ok(cache) => Some(Arc::new(cache)),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error,
                        "cannot open the compile cache; compiling every upload from scratch");
                    None
                }
            },
            None => None,
        };
        let engine = engine::build_engine(cfg, limits.fuel.is_some(), compile_cache.clone())?;
        let linker = state::build_linker(&engine)?;
        let dispatch_linker = state::build_dispatch_linker(&engine)?;
        let ticker = EpochTicker::start(engine.clone(), Duration::from_millis(cfg.epoch_tick_ms));
        Ok(Self {
            engine_hash: engine::compatibility_hash(&engine),
            engine,
            linker,
            dispatch_linker,
            store,
            cache: WorkerCache::new(cfg.component_cache_size),
            compile_cache,
            counters: Counters::default(),
            limits,
            egress,
            trusted: Default::default(),
            preparing: Default::default(),
            prepared: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(cfg.component_cache_size)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            metrics: Arc::new(Metrics::new(cfg.max_script_series)),
            tail: Default::default(),
            stdio_capture_bytes: cfg.stdio_capture_kb << 10,
            host_memory_total: Arc::default(),
            instances_capacity: cfg.instances,
            ticker: std::sync::Mutex::new(Some(ticker)),
            closed: Default::default(),
            gates: Default::default(),
            assets: crate::assets::AssetCache::new(ASSET_CACHE_BYTES),
            heavy_lane: crate::limits::cpu::HeavyLane::new(match cfg.heavy_lanes {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
                n => n,
            }),
        })
    }

    /// The store this runtime loads scripts from.
    pub fn store(&self) -> &Arc<dyn NamespaceStore> {
        &self.store
    }

    fn linker(&self, role: Role) -> &Linker<WorkerState> {
        match role {
            Role::User => &self.linker,
            Role::Dispatch => &self.dispatch_linker,
        }
    }

    /// Whether this engine's precompiled artifact for content `sha256` is
    /// stored (so the content was already validated and compiled).
    pub fn has_artifact(&self, sha256: &str) -> bool {
        matches!(self.store.has_artifact(sha256, &self.engine_hash), Ok(true))
    }

    /// Validates and compiles an upload (blocking: run it off the reactor).
    ///
    /// A component is accepted if it links as a user worker, or as a dispatch
    /// worker (so a platform can keep its dispatch worker in the store).
    pub fn compile_upload(&self, bytes: &[u8]) -> Result<CompiledUpload, CompileError> {
        let started = Instant::now();
        let component = compile::compile(&self.engine, bytes)?;
        if let Err(user_error) = compile::prepare(&self.linker, &component) {
            match (
                &user_error,
                compile::prepare(&self.dispatch_linker, &component),
            ) {
                (_, Ok(_)) => {}
                (CompileError::Link(_), Err(CompileError::WrongWorld(e))) => {
                    return Err(CompileError::WrongWorld(e));
                }
                _ => return Err(user_error),
            }
        }
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
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

    /// The loaded user worker for a script, loading it on first use.
    pub async fn worker(
        self: &Arc<Self>,
        namespace: &Name,
        script: &Name,
    ) -> Result<Arc<Worker>, WorkerError> {
        self.worker_as(namespace, script, Role::User).await
    }

    /// The loaded worker for a script in `role`, loading it on first use.
    pub async fn worker_as(
        self: &Arc<Self>,
        namespace: &Name,
        script: &Name,
        role: Role,
    ) -> Result<Arc<Worker>, WorkerError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(WorkerError::Internal("the host is shutting down".into()));
        }
        let (slot, hit) = self.cache.slot(namespace, script, role);
        let counter = if hit {
            &self.counters.cache_hits
        } else {
            &self.counters.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.metrics.cache_lookup(hit);
        let worker = slot
            .get_or_try_init(|| {
                let this = self.clone();
                let (ns, name) = (namespace.clone(), script.clone());
                async move {
                    tokio::task::spawn_blocking(move || this.load(&ns, &name, role))
                        .await
                        .map_err(|e| WorkerError::Internal(format!("loader task failed: {e}")))?
                }
            })
            .await;
        match worker {
            Ok(worker) => Ok(worker.clone()),
            Err(error) => {
                // Failed loads are not cached: drop the empty slot.
                self.cache.evict_role(namespace, script, role);
                Err(error)
            }
        }
    }

    /// Shuts the runtime down: new requests are refused, loaded workers and
    /// their warm instances are forgotten, and the epoch thread stops (it
    /// holds the engine). In-flight invocations finish without preemption
    /// ticks but within their wall-clock deadline.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.cache.clear();
        self.prepared_lock().clear();
        self.trusted_cache().clear();
        let ticker = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(ticker);
    }

    #[cfg(test)]
    pub(crate) fn ticker_stop_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.ticker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.stop_flag())
            .unwrap_or_default()
    }

    /// Loads a script from the store: its artifact if one matches this
    /// engine, else a compile (whose artifact is then stored).
    fn load(&self, namespace: &Name, name: &Name, role: Role) -> Result<Arc<Worker>, WorkerError> {
        let internal = |e: &dyn std::fmt::Display| WorkerError::Internal(e.to_string());
        let not_found =
            || WorkerError::NotFound(format!("no script {name:?} in namespace {namespace:?}"));
        let record = self
            .store
            .get_script(namespace, name)
            .map_err(|e| internal(&e))?
            .ok_or_else(not_found)?;
        let namespace_record = self
            .store
            .get_namespace(namespace)
            .map_err(|e| internal(&e))?
            .ok_or_else(not_found)?;
        let egress_rules = vec![
            namespace_record
                .egress
                .compile("namespace")
                .map_err(|e| internal(&e))?,
            record.egress.compile("script").map_err(|e| internal(&e))?,
        ];
        let pre = self.prepared(&record, role)?;
        let mut isolation = record.isolation.clone();
        let mut reuse_refused = None;
        if isolation.reuse()
            && let Some(reason) = self
                .store
                .script_content(namespace, name)
                .ok()
                .flatten()
                .as_deref()
                .and_then(reuse::reuse_blocker)
        {
            tracing::warn!(%namespace, script = %name, reason,
                "settings.isolation \"reuse\" ignored: serving a fresh instance per request");
            isolation.mode = IsolationMode::Fresh;
            reuse_refused = Some(reason);
        }
        Ok(Arc::new(Worker {
            namespace: namespace.clone(),
            name: name.clone(),
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
            kv_enabled: true,
            egress_rules: Arc::new(egress_rules),
            admission: self.gate(namespace, name, role, &record.limits),
            reuse_refused,
        }))
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
        if let Some(pre) = self.prepared_lock().get(&key) {
            return Ok(pre.clone());
        }
        // Scripts with the same bytes loading at once (a restart's preload
        // and a first request, or many customers' copies of one template)
        // wait for one load and share it instead of each deserializing
        // the artifact.
        let flight = self
            .preparing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _one_at_a_time = flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pre) = self.prepared_lock().get(&key) {
            return Ok(pre.clone());
        }
        let prepared = self.prepare_uncached(record, role, &key);
        self.preparing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        prepared
    }

    /// Loads (or compiles) the component of `record` for `role` and caches
    /// it under `key`; [`Runtime::prepared`] makes sure only one runs per
    /// key.
    fn prepare_uncached(
        &self,
        record: &ScriptRecord,
        role: Role,
        key: &(String, Role),
    ) -> Result<ProxyPre<WorkerState>, WorkerError> {
        let internal = |e: &dyn std::fmt::Display| WorkerError::Internal(e.to_string());
        let (namespace, name) = (&record.namespace, &record.name);
        let started = Instant::now();
        let artifact = self
            .store
            .get_artifact(&record.sha256, &self.engine_hash)
            .map_err(|e| internal(&e))?;
        let component = match artifact.map(|a| compile::load_artifact(&self.engine, &a)) {
            Some(Ok(component)) => {
                self.counters.artifact_loads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%namespace, script = %name, version = record.version,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded precompiled artifact");
                component
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(%namespace, script = %name, error = %e, "stored artifact unusable; recompiling");
                }
                self.recompile(record).map_err(|e| internal(&e))?
            }
        };
        compile::build_memory_image(&component, &format_args!("{namespace}/{name}"));
        let pre = compile::prepare(self.linker(role), &component).map_err(|e| match role {
            Role::User => WorkerError::Internal(format!(
                "script {namespace}/{name} cannot run as a user worker: {e}"
            )),
            Role::Dispatch => WorkerError::Internal(format!(
                "script {namespace}/{name} cannot run as a dispatch worker: {e}"
            )),
        })?;
        self.prepared_lock().put(key.clone(), pre.clone());
        Ok(pre)
    }

    fn prepared_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, lru::LruCache<(String, Role), ProxyPre<WorkerState>>> {
        self.prepared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recompile(&self, record: &ScriptRecord) -> anyhow::Result<wasmtime::component::Component> {
        let bytes = self
            .store
            .script_content(&record.namespace, &record.name)?
            .ok_or_else(|| anyhow::anyhow!("script content vanished"))?;
        let component = wasmtime::component::Component::new(&self.engine, &bytes)
            .map_err(|e| anyhow::anyhow!("recompiling stored component: {e:#}"))?;
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
        tracing::info!(namespace = %record.namespace, script = %record.name, "compiled stored component (no artifact for this engine)");
        if let Ok(artifact) = component.serialize() {
            self.store
                .put_artifact(&record.sha256, &self.engine_hash, &artifact)?;
        }
        Ok(component)
    }

    /// Compiles a platform component from a file the operator configured —
    /// a dispatch worker or an outbound worker (blocking: run it off the
    /// reactor). `label` (the namespace it serves) names it in logs; `vars`
    /// become its environment. No egress rules apply beyond the host policy.
    pub fn load_file(
        &self,
        path: &std::path::Path,
        label: &Name,
        vars: &std::collections::BTreeMap<String, String>,
        role: Role,
        isolation: Isolation,
    ) -> anyhow::Result<Arc<Worker>> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
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
        let component = compile::compile(&self.engine, &bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
        compile::build_memory_image(&component, &path.display());
        let pre = compile::prepare(self.linker(role), &component)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| Name::new(&s.to_ascii_lowercase().replace('_', "-")).ok())
            .unwrap_or_else(|| label.clone());
        Ok(Arc::new(Worker {
            namespace: label.clone(),
            name: stem,
            pre,
            env: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            limits: ScriptLimits::default(),
            isolation,
            pool: Default::default(),
            assets: Arc::new(Default::default()),
            asset_config: Default::default(),
            kv_enabled: false,
            egress_rules: Arc::new(Vec::new()),
            admission: Arc::new(self.admission_for(&ScriptLimits::default())),
            reuse_refused,
        }))
    }

    /// The admission gate of a script in a role: the one it already has
    /// (resized to the script's current `max_concurrency`), or a new one.
    /// Gates outlive loaded workers, so neither an eviction nor a redeploy
    /// hands a tenant fresh slots while its old invocations still run.
    fn gate(
        &self,
        namespace: &Name,
        name: &Name,
        role: Role,
        limits: &ScriptLimits,
    ) -> Arc<Admission> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.clone(), name.clone(), role);
        match gates.get(&key) {
            Some(gate) => {
                gate.resize(self.limits.concurrency(limits));
                gate.clone()
            }
            None => {
                let gate = Arc::new(self.admission_for(limits));
                gates.insert(key, gate.clone());
                gate
            }
        }
    }

    /// Drops the gates of a script that nobody holds or waits for (a gate
    /// in use stays, so its count survives the eviction).
    fn prune_gates(&self, mut matches: impl FnMut(&Name, &Name) -> bool) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.retain(|(ns, name, _), gate| !(matches(ns, name) && gate.is_idle()));
    }

    /// The gate of a `[[dispatch]]` entry: `max_concurrency` slots (default
    /// the instance pool's size), the host's queue bounds.
    pub fn dispatch_gate(&self, max_concurrency: Option<u32>) -> Admission {
        Admission::new(
            max_concurrency.unwrap_or(self.instances_capacity),
            self.limits.max_queue,
            Duration::from_millis(self.limits.queue_timeout_ms),
        )
    }

    fn admission_for(&self, limits: &ScriptLimits) -> Admission {
        Admission::new(
            self.limits.concurrency(limits),
            self.limits.max_queue,
            Duration::from_millis(self.limits.queue_timeout_ms),
        )
    }

    /// Drops warm instances idle longer than their script's
    /// `reuse_idle_ms`; returns how many went.
    pub fn reap_idle(&self) -> usize {
        self.cache
            .loaded_workers()
            .iter()
            .filter(|w| w.isolation.reuse())
            .map(|w| w.pool.reap(&w.isolation))
            .sum()
    }

    /// Requests waiting for a concurrency slot, across loaded workers.
    pub fn queued(&self) -> u32 {
        self.cache.queued()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Live tail channels.
    pub fn tail(&self) -> &TailHub {
        &self.tail
    }

    /// Forgets the loaded worker of a script (redeploy, delete).
    pub fn evict(&self, namespace: &Name, script: &Name) {
        self.cache.evict(namespace, script);
        self.prune_gates(|ns, name| ns == namespace && name == script);
    }

    /// Whether a namespace is trusted (cached; a missing namespace is not).
    pub fn namespace_trusted(&self, namespace: &Name) -> bool {
        if let Some(trusted) = self.trusted_cache().get(namespace) {
            return *trusted;
        }
        let trusted = matches!(self.store.get_namespace(namespace), Ok(Some(ns)) if ns.trusted);
        self.trusted_cache().insert(namespace.clone(), trusted);
        trusted
    }

    fn trusted_cache(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Name, bool>> {
        self.trusted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every loaded worker of a namespace (and its cached mode).
    pub fn evict_namespace(&self, namespace: &Name) {
        self.trusted_cache().remove(namespace);
        self.cache.evict_namespace(namespace);
        self.prune_gates(|ns, _| ns == namespace);
    }

    /// Forgets every loaded worker and cached namespace mode (the store
    /// changed in ways this host could not follow one by one).
    pub fn evict_all(&self) {
        self.trusted_cache().clear();
        self.cache.clear();
        self.prune_gates(|_, _| true);
    }

    /// Counters and pool occupancy.
    pub fn stats(&self) -> RuntimeStats {
        let c = &self.counters;
        let metrics = self.engine.pooling_allocator_metrics();
        RuntimeStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            artifact_loads: c.artifact_loads.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            wall_limit_hits: c.wall_limit_hits.load(Ordering::Relaxed),
            cpu_limit_hits: c.cpu_limit_hits.load(Ordering::Relaxed),
            memory_limit_hits: c.memory_limit_hits.load(Ordering::Relaxed),
            fuel_limit_hits: c.fuel_limit_hits.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            request_body_limit_hits: c.request_body_limit_hits.load(Ordering::Relaxed),
            response_body_limit_hits: c.response_body_limit_hits.load(Ordering::Relaxed),
            cached_workers: self.cache.loaded(),
            host_memory_bytes: self.host_memory_total.load(Ordering::Relaxed),
            compile_cache_hits: self.compile_cache.as_ref().map_or(0, |c| c.stats().0),
            compile_cache_misses: self.compile_cache.as_ref().map_or(0, |c| c.stats().1),
            pool: PoolStats {
                component_instances: metrics.as_ref().map_or(0, |m| m.component_instances()),
                core_instances: metrics.as_ref().map_or(0, |m| m.core_instances()),
                memories: metrics.as_ref().map_or(0, |m| m.memories()),
                tables: metrics.as_ref().map_or(0, |m| m.tables()),
                stacks: metrics.as_ref().map_or(0, |m| m.stacks()),
                component_instances_capacity: self.instances_capacity,
            },
        }
    }
}

impl Runtime {
    /// A weak reference to this runtime as the capabilities' [`Invoker`]:
    /// what dispatch bindings and outbound workers keep, so no instance
    /// state ever keeps the runtime alive.
    pub fn invoker(self: &Arc<Self>) -> crate::capabilities::InvokerRef {
        let invoker: Arc<dyn Invoker> = self.clone();
        crate::capabilities::InvokerRef::new(&invoker)
    }

    /// A loaded worker as capabilities see it.
    pub fn worker_ref(worker: Arc<Worker>) -> WorkerRef {
        WorkerRef::new(worker.name.clone(), worker)
    }
}

impl Invoker for Runtime {
    fn user_worker(
        self: Arc<Self>,
        namespace: Name,
        script: Name,
    ) -> BoxFuture<'static, Result<WorkerRef, WorkerError>> {
        Box::pin(async move { self.worker(&namespace, &script).await.map(Self::worker_ref) })
    }

    fn serve(
        self: Arc<Self>,
        worker: WorkerRef,
        request: WorkerRequest,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<WorkerResponse, WorkerError>> {
        Box::pin(async move {
            let worker = worker.downcast::<Worker>().ok_or_else(|| {
                WorkerError::Internal("a worker reference from another runtime".into())
            })?;
            self.handle(worker, request, options.into()).await
        })
    }

    fn hostnames(&self) -> Arc<dyn Hostnames> {
        self.store.clone()
    }
}
