//! The embedding API: a Berth host as a value a Rust service owns.
//!
//! [`Berth::builder`] takes a [`Config`] (parsed from TOML or built in code)
//! and optionally a store; [`BerthBuilder::build`] opens the store (sled
//! under `server.data_dir` by default), builds the runtime and the
//! `[[dispatch]]` table. The result gives:
//! - [`Berth::data_router`] and [`Berth::admin_router`]: plain axum
//!   `Router`s to `merge`, `nest` or use as a `fallback` in the embedder's
//!   own app, or to drive with `tower::ServiceExt::oneshot` (no listener, no
//!   client address needed);
//! - programmatic operations without HTTP ([`Berth::create_namespace`],
//!   [`Berth::deploy`], [`Berth::delete`], …);
//! - [`Berth::serve`] for the stand-alone case (what `berth serve` does);
//! - [`Berth::shutdown`], after which the engine and its epoch thread are
//!   gone.
//!
//! This is the top of the library: it wires the layers below and is never
//! imported by them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, AdminToken, TokenSource};
use crate::base::metadata::ScriptMetadata;
use crate::base::names::Name;
use crate::capabilities::http::Egress;
use crate::config::{Config, ConfigError};
use crate::listener::{self, ListenerLimits};
use crate::ops::{NamespaceInfo, Ops, OpsError, Upload};
use crate::routing::{self, DataPlane, DispatchTable};
use crate::runtime::Runtime;
use crate::store::seal::Sealer;
use crate::store::{NamespaceStore, NatsStore, ScriptRecord, SledStore, StoreBackend, StoreError};

/// How often idle warm instances are reaped.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Every how many seconds (history samples) this host announces itself to
/// the other hosts of its cluster: well within the few seconds after which
/// they forget it.
const ANNOUNCE_EVERY_SAMPLES: u64 = 2;

