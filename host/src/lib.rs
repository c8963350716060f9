//! # Berth host
//!
//! A self-hosted, multi-tenant host for WASI-HTTP components: platforms
//! upload their customers' components into *dispatch namespaces* and Berth
//! serves requests with them, each in a fresh, limited sandbox.
//!
//! The modules follow a request and an upload:
//! - [`config`]: `berth.toml`, every key optional and documented.
//! - [`names`]: validated namespace/script identifiers.
//! - [`store`]: namespaces, scripts and precompiled artifacts (sled).
//! - [`runtime`]: the shared engine, epoch ticker, worker cache, invocation.
//! - [`limits`]: per-instance resource limits enforced through Wasmtime hooks.
//! - [`egress`]: the single choke point for guests' outbound HTTP.
//! - [`metrics`]: Prometheus metrics with bounded label cardinality.
//! - [`tail`]: live per-script event streams.
//! - [`kv`]: `wasi:keyvalue` buckets, one per script, in the store.
//! - [`errors`]: worker failures and their `x-berth-error` codes.
//! - [`deploy`]: validate → compile → store, independent of HTTP.
//! - [`dispatch`]: `[[dispatch]]` routing and the host side of the
//!   `berth:platform/dispatcher` interface dispatch workers import.
//! - [`dataplane`]: the tenant-facing listener and built-in router.
//! - [`admin`]: the token-protected management API.
//! - [`settings`]: script settings (limits, vars) and their merge-patch updates.
//! - [`server`]: wiring it all up, graceful shutdown.
//! - [`cli`] and [`client`]: the `berth` command line.
#![deny(missing_docs)]

pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
pub mod dataplane;
pub mod deploy;
pub mod dispatch;
pub mod egress;
pub mod errors;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod store;
pub mod tail;

pub use config::Config;
pub use server::Server;
