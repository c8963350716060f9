//! Identifier newtypes for namespaces and scripts.
//!
//! Names arrive from URLs, JSON bodies, CLI arguments and `Host` headers, so
//! they are validated once, here, at the edge; everything past this module
//! holds a [`Name`] and can rely on it being a well-formed DNS-label-like
//! identifier (it is also used as a subdomain by the built-in router and as a
//! key prefix in the store, where `\0` must never occur).

use std::fmt;
use std::str::FromStr;

/// The longest name accepted (the length of one DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// A validated namespace or script name: 1–63 characters from `a-z`, `0-9`
/// and `-`, not starting or ending with `-`.
///
/// ```
/// use berth_host::Name;
/// assert!("customer-a".parse::<Name>().is_ok());
/// assert!("Customer_A".parse::<Name>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty.
    #[error("name must not be empty")]
    Empty,
    /// The string is longer than `MAX_NAME_LEN` (63).
    #[error("name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    /// The string contains a character outside `a-z0-9-`.
    #[error("name {name:?} contains {ch:?}; use lowercase letters, digits and '-' only")]
    BadChar {
        /// The rejected name.
        name: String,
        /// The first offending character.
        ch: char,
    },
    /// The string starts or ends with `-`.
    #[error("name {0:?} must not start or end with '-'")]
    EdgeDash(String),
}

impl Name {
    /// Validates `s` as a name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(truncate_for_message(s)));
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(NameError::BadChar {
                name: truncate_for_message(s),
                ch,
            });
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(NameError::EdgeDash(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Error messages echo the rejected input; keep them one readable line.
fn truncate_for_message(s: &str) -> String {
    s.chars().take(80).collect()
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "default", "customer-a", "a1-b2", &"x".repeat(63)] {
            assert!(Name::new(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_invalid_names() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert!(matches!(
            Name::new(&"x".repeat(64)),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(
            Name::new("Upper"),
            Err(NameError::BadChar { ch: 'U', .. })
        ));
        assert!(matches!(
            Name::new("a_b"),
            Err(NameError::BadChar { ch: '_', .. })
        ));
        assert!(matches!(
            Name::new("a.b"),
            Err(NameError::BadChar { ch: '.', .. })
        ));
        assert!(matches!(
            Name::new("a\0b"),
            Err(NameError::BadChar { ch: '\0', .. })
        ));
        assert!(matches!(Name::new("é"), Err(NameError::BadChar { .. })));
        assert!(matches!(Name::new("-a"), Err(NameError::EdgeDash(_))));
        assert!(matches!(Name::new("a-"), Err(NameError::EdgeDash(_))));
    }

    #[test]
    fn messages_name_the_problem() {
        let msg = Name::new("Bad_Name").unwrap_err().to_string();
        assert!(msg.contains("Bad_Name") && msg.contains("'B'"), "{msg}");
    }

    #[test]
    fn deserialize_validates() {
        let ok: Name = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.as_str(), "abc");
        assert!(serde_json::from_str::<Name>("\"A B\"").is_err());
    }
}
