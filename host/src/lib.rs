//! # Berth host
//!
//! A self-hosted, multi-tenant host for WASI-HTTP components: platforms
//! upload their customers' components into *dispatch namespaces* and Berth
//! serves requests with them, each in a fresh, limited sandbox.
//!
//! ## Embedding
//!
//! [`Berth::builder`] builds a host from a [`Config`]; the host gives axum
//! routers for the data plane and the admin API, programmatic operations,
//! a stand-alone server and a clean shutdown:
//!
//! ```no_run
//! use berth_host::{Berth, Config, Name};
//! # async fn demo(component: Vec<u8>) -> anyhow::Result<()> {
//! let config = Config::parse("[server]\ndata_dir = \"/tmp/berth-embedded\"")?;
//! let berth = Berth::builder(config).build().await?;
//! berth
//!     .deploy(&Name::new("default")?, &Name::new("hello")?, component, Default::default())
//!     .await?;
//! let app = axum::Router::<()>::new()
//!     .route("/healthz", axum::routing::get(|| async { "ok" }))
//!     .fallback_service(berth.data_router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! See `host/examples/embed.rs` for a complete service.
//!
//! ## Layers (imports only point down)
//!
//! 1. `base`: the vocabulary, no I/O — names, the error map, limit policy,
//!    isolation, egress rules, host patterns, store records.
//! 2. `store` (area traits + sled), `limits` (enforcement), `observe`
//!    (metrics, tail).
//! 3. `capabilities` (HTTP egress, dispatcher, KV; each with its own state
//!    and `add_to_linker`) and `assets`.
//! 4. `runtime`: engine, linkers, worker cache, the invoke pipeline.
//! 5. `config`, `ops` (every operation on namespaces and scripts, and the
//!    eviction that follows it), `routing` (the data plane).
//! 6. `admin` (the token-protected API) and `berth` (this embedding API).
#![deny(missing_docs)]

mod admin;
mod assets;
mod base;
mod berth;
mod capabilities;
mod config;
pub mod js;
mod limits;
mod listener;
mod observe;
mod ops;
mod routing;
mod runtime;
mod store;

pub use admin::{TOKEN_ENV, TOKEN_FILE, TokenError};
pub use base::Invalid;
pub use base::egress_rules::EgressRules;
pub use base::error::{ERROR_HEADER, ErrorCode, HostFailure, WorkerError};
pub use base::isolation::{Isolation, IsolationMode};
pub use base::limits::{CallLimits, HostLimits, KvQuota, ScriptLimits};
pub use base::listing::{ListQuery, TagFilter};
pub use base::metadata::ScriptMetadata;
pub use base::names::{Name, NameError};
pub use base::settings::{NamespaceSettings, ScriptSettings};
pub use berth::{Berth, BerthBuilder, BerthError, Serving, shutdown_signal};
pub use config::{
    Config, ConfigError, DispatchConfig, DispatchWorkerSource, IsolationConfig, Mpk, Profiler,
    RuntimeConfig, ServerConfig,
};
pub use ops::{JsDeploy, JsUpload, NamespaceInfo, Ops, OpsError, OpsResult, SettingsView, Upload};
/// The error of an upload (an [`OpsError`]; the name of earlier releases).
pub type DeployError = OpsError;
pub use store::kv_usage::{KvUsage, Rewrites};
pub use store::{
    AssetConfig, AssetEntry, Blobs, Catalog, ClusterView, HostPresence, Hostnames, HtmlHandling,
    KvBucket, KvStore, NamespaceRecord, NamespaceStore, NatsStore, NewScript, NotFoundHandling,
    ScriptRecord, SledStore, StoreBackend, StoreChange, StoreConfig, StoreError, StoreResult,
    next_script_record,
};

/// Outbound HTTP policy and its seams (resolver, connector), for embedders
/// and tests that must not reach the network.
pub mod egress {
    pub use crate::capabilities::http::client::{BoxFuture, Connect, Stream, TcpConnector};
    pub use crate::capabilities::http::resolve::{Resolve, SystemResolver};
    pub use crate::capabilities::http::{Egress, EgressConfig, EgressError};
}

#[doc(hidden)]
pub mod fuzzing;
