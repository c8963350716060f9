//! Script and namespace settings: the part of a record that can change
//! without a redeploy, and how a JSON merge patch (RFC 7396) changes it.
//!
//! Settings are `{"limits": {...}, "vars": {...}, "egress": {"allow": [...], "deny": [...]},
//! "assets": {...}, "isolation": "fresh", "reuse_max_requests": 1000, ...}`. A patch
//! merges objects key by key, `null` removes a key, so
//! `{"limits": {"cpu_ms": 50}}` changes one limit and keeps the rest. The
//! merged result is validated as a whole (unknown keys are named) before the
//! caller stores anything. Pure: the operations layer stores the result and
//! evicts what it changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Invalid;
use super::egress_rules::EgressRules;
use super::isolation::Isolation;
use super::limits::ScriptLimits;
use super::metadata::validate_vars;
use super::records::{AssetConfig, NamespaceRecord, ScriptRecord};

/// A script's settings as the API shows and patches them. On the wire the
/// isolation settings are flat (`"isolation": "reuse"` beside
/// `"reuse_max_requests"`, …; see `ScriptSettingsWire`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ScriptSettingsWire", into = "ScriptSettingsWire")]
pub struct ScriptSettings {
    /// Limits (each optional; capped by the host's `[limits]`).
    pub limits: ScriptLimits,
    /// Environment variables the guest sees.
    pub vars: BTreeMap<String, String>,
    /// Outbound rules (they only narrow the host policy).
    pub egress: EgressRules,
    /// How static assets are served.
    pub assets: AssetConfig,
    /// Fresh instance per request (default) or warm reuse.
    pub isolation: Isolation,
}

/// The JSON shape of [`ScriptSettings`]: `isolation` is the mode string and
/// its tuning keys sit beside it, as the performance issue names them
/// (`settings.isolation = "reuse"`, `settings.reuse_max_requests`).
/// Every key is optional; a missing one takes its default.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ScriptSettingsWire {
    limits: ScriptLimits,
    vars: BTreeMap<String, String>,
    egress: EgressRules,
    assets: AssetConfig,
    /// `"fresh"` or `"reuse"`.
    isolation: super::isolation::IsolationMode,
    reuse_max_requests: u32,
    reuse_idle_ms: u64,
    reuse_max_idle: u32,
}

impl Default for ScriptSettingsWire {
    fn default() -> Self {
        ScriptSettings::default().into()
    }
}

impl From<ScriptSettings> for ScriptSettingsWire {
    fn from(s: ScriptSettings) -> Self {
        Self {
            limits: s.limits,
            vars: s.vars,
            egress: s.egress,
            assets: s.assets,
            isolation: s.isolation.mode,
            reuse_max_requests: s.isolation.reuse_max_requests,
            reuse_idle_ms: s.isolation.reuse_idle_ms,
            reuse_max_idle: s.isolation.reuse_max_idle,
        }
    }
}

impl From<ScriptSettingsWire> for ScriptSettings {
    fn from(w: ScriptSettingsWire) -> Self {
        Self {
            limits: w.limits,
            vars: w.vars,
            egress: w.egress,
            assets: w.assets,
            isolation: Isolation {
                mode: w.isolation,
                reuse_max_requests: w.reuse_max_requests,
                reuse_idle_ms: w.reuse_idle_ms,
                reuse_max_idle: w.reuse_max_idle,
            },
        }
    }
}

/// The isolation keys that may sit inside the older object form
/// `"isolation": {"mode": "reuse", "reuse_max_requests": 3}`.
const ISOLATION_OBJECT_KEYS: [&str; 4] = [
    "mode",
    "reuse_max_requests",
    "reuse_idle_ms",
    "reuse_max_idle",
];

/// Rewrites the object form of `isolation` in a patch into the flat form,
/// so both spellings patch the same settings (a key given beside
/// `isolation` wins over the same key inside it).
fn flatten_isolation(patch: &Value) -> Result<Value, Invalid> {
    let mut patch = patch.clone();
    let Some(Value::Object(fields)) = patch.get("isolation").cloned() else {
        return Ok(patch);
    };
    let Value::Object(top) = &mut patch else {
        return Ok(patch);
    };
    top.remove("isolation");
    for (key, value) in fields {
        if !ISOLATION_OBJECT_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "settings.isolation.{key}: unknown field, expected one of {}",
                ISOLATION_OBJECT_KEYS.join(", ")
            )
            .into());
        }
        let flat = if key == "mode" {
            "isolation".to_owned()
        } else {
            key
        };
        top.entry(flat).or_insert(value);
    }
    Ok(patch)
}

impl ScriptSettings {
    /// The settings part of a stored script.
    pub fn of(record: &ScriptRecord) -> Self {
        Self {
            limits: record.limits,
            vars: record.vars.clone(),
            egress: record.egress.clone(),
            assets: record.asset_config.clone(),
            isolation: record.isolation.clone(),
        }
    }

    /// Writes these settings into a script's record.
    pub fn apply_to(self, record: &mut ScriptRecord) {
        record.vars = self.vars;
        record.limits = self.limits;
        record.egress = self.egress;
        record.asset_config = self.assets;
        record.isolation = self.isolation;
    }

