//! The runtime: one shared Wasmtime engine serving every tenant.
//!
//! [`Runtime`] puts together the parts, each in a file of its own:
//! - [`engine`]: the engine (pooling allocator, copy-on-write images,
//!   epoch interruption) and its single epoch ticker;
//! - [`loader`]: store → [`Worker`] (linkers, worker cache, single-flight
//!   loads, compiled code shared by identical uploads);
//! - [`gates`]: every script's admission gate;
//! - [`stats`]: counters and the `/v1/runtime` snapshot;
//! - [`state`]: what an instance's `Store` holds (the sandbox plus the
//!   capabilities' states) and the linker built from them;
//! - [`host_modules`]: core modules the host provides to components by
//!   name (the JS engine's code);
//! - `invoke/`: the request pipeline (plan → admit → instance → guest →
//!   answer).
//!
//! It never touches HTTP routing or the admin API, and it never
//! deserializes bytes a tenant supplied.

mod cache;
pub mod compile;
pub mod compile_cache;
pub mod config;
pub mod engine;
mod gates;
pub mod host_modules;
mod invoke;
mod loader;
pub mod reuse;
pub mod state;
mod stats;
pub mod stdio;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::Engine;

pub use crate::base::Role;
pub use compile::CompileError;
pub use config::RuntimeConfig;
pub use host_modules::HostModules;
pub use invoke::InvokeOptions;
pub use loader::CompiledUpload;
pub use stats::{PoolStats, RuntimeStats};
pub use worker::Worker;

use crate::base::error::WorkerError;
use crate::base::isolation::Isolation;
use crate::base::names::Name;
use crate::capabilities::http::Egress;
use crate::capabilities::{
    BoxFuture, CallOptions, HostServices, Invoker, WorkerRef, WorkerRequest, WorkerResponse,
};
use crate::limits::{Admission, HostLimits};
use crate::observe::history::Gauges;
use crate::observe::metrics::Metrics;
use crate::observe::tail::TailHub;
use crate::store::{Hostnames, NamespaceStore};
use engine::EpochTicker;
use gates::Gates;
use loader::Loader;
use stats::{Counters, Occupancy};

/// Bytes of static asset content kept in memory, shared by all scripts.
const ASSET_CACHE_BYTES: usize = 64 << 20;

/// The shared engine, the loader and everything an invocation needs.
pub struct Runtime {
    engine: Engine,
    loader: Arc<Loader>,
    gates: Arc<Gates>,
    counters: Arc<Counters>,
    services: HostServices,
    store: Arc<dyn NamespaceStore>,
    limits: HostLimits,
    tail: Arc<TailHub>,
    stdio_capture_bytes: usize,
    /// Host memory charged by every instance's meter together.
    host_memory_total: Arc<AtomicU64>,
    instances_capacity: u32,
    ticker: std::sync::Mutex<Option<EpochTicker>>,
    closed: AtomicBool,
    assets: crate::assets::AssetCache,
    heavy_lane: crate::limits::cpu::HeavyLane,
    host_modules: Arc<HostModules>,
}