/// Why a host could not be built, serve or stop. Operations on a running
/// host fail with [`OpsError`] instead.
#[derive(Debug, thiserror::Error)]
pub enum BerthError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A directory or file the host needs could not be created or read.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What it is (data dir, secrets key, …).
        what: &'static str,
        /// Where.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The admin token could not be resolved.
    #[error(transparent)]
    Token(#[from] admin::TokenError),
    /// A part of the host could not be built (egress, engine, the
    /// `[[dispatch]]` table); names the part.
    #[error("cannot build the {part}: {source}")]
    Setup {
        /// The part.
        part: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A start-up operation (creating the configured namespaces) failed.
    #[error(transparent)]
    Operation(#[from] OpsError),
    /// A listener could not be bound, or failed while serving.
    #[error("{what} on {addr}: {source}")]
    Listen {
        /// Which listener (`server.listen`, `server.admin_listen`).
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A background task of the host died.
    #[error("a host task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn setup(part: &'static str) -> impl FnOnce(anyhow::Error) -> BerthError {
    move |error| BerthError::Setup {
        part,
        source: error.into(),
    }
}

/// Builds a [`Berth`].
pub struct BerthBuilder {
    config: Config,
    store: Option<Arc<dyn NamespaceStore>>,
    egress: Option<Arc<Egress>>,
    admin_token: Option<String>,
}

/// A Berth host: runtime, store, dispatch table and admin token.
pub struct Berth {
    config: Config,
    ops: Ops,
    dispatch: Arc<DispatchTable>,
    token: Arc<str>,
}

impl Berth {
    /// Starts building a host from `config`.
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// let config = berth_host::Config::parse("[server]\ndata_dir = \"/tmp/berth-demo\"")?;
    /// let berth = berth_host::Berth::builder(config).build().await?;
    /// let app = axum::Router::<()>::new()
    ///     .route("/healthz", axum::routing::get(|| async { "ok" }))
    ///     .fallback_service(berth.data_router());
    /// # let _ = app;
    /// berth.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn builder(config: Config) -> BerthBuilder {
        BerthBuilder {
            config,
            store: None,
            egress: None,
            admin_token: None,
        }
    }
}

impl BerthBuilder {
    /// Uses `store` instead of opening sled under `server.data_dir`.
    pub fn store(mut self, store: Arc<dyn NamespaceStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses `egress` (e.g. with an injected resolver and connector, see
    /// [`Egress::with_seams`]) instead of real DNS and TCP.
    pub fn egress(mut self, egress: Egress) -> Self {
        self.egress = Some(Arc::new(egress));
        self
    }

    /// Uses `token` for the admin API instead of `BERTH_ADMIN_TOKEN`,
    /// `server.admin_token` or the generated token file.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Validates the config, opens the store, builds the runtime and the
    /// `[[dispatch]]` table (compiling file-based dispatch workers).
    pub async fn build(self) -> Result<Berth, BerthError> {
        let config = self.config;
        config.validate()?;
        private_dir(&config.server.data_dir, "data dir")?;
        let (store, relay) = match self.store {
            Some(store) => (store, None),
            None if config.store.backend == StoreBackend::Nats => open_nats(&config).await?,
            None => (open_sled(&config).await?, None),
        };
        let changes = store.changes();
        let token = match self.admin_token {
            Some(token) => token,
            None => resolve_token(&config)?,
        };
        let egress = match self.egress {
            Some(egress) => egress,
            None => Arc::new(Egress::new(&config.egress).map_err(setup("egress policy"))?),
        };
        let runtime = Runtime::new(
            &runtime_config(&config)?,
            config.limits.clone(),
            egress,
            store,
        )
        .map_err(setup("engine"))?;
        let runtime = Arc::new(runtime);
        let default_namespace = config.server.default_namespace.clone();
        // The JS engine starts preparing now, before anything is loaded: a
        // JS script's load waits for the engine code it imports.
        let js = crate::js::JsEngine::start(
            &config.js,
            runtime.engine(),
            runtime.host_modules(),
            config.server.data_dir.join("cache").join("js"),
        );
        let ops = Ops::new(runtime.clone(), default_namespace.clone()).with_js(js);
        // The default namespace and every namespace a [[dispatch]] entry is
        // bound to exist from the first start.
        let mut wanted = vec![default_namespace.clone()];
        wanted.extend(config.dispatch.iter().map(|d| d.namespace.clone()));
        for ns in wanted {
            ops.ensure_namespace(&ns).await?;
        }
        if let Some(relay) = relay {
            runtime.tail().set_relay(Arc::new(relay));
        }
        if let Some(changes) = changes {
            let weak = Arc::downgrade(&runtime);
            tokio::spawn(Ops::follow_changes(weak, default_namespace, changes));
        }
        let dispatch = {
            let (entries, runtime) = (config.dispatch.clone(), runtime.clone());
            tokio::task::spawn_blocking(move || DispatchTable::load(&entries, &runtime))
                .await?
                .map_err(setup("[[dispatch]] table"))?
        };
        tokio::spawn(preload(
            Arc::downgrade(&runtime),
            config.runtime.component_cache_size,
        ));
        tokio::spawn(reap(Arc::downgrade(&runtime)));
        tokio::spawn(sample(Arc::downgrade(&runtime)));
        Ok(Berth {
            config,
            ops,
            dispatch: Arc::new(dispatch),
            token: token.into(),
        })
    }
}

/// `[runtime]` with Cranelift's incremental cache beside this host's other
/// caches unless it names one: every componentize-js upload shares the JS
/// engine's code.
fn runtime_config(config: &Config) -> Result<crate::config::RuntimeConfig, BerthError> {
    let mut runtime = config.runtime.clone();
    if runtime.compile_cache_dir.is_none() {
        let dir = config.server.data_dir.join("cache").join("compile");
        private_dir(&dir, "compile cache")?;
        runtime.compile_cache_dir = Some(dir);
    }
    Ok(runtime)
}

/// sled under `data_dir/store`, its secrets sealed with the key file.
async fn open_sled(config: &Config) -> Result<Arc<dyn NamespaceStore>, BerthError> {
    let data_dir = &config.server.data_dir;
    let db_dir = data_dir.join("store");
    private_dir(&db_dir, "store dir")?;
    let key_file = config
        .server
        .secrets_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("secrets.key"));
    let sealer = load_key(&key_file)?;
    let store = tokio::task::spawn_blocking(move || {
        let store = SledStore::open_sealed(&db_dir, sealer)?;
        private_files(&db_dir);
        Ok::<_, StoreError>(store)
    })
    .await??;
    Ok(Arc::new(store))
}

/// The cluster's store: records in NATS, this host's cache of blobs and
/// compiled artifacts in `data_dir/cache`; and its tail relay.
async fn open_nats(
    config: &Config,
) -> Result<
    (
        Arc<dyn NamespaceStore>,
        Option<crate::store::nats::NatsTailRelay>,
    ),
    BerthError,
> {
    let cache_dir = config.server.data_dir.join("cache");
    private_dir(&cache_dir, "cache dir")?;
    let sealer = match &config.server.secrets_key_file {
        Some(key_file) => Some(load_key(key_file)?),
        None => None,
    };
    let store_config = config.store.clone();
    let store =
        tokio::task::spawn_blocking(move || NatsStore::open(&store_config, &cache_dir, sealer))
            .await??;
    let relay = store.tail_relay();
    Ok((Arc::new(store), Some(relay)))
}

fn load_key(path: &std::path::Path) -> Result<Sealer, BerthError> {
    Sealer::load_or_create(path).map_err(|source| BerthError::File {
        what: "secrets key",
        path: path.to_path_buf(),
        source,
    })
}

/// Drops idle warm instances every [`REAP_EVERY`] for as long as the
/// runtime lives; it holds the runtime only weakly.
async fn reap(runtime: std::sync::Weak<Runtime>) {
    let mut every = tokio::time::interval(REAP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(runtime) = runtime.upgrade() else {
            break;
        };
        let reaped = runtime.reap_idle();
        drop(runtime);
        if reaped > 0 {
            tracing::debug!(reaped, "dropped idle warm instances");
        }
    }
}

/// Samples the dashboard's history just after every second boundary, and
/// every [`ANNOUNCE_EVERY_SAMPLES`] seconds announces this host to the
/// others sharing its store, for as long as the runtime lives (held
/// weakly, and never across the announcement).
async fn sample(runtime: std::sync::Weak<Runtime>) {
    let mut samples = 0u64;
    loop {
        let now = crate::store::now_ms();
        let next = (now / 1000 + 1) * 1000 + 10;
        tokio::time::sleep(Duration::from_millis(next.saturating_sub(now))).await;
        let Some(live) = runtime.upgrade() else {
            break;
        };
        live.sample_history();
        samples += 1;
        if !samples.is_multiple_of(ANNOUNCE_EVERY_SAMPLES) {
            continue;
        }
        let (store, loaded) = (live.store().clone(), live.loaded_scripts() as u64);
        drop(live);
        if let Err(error) = crate::store::blocking(move || store.announce(loaded)).await {
            tracing::debug!(%error, "cannot announce this host to its cluster");
        }
    }
}

/// Loads the most recently deployed scripts (up to `limit`, the worker
/// cache's size) one after another in the background, so the first request
/// to a script after a (re)start does not pay for loading its artifact —
/// ~30 ms for a JavaScript component. A request that arrives first shares
/// the load in progress (the cache's per-script cell).
async fn preload(runtime: std::sync::Weak<Runtime>, limit: usize) {
    let Some(store) = runtime.upgrade().map(|r| r.store().clone()) else {
        return;
    };
    let listed = tokio::task::spawn_blocking(move || {
        let mut scripts = Vec::new();
        for namespace in store.list_namespaces()? {
            scripts.extend(store.list_scripts(&namespace.name)?);
        }
        Ok::<_, StoreError>(scripts)
    })
    .await;
    let mut scripts = match listed {
        Ok(Ok(scripts)) => scripts,
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot list scripts to preload; loading them on first use");
            return;
        }
        Err(_) => return,
    };
    scripts.sort_by_key(|s| std::cmp::Reverse(s.modified_ms));
    let started = std::time::Instant::now();
    let mut loaded = 0usize;
    for script in scripts.into_iter().take(limit) {
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        if runtime
            .worker(&script.namespace, &script.name)
            .await
            .is_ok()
        {
            loaded += 1;
        }
    }
    if loaded > 0 {
        tracing::info!(
            loaded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "preloaded scripts"
        );
    }
}

/// Creates `dir` (and its parents) readable by this user only; an
/// existing `dir` open to other users (say, created 0755 by a script
/// before the host started) is made private, and the change logged.
fn private_dir(dir: &std::path::Path, what: &'static str) -> Result<(), BerthError> {
    let failed = |source| BerthError::File {
        what,
        path: dir.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(failed)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(failed)?;
            tracing::warn!(
                path = %dir.display(), was = %format!("{mode:o}"),
                "{what} was accessible to other users; made it private (chmod 700)"
            );
        }
    }
    Ok(())
}

/// Makes every file under `dir` readable by this user only (the store's
/// files, whatever the umask was when they were created).
fn private_files(dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => private_files(&path),
                Ok(t) if t.is_file() => {
                    if let Err(error) =
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    {
                        tracing::warn!(path = %path.display(), %error, "cannot make a store file private");
                    }
                }
                _ => {}
            }
        }
    }
}

