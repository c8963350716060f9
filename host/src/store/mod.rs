//! The namespace store: namespaces, scripts (component bytes and metadata)
//! and precompiled artifacts.
//!
//! [`NamespaceStore`] is the seam: today's implementation is
//! [`SledStore`](sled_store::SledStore), a clustered backend can implement
//! the same trait later. Contract for every implementation:
//! - a mutating call returns only after its effect is durable (flushed);
//! - a mutating call is atomic: a crash leaves either the old or the new
//!   state, never a script without its bytes or a half-deleted namespace;
//! - precompiled artifacts are only ever written by the host from its own
//!   compilation, never from anything a tenant uploaded.
//!
//! All methods block (disk I/O); async callers run them on a blocking thread.

pub mod sled_store;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::egress::rules::EgressRules;
use crate::limits::ScriptLimits;
use crate::names::Name;

pub use sled_store::SledStore;

/// A stored namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// The namespace's name.
    pub name: Name,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Egress rules for every script of the namespace.
    #[serde(default)]
    pub egress: EgressRules,
    /// Trusted namespaces' workers see platform metadata headers
    /// (`berth-client-ip`, `berth-request-id`, …); untrusted ones see none.
    #[serde(default)]
    pub trusted: bool,
}

/// Metadata of a stored script; its bytes live apart, keyed by `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRecord {
    /// Namespace holding the script.
    pub namespace: Name,
    /// The script's name.
    pub name: Name,
    /// Lowercase hex SHA-256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// Starts at 1 and grows by one with every redeploy.
    pub version: u64,
    /// First upload, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Latest upload, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Free-form labels (validated by the admin layer).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Environment variables the guest sees.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The script's own limits (the host's `[limits]` cap them).
    #[serde(default)]
    pub limits: ScriptLimits,
    /// The script's egress rules (they only narrow).
    #[serde(default)]
    pub egress: EgressRules,
    /// Static assets: URL path → content hash and size. The bytes live in
    /// the content-addressed blob store, shared with every other use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assets: BTreeMap<String, AssetEntry>,
    /// How assets are served.
    #[serde(default)]
    pub asset_config: AssetConfig,
    /// Fresh instance per request, or warm reuse.
    #[serde(default)]
    pub isolation: crate::runtime::reuse::Isolation,
    /// Secret environment variables: write-only through the API, kept
    /// across redeploys, never logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// One static asset of a script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// How a script's assets are served (`settings.assets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetConfig {
    /// `auto-trailing-slash` (default: `/about` also finds `/about.html`
    /// and `/about/index.html`) or `none` (exact paths only).
    pub html_handling: String,
    /// When no asset matches: `none` (default: the worker runs),
    /// `404-page` (the nearest `404.html`, status 404) or
    /// `single-page-application` (`/index.html`, status 200).
    pub not_found_handling: String,
    /// Run the worker first; assets are served only when it answers 404.
    pub run_worker_first: bool,
}

impl Default for AssetConfig {
    fn default() -> Self {
        Self {
            html_handling: "auto-trailing-slash".into(),
            not_found_handling: "none".into(),
            run_worker_first: false,
        }
    }
}

impl AssetConfig {
    /// Checks the enumerations, naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if !["auto-trailing-slash", "none"].contains(&self.html_handling.as_str()) {
            return Err(format!(
                "assets.html_handling must be \"auto-trailing-slash\" or \"none\", got {:?}",
                self.html_handling
            ));
        }
        if !["none", "404-page", "single-page-application"]
            .contains(&self.not_found_handling.as_str())
        {
            return Err(format!(
                "assets.not_found_handling must be \"none\", \"404-page\" or \"single-page-application\", got {:?}",
                self.not_found_handling
            ));
        }
        Ok(())
    }
}

/// Everything needed to store a new version of a script.
#[derive(Debug, Clone)]
pub struct NewScript {
    /// The component bytes as uploaded.
    pub content: Vec<u8>,
    /// Lowercase hex SHA-256 of `content`.
    pub sha256: String,
    /// Tags for the script; `None` keeps the previous version's.
    pub tags: Option<Vec<String>>,
    /// Environment variables for the guest; `None` keeps the previous.
    pub vars: Option<BTreeMap<String, String>>,
    /// The script's limits; `None` keeps the previous.
    pub limits: Option<ScriptLimits>,
    /// The script's egress rules; `None` keeps the previous.
    pub egress: Option<EgressRules>,
    /// The host's own precompiled artifact for `content`, with the engine
    /// compatibility hash it was built for, stored in the same transaction.
    pub artifact: Option<(String, Vec<u8>)>,
}

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
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Backend(String),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistence for namespaces, scripts and precompiled artifacts.
pub trait NamespaceStore: Send + Sync + 'static {
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
    /// The component bytes of a script as uploaded.
    fn script_content(&self, namespace: &Name, name: &Name) -> StoreResult<Option<Vec<u8>>>;
    /// Changes a script's metadata (settings, tags) with `change`, which
    /// may refuse with a message; code, hash and version stay. `None` if
    /// there is no such script.
    fn update_script(
        &self,
        namespace: &Name,
        name: &Name,
        change: &mut dyn FnMut(&mut ScriptRecord) -> Result<(), String>,
    ) -> StoreResult<Option<Result<ScriptRecord, String>>>;
    /// Changes a namespace's settings; `None` if it does not exist.
    fn update_namespace(
        &self,
        name: &Name,
        change: &mut dyn FnMut(&mut NamespaceRecord) -> Result<(), String>,
    ) -> StoreResult<Option<Result<NamespaceRecord, String>>>;
    /// Deletes a script; `false` if there was none.
    fn delete_script(&self, namespace: &Name, name: &Name) -> StoreResult<bool>;

    /// Maps a hostname (exact, or `*.suffix`) of a namespace to a script.
    fn put_hostname(&self, namespace: &Name, hostname: &str, script: &Name) -> StoreResult<()>;
    /// Removes a hostname mapping; `false` if there was none.
    fn delete_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<bool>;
    /// The script a hostname key maps to (exact key lookup).
    fn get_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<Option<Name>>;
    /// All hostname mappings of a namespace, by hostname.
    fn list_hostnames(&self, namespace: &Name) -> StoreResult<Vec<(String, Name)>>;

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

    /// A value of a script's key-value bucket.
    fn kv_get(&self, namespace: &Name, script: &Name, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets a value in a script's bucket (durable when this returns).
    fn kv_set(&self, namespace: &Name, script: &Name, key: &str, value: &[u8]) -> StoreResult<()>;
    /// Removes a key; `false` if there was none.
    fn kv_delete(&self, namespace: &Name, script: &Name, key: &str) -> StoreResult<bool>;
    /// Up to `limit` keys after `after` (exclusive), in order, and whether
    /// more follow.
    fn kv_list(
        &self,
        namespace: &Name,
        script: &Name,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)>;

    /// A precompiled artifact for (content hash, engine compatibility hash).
    fn get_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Whether a precompiled artifact exists (without reading it).
    fn has_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<bool> {
        Ok(self.get_artifact(sha256, engine_hash)?.is_some())
    }
    /// Stores a precompiled artifact, if its content is still referenced.
    fn put_artifact(&self, sha256: &str, engine_hash: &str, bytes: &[u8]) -> StoreResult<()>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a millisecond timestamp, for API output.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