impl Runtime {
    /// Builds the engine, the loader and the ticker.
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
        let counters = Arc::new(Counters::default());
        let metrics = Arc::new(Metrics::new(cfg.max_script_series));
        let host_modules = Arc::new(HostModules::default());
        let loader = Loader::new(
            &engine,
            store.clone(),
            cfg.component_cache_size,
            compile_cache,
            counters.clone(),
            metrics.clone(),
            host_modules.clone(),
        )?;
        let ticker = EpochTicker::start(engine.clone(), Duration::from_millis(cfg.epoch_tick_ms));
        // The CPU meter's clock calibrates at its first reading (≥ 0.5 ms):
        // here, not inside a tenant's first request.
        crate::limits::cpu::now();
        Ok(Self {
            engine,
            loader: Arc::new(loader),
            gates: Arc::new(Gates::new(limits.clone(), cfg.instances)),
            counters,
            services: HostServices {
                egress,
                kv: store.clone(),
                metrics,
            },
            store,
            limits,
            tail: Default::default(),
            stdio_capture_bytes: cfg.stdio_capture_kb << 10,
            host_memory_total: Arc::default(),
            instances_capacity: cfg.instances,
            ticker: std::sync::Mutex::new(Some(ticker)),
            closed: Default::default(),
            assets: crate::assets::AssetCache::new(ASSET_CACHE_BYTES),
            heavy_lane: crate::limits::cpu::HeavyLane::new(match cfg.heavy_lanes {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
                n => n,
            }),
            host_modules,
        })
    }

    /// The engine every tenant runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Core modules the host provides to components (the JS engine).
    pub fn host_modules(&self) -> &Arc<HostModules> {
        &self.host_modules
    }

    /// The store this runtime loads scripts from.
    pub fn store(&self) -> &Arc<dyn NamespaceStore> {
        &self.store
    }

    /// Whether this engine's precompiled artifact for content `sha256` is
    /// stored (so the content was already validated and compiled).
    pub fn has_artifact(&self, sha256: &str) -> bool {
        self.loader.has_artifact(sha256)
    }

    /// Validates and compiles an upload (blocking: run it off the reactor).
    pub fn compile_upload(&self, bytes: &[u8]) -> Result<CompiledUpload, CompileError> {
        self.loader.compile_upload(bytes)
    }

    /// The loaded user worker for a script, loading it on first use.
    pub async fn worker(
        &self,
        namespace: &Name,
        script: &Name,
    ) -> Result<Arc<Worker>, WorkerError> {
        self.worker_as(namespace, script, Role::User).await
    }

    /// The loaded worker for a script in `role`, loading it on first use.
    pub async fn worker_as(
        &self,
        namespace: &Name,
        script: &Name,
        role: Role,
    ) -> Result<Arc<Worker>, WorkerError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(WorkerError::Internal("the host is shutting down".into()));
        }
        self.loader
            .worker(namespace, script, role, &self.gates)
            .await
    }

    /// Compiles a platform component from a file the operator configured
    /// (a dispatch worker or an outbound worker; blocking).
    pub fn load_file(
        &self,
        path: &std::path::Path,
        label: &Name,
        vars: &std::collections::BTreeMap<String, String>,
        role: Role,
        isolation: Isolation,
    ) -> Result<Arc<Worker>, CompileError> {
        self.loader
            .load_file(path, label, vars, role, isolation, &self.gates)
    }

    /// A script's KV quota on this host.
    pub fn kv_quota(&self, limits: &crate::limits::ScriptLimits) -> crate::base::limits::KvQuota {
        self.limits.kv_quota(limits)
    }

    /// The gate of a `[[dispatch]]` entry.
    pub fn dispatch_gate(&self, max_concurrency: Option<u32>) -> Admission {
        self.gates.dispatch_gate(max_concurrency)
    }

    /// Shuts the runtime down: new requests are refused, loaded workers and
    /// their warm instances are forgotten, and the epoch thread stops (it
    /// holds the engine). In-flight invocations finish without preemption
    /// ticks but within their wall-clock deadline.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.loader.clear();
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

    /// Drops warm instances idle longer than their script's
    /// `reuse_idle_ms`; returns how many went.
    pub fn reap_idle(&self) -> usize {
        self.loader
            .loaded_workers()
            .iter()
            .filter(|w| w.isolation.reuse())
            .map(|w| w.pool.reap(&w.isolation))
            .sum()
    }

    /// Requests waiting for a concurrency slot, across loaded workers.
    pub fn queued(&self) -> u32 {
        self.loader.cache().queued()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.services.metrics
    }

    /// Live tail channels.
    pub fn tail(&self) -> &TailHub {
        &self.tail
    }

    /// Whether a namespace is trusted (cached; a missing namespace is not).
    pub fn namespace_trusted(&self, namespace: &Name) -> bool {
        self.loader.namespace_trusted(namespace)
    }

    /// Forgets the loaded worker of a script (redeploy, delete, settings).
    pub fn evict(&self, namespace: &Name, script: &Name) {
        self.loader.evict(namespace, script);
        self.gates
            .prune(|ns, name| ns == namespace && name == script);
    }

    /// Forgets every loaded worker of a namespace (and its cached mode).
    pub fn evict_namespace(&self, namespace: &Name) {
        self.loader.evict_namespace(namespace);
        self.gates.prune(|ns, _| ns == namespace);
    }

    /// After a change notice from a shared store (which may arrive after a
    /// request already loaded the new record): forgets the script's
    /// workers unless they are built from the records the store holds now
    /// (blocking: reads the store).
    pub fn evict_stale(&self, namespace: &Name, script: &Name) {
        if !self.loader.evict_stale(namespace, script) {
            self.gates
                .prune(|ns, name| ns == namespace && name == script);
        }
    }

    /// [`Runtime::evict_stale`] for a namespace's notice: keeps the workers
    /// built from the namespace record the store holds now (blocking).
    pub fn evict_namespace_stale(&self, namespace: &Name) {
        self.loader.evict_namespace_stale(namespace);
        let loaded = self.loader.loaded_workers();
        self.gates.prune(|ns, name| {
            ns == namespace
                && !loaded
                    .iter()
                    .any(|w| w.namespace() == namespace && w.name() == name)
        });
    }

    /// Forgets every loaded worker and cached namespace mode (the store
    /// changed in ways this host could not follow one by one).
    pub fn evict_all(&self) {
        self.loader.evict_all();
        self.gates.prune(|_, _| true);
    }

    /// Counters and pool occupancy.
    pub fn stats(&self) -> RuntimeStats {
        self.counters.snapshot(Occupancy {
            cached_workers: self.loader.cache().loaded(),
            warm_idle_instances: self
                .loader
                .loaded_workers()
                .iter()
                .map(|w| w.pool.len())
                .sum(),
            host_memory_bytes: self.host_memory_total.load(Ordering::Relaxed),
            compile_cache: self.loader.compile_cache_stats(),
            pool: PoolStats::of(&self.engine, self.instances_capacity),
        })
    }

    /// Closes the dashboard history's current second (the background
    /// sampler calls this once a second): the counters since the last
    /// call, plus host memory and instances in use right now.
    pub fn sample_history(&self) {
        let gauges = Gauges {
            host_memory_bytes: self.host_memory_total.load(Ordering::Relaxed),
            instances: PoolStats::of(&self.engine, self.instances_capacity).component_instances,
        };
        self.services
            .metrics
            .history()
            .sample(crate::store::now_ms(), gauges);
    }

    /// Workers loaded right now (what a host announces to its cluster).
    pub fn loaded_scripts(&self) -> usize {
        self.loader.cache().loaded()
    }

    /// Whether this host meters fuel (`[limits] fuel`).
    pub fn meters_fuel(&self) -> bool {
        self.limits.fuel.is_some()
    }

    /// A weak reference to this runtime as the capabilities' [`Invoker`]:
    /// what dispatch bindings and outbound workers keep, so no instance
    /// state ever keeps the runtime alive.
    pub fn invoker(self: &Arc<Self>) -> crate::capabilities::InvokerRef {
        let invoker: Arc<dyn Invoker> = self.clone();
        crate::capabilities::InvokerRef::new(&invoker)
    }
}

impl Invoker for Runtime {
    fn user_worker(
        self: Arc<Self>,
        namespace: Name,
        script: Name,
    ) -> BoxFuture<'static, Result<WorkerRef, WorkerError>> {
        Box::pin(async move { self.worker(&namespace, &script).await.map(Worker::into_ref) })
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
            let mut options = InvokeOptions::from(options);
            if let Some(tenant) = &options.call.on_behalf_of {
                let shared = (worker.namespace(), worker.name());
                options.gate = Some(self.gates.share(shared, tenant));
            }
            self.handle(worker, request, options).await
        })
    }

    fn hostnames(&self) -> Arc<dyn Hostnames> {
        self.store.clone()
    }
}
