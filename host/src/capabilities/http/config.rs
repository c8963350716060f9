//! `[egress]`: the host's outbound policy as configured, validated once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::addr::{Cidr, Host, parse_host};
use crate::base::Invalid;

/// `[egress]`: the host's outbound policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Networks (CIDR) opened despite being private, loopback, link-local…
    /// The only way to reach them; namespace and script rules cannot.
    pub allow_private: Vec<String>,
    /// Static name → addresses overrides, consulted before DNS.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    /// DNS servers (`ip:port`) asked for guests' names; empty: the
    /// system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Connect (TCP + TLS + HTTP handshake) timeout, ms.
    pub connect_timeout_ms: u64,
    /// Time to the response head, ms.
    pub first_byte_timeout_ms: u64,
    /// Longest gap between response body frames, ms.
    pub between_bytes_timeout_ms: u64,
    /// Destination ports guests may connect to: `"443"` or ranges
    /// `"8000-8999"`. Deny by default beyond the web's own ports, so a
    /// tenant cannot speak to mail, database or admin ports of the hosts
    /// it can reach.
    pub ports: Vec<String>,
    /// How often a request may pass through workers' subrequests back into
    /// a Berth host (counted in `berth-hop-count`) before it is refused
    /// with `508 loop-detected`.
    pub max_hops: u32,
}

/// Default of `egress.ports`.
const DEFAULT_PORTS: [&str; 2] = ["80", "443"];

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            allow_private: Vec::new(),
            hosts: BTreeMap::new(),
            nameservers: Vec::new(),
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 30_000,
            between_bytes_timeout_ms: 30_000,
            ports: DEFAULT_PORTS.iter().map(|p| (*p).to_owned()).collect(),
            max_hops: 8,
        }
    }
}

/// An inclusive range of destination ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(u16, u16);

impl PortRange {
    /// Parses `"443"` or `"8000-8999"`.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid(format!(
                "egress.ports: {text:?} is not a port or a range like 8000-8999"
            ))
        };
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
        match text.split_once('-') {
            Some((lo, hi)) => match (port(lo), port(hi)) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(Self(lo, hi)),
                _ => Err(bad()),
            },
            None => port(text).map(|p| Self(p, p)).ok_or_else(bad),
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0 <= port && port <= self.1
    }
}

impl EgressConfig {
    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        for cidr in &self.allow_private {
            Cidr::parse(cidr).map_err(|e| format!("egress.allow_private: {e}"))?;
        }
        for name in self.hosts.keys() {
            if !matches!(parse_host(name), Ok(Host::Name(_))) {
                return Err(Invalid(format!(
                    "egress.hosts: {name:?} is not a host name"
                )));
            }
        }
        for range in &self.ports {
            PortRange::parse(range)?;
        }
        if self.max_hops == 0 {
            return Err(Invalid("egress.max_hops must be greater than 0".into()));
        }
        for (key, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("between_bytes_timeout_ms", self.between_bytes_timeout_ms),
        ] {
            if value == 0 {
                return Err(Invalid(format!("egress.{key} must be greater than 0")));
            }
        }
        Ok(())
    }
}
