//! `[store]`: which backend holds the namespaces, and how to reach it.
//!
//! `backend = "sled"` (the default) keeps everything in `server.data_dir`
//! on this machine; `backend = "nats"` shares one NATS JetStream between
//! any number of hosts (docs/scale-out.md). This module only describes and
//! checks the section; opening a backend is [`super::nats::NatsStore`]'s
//! and [`super::SledStore`]'s business.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::base::Invalid;

/// Which store backend a host uses.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Embedded sled database under `server.data_dir` (one machine).
    #[default]
    Sled,
    /// NATS JetStream KV and Object Store (many hosts).
    Nats,
}

/// The `[store]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sled` (default) or `nats`.
    pub backend: StoreBackend,
    /// NATS server URLs, comma-separated seeds (`backend = "nats"`).
    pub url: String,
    /// Prefix of every bucket and subject this cluster uses, so several
    /// Berth clusters can share one NATS: `A-Z a-z 0-9 _ -`, 1–32 chars.
    pub prefix: String,
    /// Replicas of each bucket when Berth creates it (1 for one server, 3
    /// for a production cluster). Existing buckets are not changed.
    pub replicas: usize,
    /// A file holding the cluster's artifact key (32+ random bytes, same
    /// file on every host). With it, the host that compiles an upload
    /// shares the native artifact, authenticated by an HMAC under this key,
    /// and the others load it instead of compiling. Without it every host
    /// compiles for itself and never loads native code from the store.
    pub artifact_key_file: Option<PathBuf>,
    /// How long to wait for NATS at start-up and for each request, ms.
    pub timeout_ms: u64,
    /// `backend = "nats"` without `server.secrets_key_file`: keep the key
    /// that seals script secrets in the records bucket, beside the sealed
    /// secrets (anyone who can read the bucket can read every secret). Off
    /// by default: a NATS host without a key file refuses to start unless
    /// the operator opts into this weaker mode here.
    pub shared_secrets_key: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sled,
            url: "nats://127.0.0.1:4222".into(),
            prefix: "berth".into(),
            replicas: 1,
            artifact_key_file: None,
            timeout_ms: 5_000,
            shared_secrets_key: false,
        }
    }
}

impl StoreConfig {
    /// Checks the section: a usable prefix, seeds, replicas and timeout.
    pub fn validate(&self) -> Result<(), Invalid> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !prefix_ok {
            return Err(Invalid(format!(
                "store.prefix {:?} must be 1-32 characters from A-Z a-z 0-9 _ -",
                self.prefix
            )));
        }
        if self.backend == StoreBackend::Nats && self.seeds().is_empty() {
            return Err(Invalid("store.url names no NATS server".into()));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(Invalid(format!(
                "store.replicas is {}; JetStream allows 1 to 5",
                self.replicas
            )));
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(Invalid(format!(
                "store.timeout_ms is {}; use 100 to 120000",
                self.timeout_ms
            )));
        }
        Ok(())
    }

    /// The server URLs of `url`, trimmed, empty ones dropped.
    pub fn seeds(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_prefix_seeds_and_replicas() {
        let ok = StoreConfig {
            backend: StoreBackend::Nats,
            url: " nats://a:4222, nats://b:4222 ,".into(),
            ..Default::default()
        };
        ok.validate().unwrap();
        assert_eq!(ok.seeds(), ["nats://a:4222", "nats://b:4222"]);
        for prefix in ["", "has.dot", "has space", "x*", &"p".repeat(33)] {
            let bad = StoreConfig {
                prefix: prefix.into(),
                ..ok.clone()
            };
            assert!(bad.validate().unwrap_err().0.contains("store.prefix"));
        }
        let no_url = StoreConfig {
            url: " , ".into(),
            ..ok.clone()
        };
        assert!(no_url.validate().unwrap_err().0.contains("store.url"));
        let replicas = StoreConfig {
            replicas: 7,
            ..ok.clone()
        };
        assert!(replicas.validate().unwrap_err().0.contains("replicas"));
    }
}
