//! The built-in router: maps a request's host to a script of the default
//! namespace by its first label (`customer-a.example.com` → `customer-a`).
//!
//! Pure functions only, so the rules are unit-tested and fuzzed without a
//! server.

use crate::base::Invalid;
use crate::base::names::Name;

/// The script the built-in router picks for a `Host` header value, or why
/// none applies.
pub fn script_for_host(host: &str) -> Result<Name, Invalid> {
    let host = strip_port(host.trim()).trim_end_matches('.');
    if host.is_empty() {
        return Err("request has no Host header".into());
    }
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Err(Invalid(format!(
            "host {host:?} is an IP address; address a worker as <script>.<domain>"
        )));
    }
    let label = host.split('.').next().unwrap_or("").to_ascii_lowercase();
    Name::new(&label).map_err(|e| Invalid(format!("host {host:?} does not name a script: {e}")))
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_label_names_the_script() {
        assert_eq!(
            script_for_host("customer-a.example.com").unwrap().as_str(),
            "customer-a"
        );
        assert_eq!(
            script_for_host("Customer-A.example.com:8787")
                .unwrap()
                .as_str(),
            "customer-a"
        );
        assert_eq!(
            script_for_host("hello.localhost.").unwrap().as_str(),
            "hello"
        );
        assert_eq!(script_for_host("hello").unwrap().as_str(), "hello");
    }

    #[test]
    fn unusable_hosts_are_explained() {
        assert!(script_for_host("").unwrap_err().contains("no Host"));
        assert!(
            script_for_host("127.0.0.1:8787")
                .unwrap_err()
                .contains("IP address")
        );
        assert!(
            script_for_host("[::1]:8787")
                .unwrap_err()
                .contains("IP address")
        );
        assert!(
            script_for_host("bad_name.example.com")
                .unwrap_err()
                .contains("bad_name")
        );
    }
}