    /// Applies a JSON merge patch, validating the result.
    pub fn patched(&self, patch: &Value) -> Result<Self, Invalid> {
        let patch = flatten_isolation(patch)?;
        if let Some(Value::String(mode)) = patch.get("isolation") {
            mode.parse::<super::isolation::IsolationMode>()
                .map_err(|e| format!("settings.isolation {e}"))?;
        }
        let settings: ScriptSettings = merge_into(self, &patch)?;
        settings
            .isolation
            .validate()
            .map_err(|e| format!("settings.{e}"))?;
        settings.limits.validate()?;
        validate_vars(&settings.vars)?;
        settings.egress.validate()?;
        Ok(settings)
    }
}

/// A namespace's settings (`GET|PATCH /v1/namespaces/{ns}/settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSettings {
    /// Outbound rules for every script of the namespace (they only narrow).
    #[serde(default)]
    pub egress: EgressRules,
    /// Whether workers see platform metadata headers.
    #[serde(default)]
    pub trusted: bool,
}

impl NamespaceSettings {
    /// The settings part of a stored namespace.
    pub fn of(record: &NamespaceRecord) -> Self {
        Self {
            egress: record.egress.clone(),
            trusted: record.trusted,
        }
    }

    /// Applies a JSON merge patch, validating the result.
    pub fn patched(&self, patch: &Value) -> Result<Self, Invalid> {
        let settings: NamespaceSettings = merge_into(self, patch)?;
        settings.egress.validate()?;
        Ok(settings)
    }
}

/// Applies a merge patch to `current` and reads the result back, naming the
/// path of any bad key.
fn merge_into<T: Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &Value,
) -> Result<T, Invalid> {
    if !patch.is_object() {
        return Err("settings patch must be a JSON object".into());
    }
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    merge(&mut merged, patch);
    serde_path_to_error::deserialize(merged)
        .map_err(|e| Invalid(format!("settings.{}: {}", e.path(), e.inner())))
}

/// RFC 7396 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_changes_only_what_it_names() {
        let current = ScriptSettings {
            limits: ScriptLimits {
                cpu_ms: Some(10),
                wall_ms: Some(100),
                ..Default::default()
            },
            vars: [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
            ]
            .into(),
            egress: EgressRules::default(),
            assets: Default::default(),
            isolation: Default::default(),
        };
        let next = current
            .patched(
                &json!({"limits": {"cpu_ms": 50, "wall_ms": null}, "vars": {"B": null, "C": "3"}}),
            )
            .unwrap();
        assert_eq!(
            next.limits,
            ScriptLimits {
                cpu_ms: Some(50),
                ..Default::default()
            }
        );
        assert_eq!(
            next.vars,
            [
                ("A".to_string(), "1".to_string()),
                ("C".to_string(), "3".to_string())
            ]
            .into()
        );
    }

    #[test]
    fn isolation_is_flat_and_the_object_form_still_patches() {
        let s = ScriptSettings::default();
        let shown = serde_json::to_value(&s).unwrap();
        assert_eq!(shown["isolation"], "fresh");
        assert_eq!(shown["reuse_max_requests"], 1000);
        assert_eq!(shown["reuse_idle_ms"], 30_000);
        assert_eq!(shown["reuse_max_idle"], 4);

        let flat = s
            .patched(&json!({"isolation": "reuse", "reuse_max_requests": 3}))
            .unwrap();
        assert!(flat.isolation.reuse());
        assert_eq!(flat.isolation.reuse_max_requests, 3);
        assert_eq!(flat.isolation.reuse_idle_ms, 30_000);

        // The object form patches the same keys and keeps the others.
        let object = flat
            .patched(&json!({"isolation": {"reuse_idle_ms": 500}}))
            .unwrap();
        assert!(object.isolation.reuse());
        assert_eq!(object.isolation.reuse_max_requests, 3);
        assert_eq!(object.isolation.reuse_idle_ms, 500);
        let fresh = object
            .patched(&json!({"isolation": {"mode": "fresh"}}))
            .unwrap();
        assert!(!fresh.isolation.reuse());
        // `null` removes the key: back to the default.
        let reset = object.patched(&json!({"isolation": null})).unwrap();
        assert!(!reset.isolation.reuse());
        assert_eq!(reset.isolation.reuse_max_requests, 3);
    }

    #[test]
    fn bad_patches_name_the_problem() {
        let s = ScriptSettings::default();
        for (patch, needle) in [
            (json!({"limitz": {}}), "limitz"),
            (json!({"limits": {"cpu": 1}}), "cpu"),
            (json!({"limits": {"cpu_ms": -1}}), "cpu_ms"),
            (json!({"limits": {"max_concurrency": 0}}), "max_concurrency"),
            (json!({"vars": {"1X": "a"}}), "1X"),
            (json!({"egress": {"allow": ["a.*.com"]}}), "a.*.com"),
            (json!([1]), "object"),
            (json!({"isolation": "shared"}), "settings.isolation must be"),
            (
                json!({"isolation": {"mode": "shared"}}),
                "settings.isolation must be",
            ),
            (
                json!({"isolation": {"reuse": true}}),
                "settings.isolation.reuse",
            ),
            (
                json!({"reuse_max_requests": 0}),
                "settings.reuse_max_requests",
            ),
            (json!({"reuse_idle_ms": "soon"}), "reuse_idle_ms"),
        ] {
            let err = s.patched(&patch).unwrap_err();
            assert!(err.0.contains(needle), "{patch}: {err}");
        }
    }
}
