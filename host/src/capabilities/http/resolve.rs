//! Name resolution for outbound requests, behind a seam.
//!
//! [`SystemResolver`] answers from `[egress] hosts` (static overrides, like
//! `/etc/hosts` for guests) first, then from the system resolver. Tests
//! inject their own [`Resolve`] to map names to any address without DNS.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use super::client::BoxFuture;

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync {
    /// All addresses of `host` (lowercase, no trailing dot).
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<IpAddr>>>;
}

/// Static overrides, then the system resolver.
pub struct SystemResolver {
    overrides: BTreeMap<String, Vec<IpAddr>>,
}

impl SystemResolver {
    /// A resolver with `[egress] hosts` overrides.
    pub fn new(overrides: BTreeMap<String, Vec<IpAddr>>) -> Self {
        let overrides = overrides
            .into_iter()
            .map(|(name, ips)| (name.trim_end_matches('.').to_ascii_lowercase(), ips))
            .collect();
        Self { overrides }
    }
}

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            if let Some(ips) = self.overrides.get(host) {
                return Ok(ips.clone());
            }
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}