fn resolve_token(config: &Config) -> Result<String, BerthError> {
    let (token, source) = admin::resolve_token(
        std::env::var(admin::TOKEN_ENV).ok(),
        config.server.admin_token.as_deref(),
        &config.server.data_dir,
    )?;
    match &source {
        TokenSource::Env => tracing::info!("admin token from {}", admin::TOKEN_ENV),
        TokenSource::Config => tracing::info!("admin token from server.admin_token"),
        TokenSource::File(path) => {
            tracing::info!(path = %path.display(), "admin token read from file")
        }
    }
    Ok(token)
}

impl Berth {
    /// The tenant-facing router (every path and method).
    pub fn data_router(&self) -> Router {
        routing::router(DataPlane {
            runtime: self.ops.runtime().clone(),
            dispatch: self.dispatch.clone(),
            default_namespace: self.config.server.default_namespace.clone(),
            builtin_router: self.config.server.builtin_router,
            trusted_headers: Arc::new(self.config.server.trusted_headers.clone()),
            expose_error_details: self.config.server.expose_error_details,
            max_hops: self.config.egress.max_hops,
            body_read_timeout: Duration::from_millis(self.config.server.body_read_timeout_ms),
        })
    }

    /// The token-protected admin API router.
    pub fn admin_router(&self) -> Router {
        admin::router(
            AdminState {
                ops: self.ops.clone(),
                max_upload_bytes: (self.config.server.max_upload_mb as usize) << 20,
            },
            AdminToken(self.token.clone()),
        )
    }

