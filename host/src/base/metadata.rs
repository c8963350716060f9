//! Upload metadata and the rules for what a script may carry: tags, vars
//! and secret names, with the limits on their number and size. Pure
//! validation; every failure is an [`Invalid`] naming the offending entry.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Invalid;
use super::egress_rules::EgressRules;
use super::limits::ScriptLimits;

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
    /// Labels for the script (at most `MAX_TAGS`; no `,` or `&`).
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
    pub egress: Option<EgressRules>,
    /// JavaScript uploads: the module the worker starts from (default: the
    /// only module, or `index.js`).
    #[serde(default)]
    pub main_module: Option<String>,
    /// JavaScript uploads: names under which `env` holds the script's KV
    /// bucket (at most one).
    #[serde(default)]
    pub kv_bindings: Option<Vec<String>>,
}

impl ScriptMetadata {
    /// Checks tag, var, egress and limit rules, naming the offending entry.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(tags) = &self.tags {
            validate_tags(tags)?;
        }
        if let Some(vars) = &self.vars {
            validate_vars(vars)?;
        }
        if let Some(egress) = &self.egress {
            egress.validate()?;
        }
        if let Some(limits) = &self.limits {
            limits.validate()?;
        }
        Ok(())
    }
}

/// Checks a script's whole tag list: at most [`MAX_TAGS`], each valid.
pub fn validate_tags(tags: &[String]) -> Result<(), Invalid> {
    if tags.len() > MAX_TAGS {
        return Err(Invalid(format!(
            "at most {MAX_TAGS} tags are allowed, got {}",
            tags.len()
        )));
    }
    tags.iter().try_for_each(|tag| validate_tag(tag))
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
