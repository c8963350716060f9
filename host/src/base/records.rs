//! What the store keeps, as plain data: namespace and script records, asset
//! entries and options, and the timestamps they carry.
//!
//! Serialized as JSON by every store backend, so a field added here must
//! have a default that reads older records. Validation of the enumerations
//! lives beside the types; nothing here performs I/O.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::egress_rules::EgressRules;
use super::isolation::Isolation;
use super::limits::ScriptLimits;
use super::names::Name;

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
    pub isolation: Isolation,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetConfig {
    /// How a path finds an HTML page.
    pub html_handling: HtmlHandling,
    /// What answers when no asset matches.
    pub not_found_handling: NotFoundHandling,
    /// Run the worker first; assets are served only when it answers 404.
    pub run_worker_first: bool,
}

/// `settings.assets.html_handling`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HtmlHandling {
    /// `/about` also finds `/about.html` and `/about/index.html` (default).
    #[default]
    AutoTrailingSlash,
    /// Exact paths only.
    None,
}

/// `settings.assets.not_found_handling`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotFoundHandling {
    /// The worker runs (default).
    #[default]
    None,
    /// The nearest `404.html`, status 404.
    #[serde(rename = "404-page")]
    Page404,
    /// `/index.html`, status 200.
    SinglePageApplication,
}

/// A script's key-value bucket: the script and its generation (the
/// record's `created_ms`). A script deleted and created again under the
/// same name has a new generation, so it never reads, and is never charged
/// for, what its predecessor's instances wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvBucket {
    /// Namespace of the script.
    pub namespace: Name,
    /// The script.
    pub script: Name,
    /// The script's `created_ms`.
    pub generation: u64,
}

impl ScriptRecord {
    /// The script's KV bucket.
    pub fn kv_bucket(&self) -> KvBucket {
        KvBucket {
            namespace: self.namespace.clone(),
            script: self.name.clone(),
            generation: self.created_ms,
        }
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
