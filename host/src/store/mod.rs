//! The namespace store: namespaces, scripts (component bytes and metadata)
//! and precompiled artifacts.
//!
//! The seam is four small traits by area — [`Catalog`] (namespaces and
//! scripts), [`Blobs`] (content-addressed bytes and artifacts),
//! [`Hostnames`] and [`KvStore`] — and [`NamespaceStore`], any type that
//! has all four. Two backends: [`SledStore`], one
//! machine's embedded database (the default), and
//! [`NatsStore`], many hosts over one NATS JetStream
//! (`[store] backend = "nats"`, see docs/scale-out.md). A shared backend
//! reports writes made by other hosts through [`Catalog::changes`] so the
//! runtime can drop what it cached. This module depends on the
//! leaf layer ([`crate::base`]) only, never on the runtime or the API. Contract for every implementation:
//! - a mutating call returns only after its effect is durable (flushed);
//! - a mutating call is atomic: a crash leaves either the old or the new
//!   state, never a script without its bytes or a half-deleted namespace;
//! - precompiled artifacts are only ever written by the host from its own
//!   compilation, never from anything a tenant uploaded.
//!
//! All methods block (disk I/O); async callers run them on a blocking thread.

pub mod config;
pub mod kv_usage;
pub mod nats;
pub mod seal;
pub mod sled;

use std::collections::BTreeMap;

use crate::base::Invalid;
pub use crate::base::cluster::{ClusterView, HostPresence};
use crate::base::host_pattern::normalize_host;
pub use crate::base::limits::KvQuota;
use crate::base::names::Name;
pub use crate::base::records::{
    AssetConfig, AssetEntry, HtmlHandling, KvBucket, NamespaceRecord, NewScript, NotFoundHandling,
    ScriptRecord, now_ms, rfc3339,
};

pub use config::{StoreBackend, StoreConfig};
pub use nats::NatsStore;
pub use sled::SledStore;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The namespace does not exist.
    #[error("namespace {0:?} does not exist")]
    NamespaceNotFound(Name),
    /// The namespace already exists.
    #[error("namespace {0:?} already exists")]
    NamespaceExists(Name),
    /// Deleting a namespace that still holds scripts without `force`.
    #[error("namespace {name:?} still holds {scripts} script(s); delete them first or use force")]
    NamespaceNotEmpty {
        /// The namespace.
        name: Name,
        /// How many scripts it holds.
        scripts: usize,
    },
    /// A record on disk could not be decoded (corruption or a newer format).
    #[error("stored record {key:?} is unreadable: {message}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The decoding error.
        message: String,
    },
    /// An asset manifest names content that was neither uploaded nor stored.
    #[error("asset content missing for sha256 {0:?}; upload these files")]
    MissingAssets(Vec<String>),
    /// A KV write would take a bucket past its quota.
    #[error("kv-limit: {0}")]
    KvQuota(String),
    /// A KV write to the bucket of a script that was deleted (or deleted
    /// and created again) since the writing instance started.
    #[error("the KV bucket of {namespace}/{script} is gone: the script was deleted")]
    BucketGone {
        /// The script's namespace.
        namespace: Name,
        /// The script.
        script: Name,
    },
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Backend(String),
    /// The shared store cannot be reached (a clustered backend whose
    /// servers are down or partitioned away). Reads of what the host has
    /// cached still work; writes fail fast with this.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another host kept changing the same record while this write retried
    /// (compare-and-set lost every round).
    #[error("conflicting concurrent write to {0}; retry")]
    Conflict(String),
    /// The blocking thread running the store call died (a panic, or the
    /// runtime shutting down).
    #[error("the store task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Runs blocking store work on tokio's blocking pool: every store call may
/// touch the disk or the network, and an async worker thread must never
/// wait for that (other requests run there). The one such helper; a failed
/// task becomes [`StoreError::Task`] in the caller's error type.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(failed) => Err(StoreError::Task(failed).into()),
    }
}

/// A store failure reaching a request: answered as `internal`, with the
/// store's error kept as the cause.
impl From<StoreError> for crate::base::error::WorkerError {
    fn from(error: StoreError) -> Self {
        Self::Host(crate::base::error::HostFailure::new(error))
    }
}

/// A change another host (or this one) made to the shared catalog: what a
/// host must drop from its caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// A script's record changed or it was deleted.
    Script {
        /// Its namespace.
        namespace: Name,
        /// The script.
        name: Name,
    },
    /// A namespace's record changed or it was deleted.
    Namespace(Name),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Namespaces and scripts: the records every host must agree on.
