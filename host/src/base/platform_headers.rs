//! Platform metadata headers and the namespace mode.
//!
//! Clients must never be able to spoof what the platform tells its
//! workers, so every client-supplied `berth-*` and `x-berth-*` request
//! header is removed before any worker sees the request. Then, only for a
//! *trusted* namespace, the host adds what it knows — the analogue of
//! Cloudflare's `request.cf`:
//!
//! | header | value |
//! |---|---|
//! | `berth-client-ip` | the peer address of the client connection |
//! | `berth-request-id` | a random id, also in the host's logs |
//! | `[server] trusted_headers` | static values from the config (region, PoP, …) |
//!
//! Untrusted namespaces' workers see none of them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Invalid;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The request header counting how often a request has passed through
/// workers' subrequests. The egress choke point sets it on every
/// subrequest; the data plane reads it before platform headers are
/// stripped (a client can only raise it, which only shortens its own
/// chain).
pub const HOP_HEADER: &str = "berth-hop-count";

/// What the host knows about one client request.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// Random per-request id (16 hex digits).
    pub id: String,
    /// The client's address.
    pub client_ip: IpAddr,
    /// How often this request already passed through workers'
    /// subrequests (the `berth-hop-count` it arrived with).
    pub hops: u32,
}

impl RequestMeta {
    /// Metadata for a request from `client_ip`, with a fresh id.
    pub fn new(client_ip: IpAddr) -> Self {
        Self {
            id: hex::encode(next_request_id().to_be_bytes()),
            client_ip,
            hops: 0,
        }
    }
}

/// A fresh request id: SipHash, under a key the OS drew once per process,
/// of a process-wide counter. Unpredictable to clients and tenants without
/// a system call per request (a `getrandom` per request was one of four
/// the hello path made: bench/per-request.sh); distinct counters collide
/// only as rarely as random 64-bit ids would, and a collision is harmless
/// (it only groups log lines).
fn next_request_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    KEY.get_or_init(RandomState::new).hash_one(n)
}

/// Whether a header is reserved for the platform.
pub fn is_platform_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("berth-") || name.starts_with("x-berth-")
}

/// Strips spoofable platform headers, then adds the trusted ones when the
/// namespace is trusted.
pub fn apply(
    headers: &mut HeaderMap,
    trusted: bool,
    meta: &RequestMeta,
    extra: &BTreeMap<String, String>,
) {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_platform_header(n))
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
    if !trusted {
        return;
    }
    if let Ok(ip) = HeaderValue::from_str(&meta.client_ip.to_string()) {
        headers.insert(HeaderName::from_static("berth-client-ip"), ip);
    }
    if let Ok(id) = HeaderValue::from_str(&meta.id) {
        headers.insert(HeaderName::from_static("berth-request-id"), id);
    }
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
}

/// Checks `[server] trusted_headers`: names must be `berth-*` header names.
pub fn validate_trusted_headers(extra: &BTreeMap<String, String>) -> Result<(), Invalid> {
    for (name, value) in extra {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("server.trusted_headers: {name:?} is not a header name"))?;
        if !parsed.as_str().starts_with("berth-") || parsed.as_str() != name {
            return Err(Invalid(format!(
                "server.trusted_headers: {name:?} must be lowercase and start with \"berth-\""
            )));
        }
        HeaderValue::from_str(value).map_err(|_| {
            format!("server.trusted_headers.{name}: value is not a valid header value")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn spoofed_platform_headers_never_survive() {
        let meta = RequestMeta::new("203.0.113.9".parse().unwrap());
        let extra: BTreeMap<String, String> =
            [("berth-region".to_string(), "eu".to_string())].into();
        let spoof = [
            ("berth-client-ip", "1.2.3.4"),
            ("x-berth-error", "x"),
            ("Berth-Request-Id", "fake"),
            ("accept", "*/*"),
        ];

        let mut untrusted = headers(&spoof);
        apply(&mut untrusted, false, &meta, &extra);
        assert_eq!(untrusted.len(), 1);
        assert!(untrusted.contains_key("accept"));

        let mut trusted = headers(&spoof);
        apply(&mut trusted, true, &meta, &extra);
        assert_eq!(trusted["berth-client-ip"], "203.0.113.9");
        assert_eq!(trusted["berth-request-id"], meta.id.as_str());
        assert_eq!(trusted["berth-region"], "eu");
        assert!(!trusted.contains_key("x-berth-error"));
        assert_eq!(meta.id.len(), 16);
    }

    #[test]
    fn request_ids_are_distinct_and_do_not_count_up() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let ids: Vec<u64> = (0..10_000)
            .map(|_| {
                let id = RequestMeta::new(ip).id;
                assert_eq!(id.len(), 16, "{id}");
                assert!(
                    id.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                );
                u64::from_str_radix(&id, 16).unwrap()
            })
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // A client that sees one id must not be able to tell the next
        // (a plain counter would leak the host's request rate).
        let small_steps = ids
            .windows(2)
            .filter(|w| w[1].abs_diff(w[0]) < 1 << 32)
            .count();
        assert!(small_steps < 10, "{small_steps} consecutive ids were close");
    }

    #[test]
    fn trusted_header_config_is_checked() {
        let ok: BTreeMap<String, String> = [("berth-pop".to_string(), "fra".to_string())].into();
        assert!(validate_trusted_headers(&ok).is_ok());
        for bad in ["x-region", "Berth-Pop", "berth pop"] {
            let map: BTreeMap<String, String> = [(bad.to_string(), "v".to_string())].into();
            assert!(validate_trusted_headers(&map).is_err(), "{bad}");
        }
    }
}