    /// The admin API's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// The configuration this host runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every operation on namespaces and scripts (what the admin API
    /// does, without HTTP); the methods below are shorthands for the
    /// common ones.
    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// Creates a namespace.
    pub async fn create_namespace(&self, name: &Name) -> Result<NamespaceInfo, OpsError> {
        self.ops.create_namespace(name, false).await
    }

    /// Deploys (or redeploys) `script` in `namespace` from component bytes:
    /// validated and compiled like an admin API upload.
    pub async fn deploy(
        &self,
        namespace: &Name,
        script: &Name,
        component: Vec<u8>,
        metadata: ScriptMetadata,
    ) -> Result<ScriptRecord, OpsError> {
        let upload = Upload {
            component,
            metadata,
        };
        self.ops.deploy(namespace, script, upload).await
    }

    /// Deletes a script; `false` if there was none.
    pub async fn delete(&self, namespace: &Name, script: &Name) -> Result<bool, OpsError> {
        match self.ops.delete_script(namespace, script).await {
            Ok(()) => Ok(true),
            Err(OpsError::ScriptNotFound { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// A script's metadata, if it exists.
    pub async fn script(
        &self,
        namespace: &Name,
        script: &Name,
    ) -> Result<Option<ScriptRecord>, OpsError> {
        match self.ops.script(namespace, script).await {
            Ok(record) => Ok(Some(record)),
            Err(OpsError::ScriptNotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Binds `server.listen` and `server.admin_listen` and serves both
    /// routers until [`Serving::shutdown`].
    pub async fn serve(self) -> Result<Serving, BerthError> {
        let server = &self.config.server;
        let bind = |what: &'static str, addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| BerthError::Listen { what, addr, source })?;
            let local = listener.local_addr().map_err(|source| BerthError::Listen {
                what,
                addr,
                source,
            })?;
            Ok::<_, BerthError>((listener, local))
        };
        let (data_listener, data_addr) = bind("server.listen", server.listen).await?;
        let (admin_listener, admin_addr) = bind("server.admin_listen", server.admin_listen).await?;
        let (shutdown, _) = watch::channel(false);
        let limits = ListenerLimits {
            max_connections: server.max_connections,
            head_timeout: Duration::from_millis(server.request_head_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            write_timeout: Duration::from_millis(server.response_write_timeout_ms),
        };
        let data_task = tokio::spawn(listener::serve(
            data_listener,
            self.data_router(),
            limits,
            shutdown.subscribe(),
        ));
        let admin_task = tokio::spawn(listener::serve(
            admin_listener,
            self.admin_router(),
            limits,
            shutdown.subscribe(),
        ));
        tracing::info!(%data_addr, %admin_addr, "berth is serving");
        Ok(Serving {
            data_addr,
            admin_addr,
            grace: Duration::from_secs(server.shutdown_grace_secs),
            berth: self,
            shutdown,
            tasks: vec![
                ("server.listen", data_addr, data_task),
                ("server.admin_listen", admin_addr, admin_task),
            ],
        })
    }

    /// Stops the host: refuses new requests, forgets loaded workers and
    /// warm instances, stops the epoch thread and drops the engine (once
    /// the last router clone is dropped too).
    pub async fn shutdown(self) {
        let runtime = self.ops.runtime().clone();
        runtime.close();
        let weak = Arc::downgrade(&runtime);
        drop(runtime);
        drop(self);
        if weak.strong_count() > 0 {
            tracing::debug!("routers of this host are still alive; its engine goes with them");
        }
    }

    #[cfg(test)]
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        self.ops.runtime()
    }
}

/// A listener's serving task.
type ListenerTask = (&'static str, SocketAddr, JoinHandle<std::io::Result<()>>);

/// A host serving on its own listeners.
pub struct Serving {
    /// Bound data-plane address.
    pub data_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    berth: Berth,
    grace: Duration,
    shutdown: watch::Sender<bool>,
    tasks: Vec<ListenerTask>,
}

impl Serving {
    /// The host being served.
    pub fn berth(&self) -> &Berth {
        &self.berth
    }

    /// Stops accepting connections, waits (up to the grace period) for
    /// in-flight requests to finish, then shuts the host down.
    pub async fn shutdown(self) -> Result<(), BerthError> {
        let _ = self.shutdown.send(true);
        let drain = futures::future::join_all(self.tasks.into_iter().map(
            |(what, addr, task)| async move {
                match task.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(source)) => Err(BerthError::Listen { what, addr, source }),
                    Err(died) => Err(BerthError::Task(died)),
                }
            },
        ));
        let result = match tokio::time::timeout(self.grace, drain).await {
            Ok(results) => {
                tracing::info!("all in-flight requests finished; bye");
                results
                    .into_iter()
                    .collect::<Result<Vec<()>, _>>()
                    .map(drop)
            }
            Err(_) => {
                tracing::warn!(
                    grace_secs = self.grace.as_secs(),
                    "in-flight requests still running after the grace period; exiting anyway"
                );
                Ok(())
            }
        };
        self.berth.shutdown().await;
        result
    }
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; draining"),
        _ = term => tracing::info!("SIGTERM received; draining"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn config(dir: &std::path::Path) -> Config {
        let mut config = Config::default();
        config.server.data_dir = dir.to_path_buf();
        config.runtime.instances = 4;
        config.runtime.core_instances = 40;
        config.runtime.memories = 8;
        config.runtime.tables = 8;
        config
    }

    #[tokio::test]
    async fn routers_work_in_process_and_shutdown_drops_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let berth = Berth::builder(config(dir.path()))
            .admin_token("t0ken")
            .build()
            .await
            .unwrap();
        let ticker_stopped = berth.runtime().ticker_stop_flag();
        let runtime = Arc::downgrade(berth.runtime());

        // The data plane answers without a listener or a client address.
        let request = http::Request::builder()
            .uri("/")
            .header("host", "nobody.localhost")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = berth.data_router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["x-berth-error"], "worker-not-found");
        assert!(response.headers().contains_key("berth-request-id"));

        // The admin router checks its token.
        let request = http::Request::builder()
            .uri("/v1/namespaces")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = berth.admin_router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 401);
        let request = http::Request::builder()
            .uri("/v1/namespaces")
            .header("authorization", "Bearer t0ken")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = berth.admin_router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);

        // Programmatic operations without HTTP.
        let ns = Name::new("embedded").unwrap();
        berth.create_namespace(&ns).await.unwrap();
        assert!(matches!(
            berth.create_namespace(&ns).await,
            Err(OpsError::Store(StoreError::NamespaceExists(_)))
        ));
        let bad = berth
            .deploy(
                &ns,
                &Name::new("x").unwrap(),
                b"not wasm".to_vec(),
                Default::default(),
            )
            .await;
        assert!(matches!(bad, Err(OpsError::Component(_))), "{bad:?}");

        assert!(!ticker_stopped.load(std::sync::atomic::Ordering::Relaxed));
        berth.shutdown().await;
        assert!(
            ticker_stopped.load(std::sync::atomic::Ordering::Relaxed),
            "the epoch thread was told to stop"
        );
        assert!(
            runtime.upgrade().is_none(),
            "the runtime and its engine are gone"
        );
    }
}
