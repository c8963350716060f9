//! How a script's instances are isolated: a fresh instance per request (the
//! default and the product's isolation model), or opt-in warm reuse of a
//! clean instance for the same script.
//!
//! The mode is an enum, parsed once; the reuse knobs live beside it. The API
//! shows it flat (`settings.isolation` = the mode, `settings.reuse_*` beside
//! it; see `crate::base::settings`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Fresh instance per request, or warm reuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    /// A new instance for every request.
    #[default]
    Fresh,
    /// A clean instance from an earlier request of the same script.
    Reuse,
}

impl IsolationMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Reuse => "reuse",
        }
    }
}

impl fmt::Display for IsolationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IsolationMode {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "fresh" => Ok(Self::Fresh),
            "reuse" => Ok(Self::Reuse),
            other => Err(Invalid(format!(
                "must be \"fresh\" or \"reuse\", got {other:?}"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for IsolationMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Longest `reuse_idle_ms`: an idle warm instance holds a pool slot.
pub const MAX_REUSE_IDLE_MS: u64 = 600_000;
/// Most idle warm instances kept per script.
pub const MAX_REUSE_IDLE: u64 = 64;

/// How a script's instances are isolated, as stored with the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Isolation {
    /// `fresh` (default: a new instance per request) or `reuse`.
    pub mode: IsolationMode,
    /// Requests one instance may serve before it is dropped.
    pub reuse_max_requests: u32,
    /// How long an instance may sit idle before it is dropped, ms.
    pub reuse_idle_ms: u64,
    /// Idle instances kept per script.
    pub reuse_max_idle: u32,
}

impl Default for Isolation {
    fn default() -> Self {
        Self {
            mode: IsolationMode::Fresh,
            reuse_max_requests: 1000,
            reuse_idle_ms: 30_000,
            reuse_max_idle: 4,
        }
    }
}

impl Isolation {
    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, value) in [
            ("reuse_max_requests", u64::from(self.reuse_max_requests)),
            ("reuse_idle_ms", self.reuse_idle_ms),
            ("reuse_max_idle", u64::from(self.reuse_max_idle)),
        ] {
            if value == 0 {
                return Err(Invalid(format!("{key} must be greater than 0")));
            }
        }
        // Warm instances hold pool slots and memory while idle: bounded.
        for (key, value, max) in [
            ("reuse_idle_ms", self.reuse_idle_ms, MAX_REUSE_IDLE_MS),
            (
                "reuse_max_idle",
                u64::from(self.reuse_max_idle),
                MAX_REUSE_IDLE,
            ),
        ] {
            if value > max {
                return Err(Invalid(format!("{key} must be at most {max}")));
            }
        }
        Ok(())
    }

    /// Whether instances are reused.
    pub fn reuse(&self) -> bool {
        self.mode == IsolationMode::Reuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_name_bad_values() {
        assert_eq!("reuse".parse::<IsolationMode>(), Ok(IsolationMode::Reuse));
        assert_eq!("fresh".parse::<IsolationMode>(), Ok(IsolationMode::Fresh));
        let err = "warm".parse::<IsolationMode>().unwrap_err();
        assert!(err.0.contains("\"warm\""), "{err}");
    }

    #[test]
    fn stored_records_keep_their_spelling() {
        let json = serde_json::to_string(&Isolation::default()).unwrap();
        assert!(json.contains("\"mode\":\"fresh\""), "{json}");
        let back: Isolation =
            serde_json::from_str(r#"{"mode":"reuse","reuse_max_requests":3}"#).unwrap();
        assert!(back.reuse());
        assert_eq!(back.reuse_max_requests, 3);
        let zero = Isolation {
            reuse_max_idle: 0,
            ..Isolation::default()
        };
        assert!(zero.validate().unwrap_err().0.contains("reuse_max_idle"));
    }
}