pub trait Catalog: Send + Sync + 'static {
    /// Creates a namespace; fails if it exists.
    fn create_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord>;
    /// Creates a namespace unless it exists; returns it either way.
    fn ensure_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord>;
    /// Looks a namespace up.
    fn get_namespace(&self, name: &Name) -> StoreResult<Option<NamespaceRecord>>;
    /// All namespaces, by name.
    fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>>;
    /// Deletes a namespace. Without `force` it must be empty; with `force`
    /// its scripts go too. Returns the names of the scripts deleted.
    fn delete_namespace(&self, name: &Name, force: bool) -> StoreResult<Vec<Name>>;

    /// Stores a new version of a script (creating it or replacing it).
    fn put_script(
        &self,
        namespace: &Name,
        name: &Name,
        script: NewScript,
    ) -> StoreResult<ScriptRecord>;
    /// Looks a script's metadata up.
    fn get_script(&self, namespace: &Name, name: &Name) -> StoreResult<Option<ScriptRecord>>;
    /// All scripts of a namespace, by name.
    fn list_scripts(&self, namespace: &Name) -> StoreResult<Vec<ScriptRecord>>;
    /// Changes a script's metadata (settings, tags) with `change`, which
    /// may refuse; code, hash and version stay. `None` if there is no such
    /// script; `Some(Err(..))` carries the refusal and changes nothing.
    fn update_script(
        &self,
        namespace: &Name,
        name: &Name,
        change: &mut dyn FnMut(&mut ScriptRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<ScriptRecord, Invalid>>>;
    /// Changes a namespace's settings; `None` if it does not exist.
    fn update_namespace(
        &self,
        name: &Name,
        change: &mut dyn FnMut(&mut NamespaceRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<NamespaceRecord, Invalid>>>;
    /// Deletes a script; `false` if there was none.
    fn delete_script(&self, namespace: &Name, name: &Name) -> StoreResult<bool>;

    /// Changes to the catalog made elsewhere, for backends shared by many
    /// hosts (`None`: only this host writes, and it evicts as it writes).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }

    /// The backend's name (`sled`, `nats`), as the dashboard's cluster view
    /// shows it; `custom` unless a store says.
    fn backend(&self) -> &'static str {
        "custom"
    }

    /// Tells the other hosts sharing this store that this one is alive and
    /// how many scripts it has loaded. A background task calls it every
    /// few seconds. A store only this host uses has nobody to tell (the
    /// default does nothing).
    fn announce(&self, loaded_scripts: u64) -> StoreResult<()> {
        let _ = loaded_scripts;
        Ok(())
    }

    /// The hosts sharing this store as they last announced themselves,
    /// this one included, by id; `None` for a store only this host uses
    /// (the default).
    fn cluster(&self) -> StoreResult<Option<ClusterView>> {
        Ok(None)
    }
}

/// This machine's name, as a host id starts with: the kernel's host name
/// cut to what a host id may hold, or `berth` if there is none.
pub fn machine_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    if name.is_empty() {
        "berth".into()
    } else {
        name
    }
}

/// The record a new version of a script gets: what the upload says, and
/// what it does not say kept from the previous version (secrets, settings
/// and assets always are). Shared by every backend so they agree.
pub fn next_script_record(
    namespace: &Name,
    name: &Name,
    script: &NewScript,
    old: Option<&ScriptRecord>,
    now: u64,
) -> ScriptRecord {
    ScriptRecord {
        namespace: namespace.clone(),
        name: name.clone(),
        sha256: script.sha256.clone(),
        size: script.content.len() as u64,
        version: old.map_or(1, |o| o.version + 1),
        created_ms: old.map_or(now, |o| o.created_ms),
        modified_ms: now,
        tags: script
            .tags
            .clone()
            .or_else(|| old.map(|o| o.tags.clone()))
            .unwrap_or_default(),
        vars: script
            .vars
            .clone()
            .or_else(|| old.map(|o| o.vars.clone()))
            .unwrap_or_default(),
        limits: script
            .limits
            .or_else(|| old.map(|o| o.limits))
            .unwrap_or_default(),
        egress: script
            .egress
            .clone()
            .or_else(|| old.map(|o| o.egress.clone()))
            .unwrap_or_default(),
        secrets: old.map(|o| o.secrets.clone()).unwrap_or_default(),
        isolation: old.map(|o| o.isolation.clone()).unwrap_or_default(),
        // Assets belong to the script, not to one build.
        assets: old.map(|o| o.assets.clone()).unwrap_or_default(),
        asset_config: old.map(|o| o.asset_config.clone()).unwrap_or_default(),
    }
}

/// Content-addressed bytes: components, assets, and the host's own
/// precompiled artifacts.
pub trait Blobs: Send + Sync + 'static {
    /// The component bytes of a script as uploaded.
    fn script_content(&self, namespace: &Name, name: &Name) -> StoreResult<Option<Vec<u8>>>;
    /// Replaces a script's asset manifest. `files` holds the bytes of the
    /// hashes the store may not have yet; a manifest hash that is neither
    /// stored nor in `files` fails with [`StoreError::MissingAssets`] and
    /// changes nothing.
    fn put_assets(
        &self,
        namespace: &Name,
        name: &Name,
        manifest: BTreeMap<String, AssetEntry>,
        files: BTreeMap<String, Vec<u8>>,
    ) -> StoreResult<Option<ScriptRecord>>;
    /// The bytes of a stored blob (component or asset), by hash.
    fn blob(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The host's precompiled artifact for content `sha256` built by an
    /// engine with compatibility hash `engine_hash`.
    fn get_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Whether such an artifact is stored.
    fn has_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<bool> {
        Ok(self.get_artifact(sha256, engine_hash)?.is_some())
    }
    /// Stores an artifact the host compiled itself (never tenant bytes).
    fn put_artifact(&self, sha256: &str, engine_hash: &str, bytes: &[u8]) -> StoreResult<()>;
}

/// Hostname tables of namespaces (custom hostnames → scripts).
pub trait Hostnames: Send + Sync + 'static {
    /// Maps a hostname (exact, or `*.suffix`) of a namespace to a script.
    fn put_hostname(&self, namespace: &Name, hostname: &str, script: &Name) -> StoreResult<()>;
    /// Removes a hostname mapping; `false` if there was none.
    fn delete_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<bool>;
    /// The script a hostname key maps to (exact key lookup).
    fn get_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<Option<Name>>;
    /// All hostname mappings of a namespace, by hostname.
    fn list_hostnames(&self, namespace: &Name) -> StoreResult<Vec<(String, Name)>>;

    /// The script the namespace's table maps a request's `host` to: the
    /// exact entry if there is one, else the most specific `*.suffix` entry
    /// (`*.eu.example.com` before `*.example.com`). Port, case and a
    /// trailing dot are ignored.
    fn lookup(&self, namespace: &Name, host: &str) -> StoreResult<Option<Name>> {
        let host = normalize_host(host);
        if host.is_empty() {
            return Ok(None);
        }
        if let Some(script) = self.get_hostname(namespace, &host)? {
            return Ok(Some(script));
        }
        let mut rest = host.as_str();
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(script) = self.get_hostname(namespace, &format!("*.{suffix}"))? {
                return Ok(Some(script));
            }
            rest = suffix;
        }
        Ok(None)
    }
}

