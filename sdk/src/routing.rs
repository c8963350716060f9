//! Pure helpers for routing decisions (no WASI calls, so they are unit
//! tested on any target).

/// The customer label of `host` under the platform `domain`:
/// `subdomain("customer-a.example.com:8787", "example.com") == Some("customer-a")`.
///
/// Ignores a port, a trailing dot and letter case of the domain part; only a
/// single label directly under `domain` counts (`a.b.example.com` → `None`),
/// so one customer cannot shadow another with nested names.
pub fn subdomain<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let host = strip_port(host).trim_end_matches('.');
    let domain = domain.trim_end_matches('.');
    let cut = host.len().checked_sub(domain.len() + 1)?;
    if !host.is_char_boundary(cut) {
        return None;
    }
    let (label, rest) = host.split_at(cut);
    let rest = rest.strip_prefix('.')?;
    if !rest.eq_ignore_ascii_case(domain) {
        return None;
    }
    (!label.is_empty() && !label.contains('.')).then_some(label)
}

/// The first label of a host: `first_label("a.example.com") == Some("a")`.
pub fn first_label(host: &str) -> Option<&str> {
    let host = strip_port(host);
    let label = host.split('.').next()?;
    (!label.is_empty() && host.contains('.')).then_some(label)
}

/// `host` without a trailing `:port`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_takes_exactly_one_label_under_the_domain() {
        assert_eq!(
            subdomain("customer-a.example.com", "example.com"),
            Some("customer-a")
        );
        assert_eq!(
            subdomain("customer-a.Example.COM:8787", "example.com"),
            Some("customer-a")
        );
        assert_eq!(
            subdomain("customer-a.example.com.", "example.com"),
            Some("customer-a")
        );
        assert_eq!(subdomain("example.com", "example.com"), None);
        assert_eq!(subdomain(".example.com", "example.com"), None);
        assert_eq!(subdomain("a.b.example.com", "example.com"), None);
        assert_eq!(subdomain("aexample.com", "example.com"), None);
        assert_eq!(subdomain("a.example.org", "example.com"), None);
    }

    #[test]
    fn small_helpers() {
        assert_eq!(first_label("a.localhost:80"), Some("a"));
        assert_eq!(first_label("localhost"), None);
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
