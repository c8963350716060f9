//! Hostname patterns of `[[dispatch]]` entries and how a request's `Host`
//! is matched against them.
//!
//! Two forms: `example.com` matches exactly that host; `*.example.com`
//! matches any subdomain of it, one or more labels deep (but not
//! `example.com` itself). Matching ignores case, a port and a trailing dot.
//! When several entries match, an exact pattern beats any wildcard, and a
//! longer wildcard suffix beats a shorter one, so the most specific entry
//! wins regardless of order in the file.

use super::Invalid;
use std::fmt;

/// One parsed hostname pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// Any subdomain of this suffix (stored without the leading `*.`).
    Wildcard(String),
}

/// How well a pattern matched; higher is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity(u8, usize);

impl HostPattern {
    /// Parses `example.com` or `*.example.com`, naming what is wrong.
    pub fn parse(pattern: &str) -> Result<Self, Invalid> {
        let lower = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, host) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower.clone()),
        };
        if host.is_empty() {
            return Err(Invalid(format!("hostname pattern {pattern:?} is empty")));
        }
        if host.len() > 253 {
            return Err(Invalid(format!(
                "hostname pattern {pattern:?} is longer than 253 characters"
            )));
        }
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(Invalid(format!(
                    "hostname pattern {pattern:?} has an invalid label {label:?} \
                     (use letters, digits and '-'; '*' only as the whole first label)"
                )));
            }
        }
        Ok(if wildcard {
            Self::Wildcard(host)
        } else {
            Self::Exact(host)
        })
    }

    /// How specifically `host` (already normalized by [`normalize_host`])
    /// matches, or `None`.
    pub fn matches(&self, host: &str) -> Option<Specificity> {
        match self {
            Self::Exact(h) => (h == host).then_some(Specificity(1, h.len())),
            Self::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|prefix| prefix.strip_suffix('.'))
                .filter(|prefix| !prefix.is_empty())
                .map(|_| Specificity(0, suffix.len())),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// Lowercases a `Host` header value and strips its port and trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep as is up to the closing bracket.
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
            .to_owned()
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Longest host name DNS allows (RFC 1035), bytes.
pub const MAX_HOST_LEN: usize = 253;
/// Most labels a host name within [`MAX_HOST_LEN`] can have.
pub const MAX_HOST_LABELS: usize = 127;

/// Refuses a request's host (port allowed) that no DNS name can be: over
/// [`MAX_HOST_LEN`] bytes or [`MAX_HOST_LABELS`] labels, or with bytes a
/// host cannot contain. Checked before any routing, so every matcher
/// behind it works on a bounded input.
pub fn check_host(host: &str) -> Result<(), Invalid> {
    let name = normalize_host(host);
    if name.len() > MAX_HOST_LEN {
        return Err(Invalid(format!(
            "host is {} bytes; at most {MAX_HOST_LEN} are allowed",
            name.len()
        )));
    }
    let labels = name.split('.').count();
    if labels > MAX_HOST_LABELS {
        return Err(Invalid(format!(
            "host has {labels} labels; at most {MAX_HOST_LABELS} are allowed"
        )));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b);
    if let Some(bad) = name.bytes().find(|b| !allowed(*b)) {
        return Err(Invalid(format!("host contains the byte {bad:#04x}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_bounded_before_routing() {
        assert!(check_host("customer-a.example.com:8787").is_ok());
        assert!(check_host("[::1]:80").is_ok());
        assert!(check_host(&"a".repeat(MAX_HOST_LEN)).is_ok());
        let long = "a".repeat(MAX_HOST_LEN + 1);
        assert!(check_host(&long).unwrap_err().contains("254 bytes"));
        // Within the length, labels are bounded too (empty ones count).
        let many = format!("a{}a", ".".repeat(MAX_HOST_LABELS));
        assert!(many.len() <= MAX_HOST_LEN);
        assert!(check_host(&many).unwrap_err().contains("128 labels"));
        // The measured attack: 150,000 labels.
        let huge = vec!["a"; 150_000].join(".");
        assert!(check_host(&huge).is_err());
        assert!(check_host("a b.example.com").unwrap_err().contains("0x20"));
    }

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn parses_exact_and_wildcard_patterns() {
        assert_eq!(p("Example.COM."), HostPattern::Exact("example.com".into()));
        assert_eq!(
            p("*.example.com"),
            HostPattern::Wildcard("example.com".into())
        );
        assert_eq!(p("*.example.com").to_string(), "*.example.com");
        for bad in [
            "",
            "*.",
            "a..b",
            "*.*.com",
            "ex ample.com",
            "-a.com",
            "a.com*",
            "a_b.com",
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.contains("hostname pattern"), "{bad}: {err}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com").is_some());
        assert!(w.matches("a.b.example.com").is_some());
        assert!(w.matches("example.com").is_none());
        assert!(w.matches("badexample.com").is_none());
        assert!(w.matches("a.example.com.evil").is_none());
        let e = p("example.com");
        assert!(e.matches("example.com").is_some());
        assert!(e.matches("a.example.com").is_none());
    }

    #[test]
    fn exact_beats_wildcard_and_longer_suffix_beats_shorter() {
        let host = "api.eu.example.com";
        let exact = p("api.eu.example.com").matches(host).unwrap();
        let long = p("*.eu.example.com").matches(host).unwrap();
        let short = p("*.example.com").matches(host).unwrap();
        assert!(exact > long && long > short);
    }

    #[test]
    fn normalizes_ports_case_and_trailing_dots() {
        assert_eq!(normalize_host("A.Example.com:8787"), "a.example.com");
        assert_eq!(normalize_host("a.example.com."), "a.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("localhost"), "localhost");
    }
}
