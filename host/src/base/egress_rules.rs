//! Egress rules of namespaces and scripts: host patterns that can only
//! narrow what the host policy allows.
//!
//! A pattern is `host`, `*.suffix` (any subdomain, one or more labels) or
//! `*` (everything), optionally followed by `:port`. `deny` wins over
//! `allow`; an empty `allow` list means "no narrowing", so to allow nothing
//! but a few hosts list them in `allow`, and to forbid all egress use
//! `deny = ["*"]`. Patterns match the host as the guest wrote it in the URL
//! (lowercased; IP literals in their normalized form), never the resolved
//! address, which the host policy checks separately.

use super::Invalid;
use serde::{Deserialize, Serialize};

/// `egress` settings of a namespace or a script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRules {
    /// If not empty, only matching hosts may be called.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Matching hosts may never be called.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: HostMatch,
    port: Option<u16>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    Suffix(String),
}

impl HostRule {
    /// Parses `api.example.com`, `*.example.org:443`, `*`, `10.0.0.1:8080`,
    /// `[::1]:80`.
    pub fn parse(pattern: &str) -> Result<Self, Invalid> {
        let text = pattern.trim().to_ascii_lowercase();
        let bad = |why: &str| Err(Invalid(format!("egress pattern {pattern:?}: {why}")));
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            match rest.split_once(']') {
                Some((h, "")) => (format!("[{h}]"), None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (format!("[{h}]"), Some(p)),
                    None => return bad("expected :port after ]"),
                },
                None => return bad("unclosed ["),
            }
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (text.clone(), None),
            }
        };
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return bad("invalid port"),
            },
            None => None,
        };
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return bad("'*' may only be the whole first label");
            }
            HostMatch::Suffix(suffix.trim_end_matches('.').to_owned())
        } else {
            if host.is_empty() || host.contains('*') {
                return bad("'*' may only be the whole first label");
            }
            HostMatch::Exact(host.trim_end_matches('.').to_owned())
        };
        Ok(Self { host, port, text })
    }

    /// Whether the rule covers `host` (normalized) on `port`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host
                .strip_suffix(s.as_str())
                .and_then(|p| p.strip_suffix('.'))
                .is_some_and(|p| !p.is_empty()),
        }
    }

    /// The pattern as written (lowercased), for logs.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Parsed [`EgressRules`] of one level (namespace or script).
#[derive(Debug, Clone, Default)]
pub struct CompiledRules {
    level: &'static str,
    allow: Vec<HostRule>,
    deny: Vec<HostRule>,
}

impl EgressRules {
    /// Checks every pattern, naming the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.compile("settings").map(|_| ())
    }

    /// Parses the rules; `level` names them in denial messages.
    pub fn compile(&self, level: &'static str) -> Result<CompiledRules, Invalid> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|p| HostRule::parse(p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(CompiledRules {
            level,
            allow: parse(&self.allow)?,
            deny: parse(&self.deny)?,
        })
    }
}

impl CompiledRules {
    /// `Err(rule)` names why `host:port` is refused at this level.
    pub fn check(&self, host: &str, port: u16) -> Result<(), Invalid> {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(host, port)) {
            return Err(Invalid(format!(
                "{} egress.deny {:?}",
                self.level,
                rule.as_str()
            )));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(host, port)) {
            return Err(Invalid(format!(
                "{} egress.allow (no pattern matches)",
                self.level
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> CompiledRules {
        EgressRules {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
        .compile("script")
        .unwrap()
    }

    #[test]
    fn patterns_match_hosts_and_ports() {
        let r = HostRule::parse("*.example.org:443").unwrap();
        assert!(r.matches("api.example.org", 443));
        assert!(r.matches("a.b.example.org", 443));
        assert!(!r.matches("api.example.org", 80));
        assert!(!r.matches("example.org", 443));
        assert!(!r.matches("evilexample.org", 443));
        let exact = HostRule::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com", 1));
        assert!(HostRule::parse("*").unwrap().matches("anything", 9));
        assert!(HostRule::parse("[::1]:80").unwrap().matches("[::1]", 80));
        for bad in ["a.*.com", "*.", "host:0", "host:99999", "[::1", ""] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deny_wins_and_empty_allow_does_not_narrow() {
        let open = rules(&[], &[]);
        assert!(open.check("anything.com", 443).is_ok());
        let narrow = rules(&["api.example.com", "*.cdn.net"], &["bad.cdn.net"]);
        assert!(narrow.check("api.example.com", 443).is_ok());
        assert!(narrow.check("x.cdn.net", 80).is_ok());
        assert!(
            narrow
                .check("other.com", 443)
                .unwrap_err()
                .contains("egress.allow")
        );
        assert!(
            narrow
                .check("bad.cdn.net", 443)
                .unwrap_err()
                .contains("\"bad.cdn.net\"")
        );
        let none = rules(&[], &["*"]);
        assert!(
            none.check("api.example.com", 443)
                .unwrap_err()
                .contains("egress.deny")
        );
    }
}
