//! `berth.toml`: the host's configuration file.
//!
//! Every key is optional; each default is defined exactly once, in the
//! `Default` impl of its section, and the defaults are what `berth serve` runs
//! on when no file is given. Unknown keys are rejected (serde
//! `deny_unknown_fields`) so a typo never silently falls back to a default.
//! The reference for every key is `docs/config.md`; a unit test keeps the two
//! in step.

use crate::base::{Invalid, require_positive};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::names::Name;
pub use crate::runtime::config::{Mpk, Profiler, RuntimeConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, storage location and admin access.
    pub server: ServerConfig,
    /// Engine and pooling-allocator sizing.
    pub runtime: RuntimeConfig,
    /// Per-request limits: host defaults, which are also ceilings.
    pub limits: crate::limits::HostLimits,
    /// Outbound policy for guests.
    pub egress: crate::capabilities::http::EgressConfig,
    /// `[[dispatch]]`: dispatch workers and the hostnames they serve.
    pub dispatch: Vec<DispatchConfig>,
    /// `[store]`: sled on this machine (default) or a shared NATS JetStream.
    pub store: crate::store::StoreConfig,
    /// `[js]`: building plain JavaScript uploads on the host.
    pub js: crate::js::JsConfig,
}

/// One `[[dispatch]]` entry: a platform's dispatch worker, the hostnames it
/// serves, and the one namespace its `dispatcher.get` can reach.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// Hostname patterns: `example.com` (exact) or `*.example.com` (any
    /// subdomain, one or more labels deep).
    pub hostnames: Vec<String>,
    /// The dispatch worker: a path to a `.wasm` file (relative to the config
    /// file's directory), or `namespace/script` from the store.
    pub worker: String,
    /// The dispatch namespace this worker's `get` reaches; created at start
    /// if missing.
    pub namespace: Name,
    /// Wall-clock limit of the dispatch worker per request (ms); defaults
    /// to `limits.wall_ms`, cannot exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// CPU-time limit of the dispatch worker per request (ms); defaults to
    /// and cannot exceed `limits.cpu_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Linear memory of the dispatch worker (MiB); defaults to and cannot
    /// exceed `limits.memory_mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Environment variables of a file-based dispatch worker (its settings,
    /// e.g. the platform domain). A stored script uses its own vars.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<String, String>,
    /// An outbound worker (`.wasm` file) that receives every outbound
    /// request of the user workers this entry dispatches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_worker: Option<PathBuf>,
    /// Requests this entry's dispatch worker serves at once (each holds a
    /// dispatch worker instance while its user workers run). Default:
    /// `runtime.instances`, so the pool is the bound. Not capped by
    /// `[limits] max_concurrency`, which is per tenant: a tenant waiting on
    /// I/O then fills its own gate, never the platform's dispatch worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Warm reuse for a file-based dispatch worker, as a script's
    /// `settings.isolation`: `"fresh"` (default: a fresh instance per
    /// request) or `"reuse"`, tuned by the `reuse_*` keys beside it. The
    /// dispatch worker is the platform's own code, so reusing its instance
    /// across customers' requests is the platform's choice to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationConfig>,
    /// Requests one warm instance may serve (with `isolation = "reuse"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_max_requests: Option<u32>,
    /// How long a warm instance may sit idle, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_idle_ms: Option<u64>,
    /// Warm instances kept idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_max_idle: Option<u32>,
}

/// `isolation` of a `[[dispatch]]` entry: the mode as a string (the
/// documented form), or a table with the mode and its tuning keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IsolationConfig {
    /// `isolation = "reuse"`.
    Mode(crate::base::isolation::IsolationMode),
    /// `isolation = { mode = "reuse", reuse_max_requests = 100 }`.
    Table(crate::base::isolation::Isolation),
}

impl<'de> Deserialize<'de> for IsolationConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IsolationConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""fresh", "reuse" or a table { mode = "reuse", ... }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map(IsolationConfig::Mode).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(IsolationConfig::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Where a dispatch worker's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchWorkerSource {
    /// A `.wasm` file on the host.
    File(PathBuf),
    /// A script in the store.
    Script {
        /// Its namespace.
        namespace: Name,
        /// Its name.
        name: Name,
    },
}

