//! Starting and stopping a Berth host: open the store, build the runtime,
//! bind both listeners, serve until shutdown, then drain in-flight requests.
//!
//! [`Server::start`] returns as soon as both listeners are bound (with their
//! real addresses, so port 0 works), which is what tests and embedders need;
//! `berth serve` then waits for SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, AdminToken, TokenSource};
use crate::config::Config;
use crate::dataplane::{self, DataPlane};
use crate::dispatch::DispatchTable;
use crate::runtime::Runtime;
use crate::store::{NamespaceStore, SledStore};

/// A running host.
pub struct Server {
    /// Bound data-plane address.
    pub data_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    /// The runtime serving requests.
    pub runtime: Arc<Runtime>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    grace: Duration,
}

impl Server {
    /// Opens the store, builds the runtime and binds both listeners.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let server_cfg = &config.server;
        let data_dir = server_cfg.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let db_dir = data_dir.join("store");
        let store: Arc<dyn NamespaceStore> =
            Arc::new(tokio::task::spawn_blocking(move || SledStore::open(&db_dir)).await??);
        let default_ns = server_cfg.default_namespace.clone();
        // The default namespace and every namespace a [[dispatch]] entry is
        // bound to exist from the first start.
        let mut wanted = vec![default_ns.clone()];
        wanted.extend(config.dispatch.iter().map(|d| d.namespace.clone()));
        for ns in wanted {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.ensure_namespace(&ns)).await??;
        }

        let (token, source) = admin::resolve_token(
            std::env::var(admin::TOKEN_ENV).ok(),
            server_cfg.admin_token.as_deref(),
            &data_dir,
        )?;
        match &source {
            TokenSource::Env => tracing::info!("admin token from {}", admin::TOKEN_ENV),
            TokenSource::Config => tracing::info!("admin token from server.admin_token"),
            TokenSource::File(path) => {
                tracing::info!(path = %path.display(), "admin token read from file")
            }
        }

        let runtime = Arc::new(Runtime::new(
            &config.runtime,
            config.limits.clone(),
            Arc::new(crate::egress::Egress::new(&config.egress)?),
            store,
        )?);
        let dispatch = {
            let (entries, runtime) = (config.dispatch.clone(), runtime.clone());
            tokio::task::spawn_blocking(move || DispatchTable::load(&entries, &runtime)).await??
        };
        let data_listener = TcpListener::bind(server_cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {} (server.listen)", server_cfg.listen))?;
        let admin_listener = TcpListener::bind(server_cfg.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.admin_listen)",
                    server_cfg.admin_listen
                )
            })?;
        let data_addr = data_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let data_app = dataplane::router(DataPlane {
            runtime: runtime.clone(),
            dispatch: Arc::new(dispatch),
            default_namespace: default_ns.clone(),
            builtin_router: server_cfg.builtin_router,
            trusted_headers: Arc::new(server_cfg.trusted_headers.clone()),
        });
        let admin_app = admin::router(
            AdminState {
                runtime: runtime.clone(),
                default_namespace: default_ns,
                max_upload_bytes: (server_cfg.max_upload_mb as usize) << 20,
            },
            AdminToken(token.into()),
        );

        let (shutdown, _) = watch::channel(false);
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        // The data plane needs the peer address (`berth-client-ip`).
        let data_task = {
            let stop = stopped(shutdown.subscribe());
            let app = data_app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            tokio::spawn(async move {
                axum::serve(data_listener.tap_io(no_delay), app)
                    .with_graceful_shutdown(stop)
                    .await
            })
        };
        let admin_task = {
            let stop = stopped(shutdown.subscribe());
            tokio::spawn(async move {
                axum::serve(admin_listener.tap_io(no_delay), admin_app)
                    .with_graceful_shutdown(stop)
                    .await
            })
        };
        let tasks = vec![data_task, admin_task];
        tracing::info!(%data_addr, %admin_addr, "berth is serving");
        Ok(Self {
            data_addr,
            admin_addr,
            runtime,
            shutdown,
            tasks,
            grace: Duration::from_secs(server_cfg.shutdown_grace_secs),
        })
    }

    /// Stops accepting connections and waits (up to the grace period) for
    /// in-flight requests to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let drain = futures::future::join_all(self.tasks);
        match tokio::time::timeout(self.grace, drain).await {
            Ok(results) => {
                for result in results {
                    result??;
                }
                tracing::info!("all in-flight requests finished; bye");
            }
            Err(_) => tracing::warn!(
                grace_secs = self.grace.as_secs(),
                "in-flight requests still running after the grace period; exiting anyway"
            ),
        }
        Ok(())
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

/// Sets `TCP_NODELAY` on an accepted connection. A worker's response head
/// is sent as soon as the guest sets it and its body follows when the guest
/// writes it, often as a second small segment; with Nagle's algorithm on,
/// that segment waits for the client's delayed ACK (40 ms on Linux), which
/// showed up as a 40 ms p99 on the dispatch path.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
    }
}
