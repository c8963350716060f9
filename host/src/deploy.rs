//! The upload pipeline, independent of HTTP: validate metadata, compile and
//! check the component, then store bytes, metadata and precompiled artifact
//! in one durable transaction and evict the old version from memory.
//!
//! The admin API calls this; so can a Rust service embedding Berth.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::base::Invalid;
use crate::base::names::Name;
use crate::limits::ScriptLimits;
use crate::runtime::{CompileError, Runtime};
use crate::store::{NewScript, ScriptRecord, StoreError};

/// At most this many tags per script.
pub const MAX_TAGS: usize = 8;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 64;
/// At most this many vars per script.
pub const MAX_VARS: usize = 128;
/// Total bytes of var names and values per script.
pub const MAX_VARS_BYTES: usize = 64 << 10;

/// Upload metadata (`metadata` part of a multipart upload).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptMetadata {
    /// Labels for the script (at most [`MAX_TAGS`]; no `,` or `&`).
    /// Each field left out keeps the value of the previous version.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Environment variables the guest sees.
    #[serde(default)]
    pub vars: Option<BTreeMap<String, String>>,
    /// The script's limits (each optional; the host's `[limits]` cap them).
    #[serde(default)]
    pub limits: Option<ScriptLimits>,
    /// The script's egress rules (they only narrow the host policy).
    #[serde(default)]
    pub egress: Option<crate::base::egress_rules::EgressRules>,
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The metadata is invalid.
    #[error("{0}")]
    InvalidMetadata(String),
    /// The component is not servable.
    #[error(transparent)]
    Component(#[from] CompileError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A background task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScriptMetadata {
    /// Checks tag and var rules, naming the offending entry.
    pub fn validate(&self) -> Result<(), DeployError> {
        let bad = |m: String| Err(DeployError::InvalidMetadata(m));
        let tags = self.tags.as_deref().unwrap_or_default();
        if tags.len() > MAX_TAGS {
            return bad(format!(
                "at most {MAX_TAGS} tags are allowed, got {}",
                tags.len()
            ));
        }
        for tag in tags {
            validate_tag(tag).map_err(|e| DeployError::InvalidMetadata(e.to_string()))?;
        }
        if let Some(vars) = &self.vars {
            validate_vars(vars).map_err(|e| DeployError::InvalidMetadata(e.to_string()))?;
        }
        if let Some(egress) = &self.egress {
            egress
                .validate()
                .map_err(|e| DeployError::InvalidMetadata(e.to_string()))?;
        }
        if let Some(limits) = &self.limits {
            limits
                .validate()
                .map_err(|e| DeployError::InvalidMetadata(e.0))?;
        }
        Ok(())
    }
}

/// Checks an environment variable name (vars and secrets).
pub fn validate_var_name(key: &str) -> Result<(), Invalid> {
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.len() <= 256
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Invalid(format!(
            "variable name {key:?} is invalid; use letters, digits and '_' (at most 256), not starting with a digit"
        )))
    }
}

/// Checks var names and sizes, naming the offending entry.
pub fn validate_vars(vars: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if vars.len() > MAX_VARS {
        return Err(Invalid(format!(
            "at most {MAX_VARS} vars are allowed, got {}",
            vars.len()
        )));
    }
    let mut total = 0;
    for (key, value) in vars {
        validate_var_name(key)?;
        if value.contains('\0') {
            return Err(Invalid(format!("var {key:?} contains a NUL character")));
        }
        total += key.len() + value.len();
    }
    if total > MAX_VARS_BYTES {
        return Err(Invalid(format!(
            "vars total {total} bytes; the limit is {MAX_VARS_BYTES}"
        )));
    }
    Ok(())
}

/// Checks one tag: 1–64 bytes, printable, no `,` or `&` (they separate
/// filter terms in list queries).
pub fn validate_tag(tag: &str) -> Result<(), Invalid> {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err(Invalid(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} bytes long"
        )));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| *c == ',' || *c == '&' || c.is_control())
    {
        return Err(Invalid(format!("tag {tag:?} must not contain {c:?}")));
    }
    Ok(())
}

/// Validates, compiles and durably stores a new version of a script.
pub async fn deploy(
    runtime: &Arc<Runtime>,
    namespace: &Name,
    name: &Name,
    content: Vec<u8>,
    metadata: ScriptMetadata,
) -> Result<ScriptRecord, DeployError> {
    metadata.validate()?;
    let store = runtime.store().clone();
    // Fail fast before spending CPU on compilation.
    let ns = namespace.clone();
    let exists = tokio::task::spawn_blocking(move || store.get_namespace(&ns))
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))??;
    if exists.is_none() {
        return Err(StoreError::NamespaceNotFound(namespace.clone()).into());
    }

    let sha256 = hex::encode(Sha256::digest(&content));
    let rt = runtime.clone();
    let digest = sha256.clone();
    let (content, compiled) = tokio::task::spawn_blocking(move || {
        // Identical bytes were validated and compiled before (platforms
        // deploy the same template for many customers): this engine's
        // artifact is already stored, so there is nothing to compile.
        if rt.has_artifact(&digest) {
            return (content, Ok(None));
        }
        let compiled = rt.compile_upload(&content).map(Some);
        (content, compiled)
    })
    .await
    .map_err(|e| DeployError::Internal(e.to_string()))?;
    let compiled = compiled?;

    let script = NewScript {
        sha256,
        content,
        tags: metadata.tags,
        vars: metadata.vars,
        limits: metadata.limits,
        egress: metadata.egress,
        artifact: compiled.map(|c| (c.engine_hash, c.artifact)),
    };
    let store = runtime.store().clone();
    let (ns, n) = (namespace.clone(), name.clone());
    let record = tokio::task::spawn_blocking(move || store.put_script(&ns, &n, script))
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))??;
    runtime.evict(namespace, name);
    tracing::info!(%namespace, script = %name, version = record.version, sha256 = %record.sha256, "deployed");
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules() {
        assert!(validate_tag("plan-free").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("a,b").unwrap_err().contains("','"));
        assert!(validate_tag("a&b").is_err());
        assert!(validate_tag(&"x".repeat(65)).is_err());
    }

    #[test]
    fn metadata_rules() {
        let m = ScriptMetadata {
            tags: Some((0..9).map(|i| format!("t{i}")).collect()),
            ..Default::default()
        };
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("at most 8 tags")
        );
        let mut m = ScriptMetadata::default();
        m.vars
            .get_or_insert_default()
            .insert("1BAD".into(), "x".into());
        assert!(m.validate().unwrap_err().to_string().contains("1BAD"));
        let mut m = ScriptMetadata::default();
        m.vars
            .get_or_insert_default()
            .insert("GOOD_1".into(), "x".into());
        assert!(m.validate().is_ok());
    }

    #[test]
    fn unknown_metadata_keys_are_rejected() {
        let err = serde_json::from_str::<ScriptMetadata>(r#"{"tagz": []}"#).unwrap_err();
        assert!(err.to_string().contains("tagz"));
    }
}