impl DispatchConfig {
    /// An entry serving `hostnames` with `worker` (a `.wasm` path or
    /// `namespace/script`), bound to `namespace`; every other key at its
    /// default. Set the public fields to change them.
    pub fn new(hostnames: Vec<String>, worker: impl Into<String>, namespace: Name) -> Self {
        Self {
            hostnames,
            worker: worker.into(),
            namespace,
            wall_ms: None,
            cpu_ms: None,
            memory_mb: None,
            vars: Default::default(),
            outbound_worker: None,
            max_concurrency: None,
            isolation: None,
            reuse_max_requests: None,
            reuse_idle_ms: None,
            reuse_max_idle: None,
        }
    }

    /// The entry's isolation, combining `isolation` with the `reuse_*`
    /// keys beside it (which win over the same keys inside a table).
    /// `None` when the entry sets none of them.
    pub fn resolved_isolation(&self) -> Option<crate::base::isolation::Isolation> {
        let tuned = self.reuse_max_requests.is_some()
            || self.reuse_idle_ms.is_some()
            || self.reuse_max_idle.is_some();
        let mut isolation = match &self.isolation {
            None if !tuned => return None,
            None => crate::base::isolation::Isolation::default(),
            Some(IsolationConfig::Mode(mode)) => crate::base::isolation::Isolation {
                mode: *mode,
                ..Default::default()
            },
            Some(IsolationConfig::Table(table)) => table.clone(),
        };
        if let Some(v) = self.reuse_max_requests {
            isolation.reuse_max_requests = v;
        }
        if let Some(v) = self.reuse_idle_ms {
            isolation.reuse_idle_ms = v;
        }
        if let Some(v) = self.reuse_max_idle {
            isolation.reuse_max_idle = v;
        }
        Some(isolation)
    }

    /// Where the worker comes from: `*.wasm` is a file, `ns/script` a
    /// stored script.
    pub fn source(&self) -> Result<DispatchWorkerSource, ConfigError> {
        let w = self.worker.trim();
        if w.ends_with(".wasm") {
            return Ok(DispatchWorkerSource::File(PathBuf::from(w)));
        }
        let bad = |why: String| {
            ConfigError::Invalid(Invalid(format!(
                "dispatch.worker {w:?}: {why}; use a path ending in .wasm or namespace/script"
            )))
        };
        let (ns, script) = w.split_once('/').ok_or_else(|| bad("no '/'".into()))?;
        Ok(DispatchWorkerSource::Script {
            namespace: Name::new(ns).map_err(|e| bad(e.to_string()))?,
            name: Name::new(script).map_err(|e| bad(e.to_string()))?,
        })
    }
}

/// `[server]`: listeners, data directory, admin access.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Data-plane listener (tenant traffic).
    pub listen: SocketAddr,
    /// Admin API listener. Keep it off public interfaces.
    pub admin_listen: SocketAddr,
    /// Where the sled store and the generated admin token live.
    pub data_dir: PathBuf,
    /// Admin bearer token. `BERTH_ADMIN_TOKEN` overrides it; when neither is
    /// set a token is generated into `<data_dir>/admin-token`.
    pub admin_token: Option<String>,
    /// Namespace the built-in router serves from; created on first start.
    pub default_namespace: Name,
    /// Map `<script>.<anything>` hosts to scripts of the default namespace.
    pub builtin_router: bool,
    /// Largest accepted admin upload (a component plus metadata), in MiB.
    pub max_upload_mb: u64,
    /// How long shutdown waits for in-flight requests to finish, in seconds.
    pub shutdown_grace_secs: u64,
    /// Static `berth-*` headers added to requests of trusted namespaces
    /// (region, PoP, …), next to `berth-client-ip` and `berth-request-id`.
    pub trusted_headers: std::collections::BTreeMap<String, String>,
    /// Show clients a worker's trap text and stderr, and host-internal
    /// error details, instead of a fixed message with the request id. For
    /// local development only (`make run` turns it on): they can carry a
    /// tenant's secrets. Logs, tail and dispatch workers always get them.
    pub expose_error_details: bool,
    /// Connections open at once per listener; past it a new connection is
    /// answered `503 overloaded` and closed.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, from opening the
    /// connection or from the first byte of a later request on it, ms (at
    /// most 30,000).
    pub request_head_timeout_ms: u64,
    /// Time a kept-alive connection may sit with no request, ms.
    pub idle_timeout_ms: u64,
    /// Longest wait for the next piece of a request body, ms.
    pub body_read_timeout_ms: u64,
    /// A client that accepts no byte of a response for this long is
    /// dropped (ms): a slow reader cannot hold a connection, a worker's
    /// body and its buffers for ever.
    pub response_write_timeout_ms: u64,
    /// The key sealing script secrets at rest (32 bytes; created on first
    /// start). Default `<data_dir>/secrets.key`; keep it apart from the
    /// store's backups.
    pub secrets_key_file: Option<PathBuf>,
}

