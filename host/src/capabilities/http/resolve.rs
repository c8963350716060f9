//! Name resolution for outbound requests, behind a seam.
//!
//! [`SystemResolver`] answers from `[egress] hosts` (static overrides, like
//! `/etc/hosts` for guests) first, then by DNS — in process and async
//! (hickory), never `getaddrinfo` on a blocking thread, so a name server
//! that never answers costs a timer, not a thread. The name servers are
//! the system's (`/etc/resolv.conf`) or `[egress] nameservers`. Tests
//! inject their own [`Resolve`] to map names to any address without DNS.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::client::BoxFuture;

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync {
    /// All addresses of `host` (lowercase, no trailing dot).
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<IpAddr>>>;
}

/// Static overrides, then DNS.
pub struct SystemResolver {
    overrides: BTreeMap<String, Vec<IpAddr>>,
    dns: TokioResolver,
}

impl SystemResolver {
    /// A resolver with `[egress] hosts` overrides, asking `nameservers`
    /// (the system's when empty); each query gives up after `timeout`.
    pub fn new(
        overrides: BTreeMap<String, Vec<IpAddr>>,
        nameservers: &[SocketAddr],
        timeout: Duration,
    ) -> io::Result<Self> {
        let overrides = overrides
            .into_iter()
            .map(|(name, ips)| (name.trim_end_matches('.').to_ascii_lowercase(), ips))
            .collect();
        let mut builder = if nameservers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(builder) => builder,
                // No usable /etc/resolv.conf: guests' names do not resolve
                // (their fetches fail cleanly), the host still starts.
                Err(error) => {
                    tracing::warn!(%error, "no system DNS configuration; guests' host names will not resolve (set [egress] nameservers)");
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                        TokioRuntimeProvider::default(),
                    )
                }
            }
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        let dns = builder.build().map_err(io::Error::other)?;
        Ok(Self { overrides, dns })
    }
}

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            if let Some(ips) = self.overrides.get(host) {
                return Ok(ips.clone());
            }
            let found = self.dns.lookup_ip(host).await.map_err(io::Error::other)?;
            Ok(found.iter().collect())
        })
    }
}