/// Scripts' key-value buckets (`wasi:keyvalue`), one per script
/// *generation* ([`KvBucket`]): a script deleted and created again under
/// the same name starts with an empty bucket, and an instance of the
/// deleted one can neither read the new bucket nor write anywhere.
pub trait KvStore: Send + Sync + 'static {
    /// A value of a bucket.
    fn kv_get(&self, bucket: &KvBucket, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets a value (durable when this returns). Refused with
    /// [`StoreError::KvQuota`] when the bucket would hold more than `quota`
    /// (keys, or bytes of keys and values; see the `kv_usage` module), and with
    /// [`StoreError::BucketGone`] when the bucket's generation is not the
    /// script's current one.
    fn kv_set(&self, bucket: &KvBucket, key: &str, value: &[u8], quota: KvQuota)
    -> StoreResult<()>;
    /// Removes a key; `false` if there was none.
    fn kv_delete(&self, bucket: &KvBucket, key: &str) -> StoreResult<bool>;
    /// Up to `limit` keys after `after` (exclusive), in order, and whether
    /// more follow.
    fn kv_list(
        &self,
        bucket: &KvBucket,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)>;
}

/// A complete backend: every area. Implemented automatically for any type
/// that implements the four area traits.
pub trait NamespaceStore: Catalog + Blobs + Hostnames + KvStore {}

impl<T: Catalog + Blobs + Hostnames + KvStore> NamespaceStore for T {}

#[cfg(test)]
mod lookup_tests {
    use super::*;

    #[test]
    fn hostname_lookup_prefers_exact_then_longest_wildcard() {
        use crate::store::{Catalog, Hostnames, SledStore};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let ns = Name::new("ns").unwrap();
        store.create_namespace(&ns).unwrap();
        let n = |s: &str| Name::new(s).unwrap();
        store.put_hostname(&ns, "*.example.com", &n("any")).unwrap();
        store
            .put_hostname(&ns, "*.eu.example.com", &n("eu"))
            .unwrap();
        store
            .put_hostname(&ns, "shop.eu.example.com", &n("shop"))
            .unwrap();
        let get = |h: &str| store.lookup(&ns, h).unwrap().map(|s| s.to_string());
        assert_eq!(get("Shop.EU.example.com:443").as_deref(), Some("shop"));
        assert_eq!(get("blog.eu.example.com").as_deref(), Some("eu"));
        assert_eq!(get("a.b.eu.example.com").as_deref(), Some("eu"));
        assert_eq!(get("www.example.com").as_deref(), Some("any"));
        assert_eq!(get("example.com"), None);
        assert_eq!(get("other.org"), None);
    }
}