/// Longest `server.request_head_timeout_ms` accepted: a slow-head client
/// holds a connection this long at most.
const MAX_HEAD_TIMEOUT_MS: u64 = 30_000;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8788)),
            data_dir: PathBuf::from("./berth-data"),
            admin_token: None,
            default_namespace: Name::new("default").expect("static name is valid"),
            builtin_router: true,
            max_upload_mb: 64,
            shutdown_grace_secs: 30,
            trusted_headers: Default::default(),
            expose_error_details: false,
            max_connections: 4096,
            request_head_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
            response_write_timeout_ms: 30_000,
            secrets_key_file: None,
        }
    }
}

/// A configuration problem, naming the file and key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type…).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is out of range; the message names the key.
    #[error("invalid config: {0}")]
    Invalid(#[from] Invalid),
}

impl Config {
    /// Loads `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let mut config = config;
        // Relative dispatch worker files are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for entry in &mut config.dispatch {
            if let Some(file) = &entry.outbound_worker
                && file.is_relative()
            {
                entry.outbound_worker = Some(base.join(file));
            }
            if let Ok(DispatchWorkerSource::File(file)) = entry.source()
                && file.is_relative()
            {
                entry.worker = base.join(file).to_string_lossy().into_owned();
            }
        }
        if let Some(file) = &config.store.artifact_key_file
            && file.is_relative()
        {
            config.store.artifact_key_file = Some(base.join(file));
        }
        for dir in [&mut config.js.engine_dir, &mut config.js.cache_dir] {
            if let Some(relative) = dir.as_ref().filter(|d| d.is_relative()) {
                *dir = Some(base.join(relative));
            }
        }
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot, section by section (each
    /// section's own rules live beside its type), then the rules that
    /// tie sections together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.runtime.validate()?;
        self.limits.validate()?;
        self.server.validate()?;
        for (i, entry) in self.dispatch.iter().enumerate() {
            entry
                .validate(&self.server)
                .map_err(|e| Invalid(format!("dispatch[{i}].{e}")))?;
        }
        self.egress.validate()?;
        self.store.validate()?;
        self.js.validate()?;
        if self.store.backend == crate::store::StoreBackend::Nats
            && self.server.secrets_key_file.is_none()
            && !self.store.shared_secrets_key
        {
            return Err(Invalid(
                "a NATS host needs server.secrets_key_file (the same 32-byte key file on every \
                 host) to seal script secrets; or set store.shared_secrets_key = true to keep \
                 the sealing key in the NATS records bucket beside the sealed secrets (anyone \
                 who can read that bucket can then read every secret)"
                    .into(),
            )
            .into());
        }
        if self.limits.memory_mb > self.runtime.max_memory_mb {
            return Err(Invalid(format!(
                "limits.memory_mb ({}) must not exceed runtime.max_memory_mb ({}), the size of a pool memory slot",
                self.limits.memory_mb, self.runtime.max_memory_mb
            ))
            .into());
        }
        Ok(())
    }
}

impl ServerConfig {
    /// Checks `[server]`, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        require_positive(
            "server",
            &[
                ("max_upload_mb", self.max_upload_mb),
                ("max_connections", self.max_connections as u64),
                ("request_head_timeout_ms", self.request_head_timeout_ms),
                ("idle_timeout_ms", self.idle_timeout_ms),
                ("body_read_timeout_ms", self.body_read_timeout_ms),
                ("response_write_timeout_ms", self.response_write_timeout_ms),
            ],
        )?;
        if self.request_head_timeout_ms > MAX_HEAD_TIMEOUT_MS {
            return Err(Invalid(format!(
                "server.request_head_timeout_ms must be at most {MAX_HEAD_TIMEOUT_MS}"
            )));
        }
        crate::base::platform_headers::validate_trusted_headers(&self.trusted_headers)?;
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err("server.listen and server.admin_listen must differ".into());
        }
        Ok(())
    }
}

impl DispatchConfig {
    /// Checks one `[[dispatch]]` entry against `server`; the message names
    /// the key within the entry (the caller adds `dispatch[i].`).
    pub fn validate(&self, server: &ServerConfig) -> Result<(), Invalid> {
        if self.hostnames.is_empty() {
            return Err("hostnames must list at least one hostname".into());
        }
        for pattern in &self.hostnames {
            crate::base::host_pattern::HostPattern::parse(pattern)
                .map_err(|e| Invalid(format!("hostnames: {e}")))?;
        }
        let source = self.source().map_err(|e| Invalid(e.to_string()))?;
        let file = matches!(source, DispatchWorkerSource::File(_));
        if let DispatchWorkerSource::Script { namespace, name } = &source
            && *namespace == self.namespace
        {
            return Err(Invalid(format!(
                "worker {namespace}/{name} is a script of the namespace it dispatches to: its \
                 tenants could replace the platform's dispatch worker; keep it in a namespace \
                 of its own"
            )));
        }
        if server.builtin_router && self.namespace == server.default_namespace {
            return Err(Invalid(format!(
                "namespace {:?} is also server.default_namespace, which the built-in router \
                 serves: clients could reach its scripts without the dispatch worker; use \
                 another namespace or set server.builtin_router = false",
                self.namespace.as_str()
            )));
        }
        if !self.vars.is_empty() && !file {
            return Err(
                "vars applies only to .wasm file workers; give a stored dispatch \
                        script its vars with `berth deploy --var`"
                    .into(),
            );
        }
        if let Some(isolation) = &self.resolved_isolation() {
            if !file {
                return Err("isolation applies only to .wasm file workers; a stored \
                            dispatch script uses its settings.isolation"
                    .into());
            }
            isolation.validate()?;
        }
        for (key, value) in [
            ("wall_ms", self.wall_ms),
            ("cpu_ms", self.cpu_ms),
            ("memory_mb", self.memory_mb),
            ("max_concurrency", self.max_concurrency.map(u64::from)),
        ] {
            if value == Some(0) {
                return Err(Invalid(format!("{key} must be greater than 0")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:8788");
        assert_eq!(c.server.default_namespace.as_str(), "default");
        assert_eq!(c.server.max_upload_mb, 64);
        assert_eq!(c.runtime.instances, 1000);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = Config::parse("[serverz]\n").unwrap_err();
        assert!(err.to_string().contains("serverz"), "{err}");
    }

    #[test]
    fn a_dispatch_worker_cannot_live_in_the_namespace_it_serves() {
        let err = Config::parse(
            "[[dispatch]]\nhostnames = [\"*.p.test\"]\nworker = \"customers/router\"\nnamespace = \"customers\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("dispatch[0].worker customers/router"), "{err}");
        assert!(err.contains("namespace of its own"), "{err}");
        // From another namespace it is fine.
        Config::parse(
            "[[dispatch]]\nhostnames = [\"*.p.test\"]\nworker = \"platform/router\"\nnamespace = \"customers\"\n",
        )
        .unwrap();
    }

    #[test]
    fn the_built_in_router_cannot_bypass_a_dispatch_worker() {
        let entry = "[[dispatch]]\nhostnames = [\"*.p.test\"]\nworker = \"d.wasm\"\nnamespace = \"default\"\n";
        let err = Config::parse(entry).unwrap_err().to_string();
        assert!(err.contains("server.default_namespace"), "{err}");
        // Without the built-in router, or with another default namespace,
        // nothing bypasses the dispatch worker.
        Config::parse(&format!("[server]\nbuiltin_router = false\n\n{entry}")).unwrap();
        Config::parse(&format!("[server]\ndefault_namespace = \"web\"\n\n{entry}")).unwrap();
    }

    #[test]
    fn listener_limits_are_bounded() {
        for (text, needle) in [
            (
                "[server]\nrequest_head_timeout_ms = 30001\n",
                "at most 30000",
            ),
            (
                "[server]\nrequest_head_timeout_ms = 0\n",
                "request_head_timeout_ms",
            ),
            ("[server]\nmax_connections = 0\n", "max_connections"),
            ("[server]\nidle_timeout_ms = 0\n", "idle_timeout_ms"),
            (
                "[server]\nbody_read_timeout_ms = 0\n",
                "body_read_timeout_ms",
            ),
            ("[egress]\nports = [\"0\"]\n", "egress.ports"),
            ("[egress]\nports = [\"443-80\"]\n", "egress.ports"),
            ("[egress]\nmax_hops = 0\n", "max_hops"),
            (
                "[egress]\nnameservers = [\"not an address\"]\n",
                "nameservers",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let defaults = Config::default();
        assert_eq!(defaults.server.request_head_timeout_ms, 10_000);
        assert_eq!(defaults.egress.ports, ["80", "443"]);
        assert!(!defaults.server.expose_error_details);
    }

    #[test]
    fn dispatch_entries_parse_and_validate() {
        let c = Config::parse(
            "[[dispatch]]\nhostnames = [\"*.example.com\", \"example.com\"]\nworker = \"platform/router\"\nnamespace = \"customers\"\n\n[[dispatch]]\nhostnames = [\"staging.example.net\"]\nworker = \"dispatch.wasm\"\nnamespace = \"staging\"\nwall_ms = 500\n",
        )
        .unwrap();
        assert_eq!(c.dispatch.len(), 2);
        assert_eq!(
            c.dispatch[0].source().unwrap(),
            DispatchWorkerSource::Script {
                namespace: Name::new("platform").unwrap(),
                name: Name::new("router").unwrap()
            }
        );
        assert_eq!(
            c.dispatch[1].source().unwrap(),
            DispatchWorkerSource::File("dispatch.wasm".into())
        );
        assert_eq!(c.dispatch[1].wall_ms, Some(500));

        for (text, needle) in [
            (
                "[[dispatch]]\nhostnames = []\nworker = \"a/b\"\nnamespace = \"x\"\n",
                "at least one",
            ),
            (
                "[[dispatch]]\nhostnames = [\"*.\"]\nworker = \"a/b\"\nnamespace = \"x\"\n",
                "*.",
            ),
            (
                "[[dispatch]]\nhostnames = [\"a.com\"]\nworker = \"router\"\nnamespace = \"x\"\n",
                "router",
            ),
            (
                "[[dispatch]]\nhostnames = [\"a.com\"]\nworker = \"a/b\"\nnamespace = \"X\"\n",
                "X",
            ),
            (
                "[[dispatch]]\nhostnames = [\"a.com\"]\nworker = \"a/b\"\nnamespace = \"x\"\nhost = 1\n",
                "host",
            ),
            (
                "[[dispatch]]\nhostnames = [\"a.com\"]\nworker = \"a/b\"\nnamespace = \"x\"\nwall_ms = 0\n",
                "wall_ms",
            ),
            (
                "[[dispatch]]\nhostnames = [\"a.com\"]\nworker = \"a/b\"\nnamespace = \"x\"\nvars = { A = \"b\" }\n",
                "vars",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn dispatch_isolation_takes_the_string_and_the_table_form() {
        let entry = |extra: &str| {
            format!(
                "[[dispatch]]\nhostnames = [\"*.p.test\"]\nworker = \"d.wasm\"\nnamespace = \"c\"\n{extra}\n"
            )
        };
        let flat = Config::parse(&entry("isolation = \"reuse\"\nreuse_max_requests = 7")).unwrap();
        let iso = flat.dispatch[0].resolved_isolation().unwrap();
        assert!(iso.reuse());
        assert_eq!(iso.reuse_max_requests, 7);
        assert_eq!(iso.reuse_max_idle, 4);
        let table = Config::parse(&entry(
            "isolation = { mode = \"reuse\", reuse_idle_ms = 5 }",
        ))
        .unwrap();
        let iso = table.dispatch[0].resolved_isolation().unwrap();
        assert!(iso.reuse());
        assert_eq!(iso.reuse_idle_ms, 5);
        let none = Config::parse(&entry("")).unwrap();
        assert_eq!(none.dispatch[0].resolved_isolation(), None);
        for (extra, needle) in [
            (
                "isolation = \"shared\"",
                "must be \"fresh\" or \"reuse\", got \"shared\"",
            ),
            ("isolation = { mode = \"reuse\", max = 1 }", "max"),
            ("isolation = 3", "isolation"),
            (
                "isolation = \"reuse\"\nreuse_max_idle = 0",
                "dispatch[0].reuse_max_idle",
            ),
        ] {
            let err = Config::parse(&entry(extra)).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn bad_values_are_rejected() {
        let err = Config::parse("[server]\ndefault_namespace = \"Bad Name\"\n").unwrap_err();
        assert!(err.to_string().contains("Bad Name"), "{err}");
        let err = Config::parse("[runtime]\nmpk = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
        let c = Config::parse("[runtime]\nmpk = \"auto\"\n").unwrap();
        assert_eq!(c.runtime.mpk, Mpk::Auto);
        let err = Config::parse("[runtime]\nprofiler = \"jitdump\"\n").unwrap_err();
        assert!(err.to_string().contains("jitdump"), "{err}");
        let c = Config::parse("[runtime]\nprofiler = \"perfmap\"\n").unwrap();
        assert_eq!(c.runtime.profiler, Profiler::Perfmap);
        let err = Config::parse("[runtime]\ninstances = 0\n").unwrap_err();
        assert!(err.to_string().contains("runtime.instances"), "{err}");
        let err = Config::parse("[server]\nlisten = \"nope\"\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    /// Every key of every section must be documented in docs/config.md. The
    /// keys come from serializing the defaults, so a new key cannot be missed.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/config.md");
        let mut config = Config::default();
        config.dispatch.push(DispatchConfig {
            hostnames: vec!["*.example.com".into()],
            worker: "dispatcher.wasm".into(),
            namespace: Name::new("customers").unwrap(),
            wall_ms: Some(1),
            cpu_ms: Some(1),
            memory_mb: Some(1),
            vars: [("PLATFORM_DOMAIN".to_string(), "example.com".to_string())].into(),
            outbound_worker: Some("outbound.wasm".into()),
            max_concurrency: Some(1),
            isolation: Some(IsolationConfig::Mode(
                crate::base::isolation::IsolationMode::Reuse,
            )),
            reuse_max_requests: Some(1),
            reuse_idle_ms: Some(1),
            reuse_max_idle: Some(1),
        });
        config.egress.allow_private.push("127.0.0.1/32".into());
        config
            .server
            .trusted_headers
            .insert("berth-region".into(), "eu".into());
        config
            .egress
            .hosts
            .insert("api.internal".into(), vec!["10.0.0.1".parse().unwrap()]);
        let defaults = toml::Value::try_from(config).unwrap();
        // `None` by default, so not serialized.
        let mut keys = vec![
            "admin_token".to_owned(),
            "secrets_key_file".to_owned(),
            "artifact_key_file".to_owned(),
        ];
        for (section, value) in defaults.as_table().unwrap() {
            let table = match value {
                toml::Value::Array(entries) => {
                    assert!(
                        doc.contains(&format!("[[{section}]]")),
                        "docs/config.md lacks [[{section}]]"
                    );
                    entries[0].as_table().unwrap()
                }
                other => {
                    assert!(
                        doc.contains(&format!("[{section}]")),
                        "docs/config.md lacks [{section}]"
                    );
                    other.as_table().unwrap()
                }
            };
            keys.extend(table.keys().cloned());
        }
        for key in keys {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/config.md lacks `{key}`"
            );
        }
    }
}
