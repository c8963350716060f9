//! The single choke point for guests' outbound HTTP.
//!
//! Every `wasi:http/outgoing-handler.handle` call of every guest — user
//! workers, dispatch workers, outbound workers — reaches
//! [`EgressHooks::send_request`]; guests get no sockets, so there is no
//! other way out. In order, a request is:
//!
//! 1. counted against the invocation's `subrequests` limit;
//! 2. handed to the namespace's **outbound worker**, if one is configured
//!    (it answers itself or forwards with its own request, which comes back
//!    through this module under the platform's policy);
//! 3. checked against the namespace's and the script's `egress.allow` /
//!    `egress.deny` patterns ([`crate::base::egress_rules`]);
//! 4. resolved (IP literals in any spelling are normalized, [`addr`]) and
//!    every resolved address checked against the denied ranges, unless
//!    `[egress] allow_private` opens it;
//! 5. sent to the vetted address itself — no second lookup, so DNS
//!    rebinding cannot swap it — with `Host` set to the checked authority
//!    ([`client`]).
//!
//! Each subrequest is logged (target `berth::egress`) with namespace,
//! script, method, scheme+authority (never the path or query), outcome and
//! duration; a denial names the rule. A denied request fails inside the
//! guest with `HttpRequestDenied`.
//!
//! Requests for the reserved `dispatch.internal` domain never reach the
//! network: a dispatch worker's go to its [`InternalRoute`] (the dispatcher
//! capability's fetch form); anyone else's are denied.
//!
//! This module never imports the runtime or the dispatcher: the outbound
//! worker runs through the [`super::Invoker`] seam.

pub mod addr;
pub mod budget;
pub mod client;
pub mod resolve;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use self::addr::{Cidr, Host, denied_range, parse_host};
use self::client::{Connect, Sent, TcpConnector, Timeouts, Vetted};
use self::resolve::{Resolve, SystemResolver};
use super::{BoxFuture, CallOptions, OutboundWorker};
use crate::base::Invalid;
use crate::base::egress_rules::CompiledRules;
use crate::base::platform_headers::HOP_HEADER;
use crate::base::reserved::{Target, reserved_target};

type HookFuture<T> = Box<dyn Future<Output = T> + Send>;

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

    fn contains(&self, port: u16) -> bool {
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

/// The shared outbound machinery: policy, resolver, connector, TLS.
pub struct Egress {
    allow_private: Vec<Cidr>,
    ports: Vec<PortRange>,
    resolver: Arc<dyn Resolve>,
    connector: Arc<dyn Connect>,
    tls: Arc<rustls::ClientConfig>,
    timeouts: Timeouts,
}

/// Why a request was refused, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Egress {
    /// Real DNS and TCP.
    pub fn new(config: &EgressConfig) -> anyhow::Result<Self> {
        Self::with_seams(
            config,
            Arc::new(
                SystemResolver::new(
                    config.hosts.clone(),
                    &config.nameservers,
                    Duration::from_millis(config.connect_timeout_ms),
                )
                .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?,
            ),
            Arc::new(TcpConnector),
        )
    }

    /// Injected resolver and connector (tests, embedders).
    pub fn with_seams(
        config: &EgressConfig,
        resolver: Arc<dyn Resolve>,
        connector: Arc<dyn Connect>,
    ) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            ports: config
                .ports
                .iter()
                .map(|p| PortRange::parse(p).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            allow_private: config
                .allow_private
                .iter()
                .map(|c| Cidr::parse(c).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            resolver,
            connector,
            tls: Arc::new(tls),
            timeouts: Timeouts {
                connect: Duration::from_millis(config.connect_timeout_ms),
                first_byte: Duration::from_millis(config.first_byte_timeout_ms),
                between_bytes: Duration::from_millis(config.between_bytes_timeout_ms),
            },
        })
    }

    /// Applies the rules and the address policy, then sends.
    pub async fn send(
        &self,
        rules: &[CompiledRules],
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Result<Sent, HttpError>, Denied> {
        let uri = request.uri();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") | None => false,
            Some(other) => return Err(Denied(format!("scheme {other:?} (only http and https)"))),
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(Denied("request has no authority".into()));
        };
        let host = parse_host(authority.host()).map_err(|e| Denied(format!("host: {e}")))?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host_text = match &host {
            Host::Name(name) => name.clone(),
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            Host::Ip(ip) => ip.to_string(),
        };
        for level in rules {
            level
                .check(&host_text, port)
                .map_err(|e| Denied(e.to_string()))?;
        }
        if !self.ports.iter().any(|range| range.contains(port)) {
            return Err(Denied(format!("port {port} is not in [egress] ports")));
        }
        let candidates = match &host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                match tokio::time::timeout(self.timeouts.connect, self.resolver.resolve(name, port))
                    .await
                {
                    Ok(Ok(ips)) if !ips.is_empty() => ips,
                    Ok(Ok(_)) => return Ok(Err(HttpError::DestinationNotFound)),
                    Ok(Err(_)) => {
                        return Ok(Err(HttpError::DnsError {
                            rcode: None,
                            info_code: None,
                        }));
                    }
                    Err(_) => return Ok(Err(HttpError::DnsTimeout)),
                }
            }
        };
        let mut refusal = None;
        let mut vetted = None;
        for ip in candidates {
            match denied_range(ip) {
                Some(range) if !self.allow_private.iter().any(|c| c.contains(ip)) => {
                    refusal.get_or_insert_with(|| format!("host policy: {range} ({ip})"));
                }
                _ => {
                    vetted = Some(ip);
                    break;
                }
            }
        }
        let Some(ip) = vetted else {
            return Err(Denied(refusal.unwrap_or_else(|| "no address".into())));
        };
        let mut timeouts = self.timeouts;
        if let Some(o) = options {
            timeouts.connect = o
                .connect_timeout
                .map_or(timeouts.connect, |t| t.min(timeouts.connect));
            timeouts.first_byte = o
                .first_byte_timeout
                .map_or(timeouts.first_byte, |t| t.min(timeouts.first_byte));
            timeouts.between_bytes = o
                .between_bytes_timeout
                .map_or(timeouts.between_bytes, |t| t.min(timeouts.between_bytes));
        }
        let target = Vetted {
            addr: SocketAddr::new(ip, port),
            tls_name: https.then(|| {
                authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            }),
            authority: authority.as_str().to_owned(),
        };
        Ok(client::send(
            self.connector.as_ref(),
            &self.tls,
            target,
            request,
            timeouts,
        )
        .await)
    }
}

/// Requests a guest addresses to the reserved `dispatch.internal` domain
/// go here instead of the network — only for guests that have one (dispatch
/// workers); every other guest is refused. The dispatcher capability
/// implements it.
pub trait InternalRoute: Send + Sync + 'static {
    /// Serves `request` for the reserved `target`.
    fn serve(
        &self,
        target: Target,
        request: http::Request<WasiBody>,
    ) -> BoxFuture<'static, http::Response<WasiBody>>;
}

/// Per-invocation egress state: who is calling, which rules apply, how many
/// subrequests they have made and may make, and the dispatch worker's
/// outbound parameters.
pub struct EgressHooks {
    namespace: String,
    script: String,
    egress: Arc<Egress>,
    rules: Arc<Vec<CompiledRules>>,
    /// Subrequests made so far by this invocation (denied ones included).
    pub subrequests: u32,
    max_subrequests: Option<u32>,
    /// Set when a subrequest was refused because of the limit.
    pub subrequest_limit_hit: bool,
    /// Parameters the dispatch worker attached to this invocation
    /// (`options.outbound`); never visible to the guest.
    pub outbound: Vec<(String, String)>,
    outbound_worker: Option<OutboundWorker>,
    metrics: Option<Arc<crate::observe::metrics::Metrics>>,
    /// Set for dispatch workers: requests to `*.dispatch.internal` go to
    /// their namespace's user workers instead of the network.
    internal: Option<Arc<dyn InternalRoute>>,
    /// Hops of the request this invocation serves; subrequests carry one
    /// more in `berth-hop-count`.
    hops: u32,
}

impl EgressHooks {
    /// Egress state for one invocation of `namespace/script`.
    pub fn new(
        namespace: &str,
        script: &str,
        egress: Arc<Egress>,
        rules: Arc<Vec<CompiledRules>>,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            script: script.to_owned(),
            egress,
            rules,
            subrequests: 0,
            max_subrequests: None,
            subrequest_limit_hit: false,
            outbound: Vec::new(),
            outbound_worker: None,
            metrics: None,
            internal: None,
            hops: 0,
        }
    }

    /// Counts subrequest outcomes in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::observe::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Caps the number of subrequests; the next one fails inside the guest
    /// with `HttpRequestDenied`.
    pub fn with_subrequest_limit(mut self, limit: Option<u32>) -> Self {
        self.max_subrequests = limit;
        self
    }

    /// Attaches the dispatch worker's outbound parameters.
    pub fn with_outbound(mut self, outbound: Vec<(String, String)>) -> Self {
        self.outbound = outbound;
        self
    }

    /// Lets this (dispatch worker) invocation reach user workers through
    /// `http://<script>.dispatch.internal/`.
    pub fn with_internal_route(mut self, route: Option<Arc<dyn InternalRoute>>) -> Self {
        self.internal = route;
        self
    }

    /// The hop count of the request this invocation serves.
    pub fn with_hops(mut self, hops: u32) -> Self {
        self.hops = hops;
        self
    }

    /// Routes every outbound request through `worker` first.
    pub fn with_outbound_worker(mut self, worker: Option<OutboundWorker>) -> Self {
        self.outbound_worker = worker;
        self
    }
}

/// Adds `wasi:http` (types and outgoing-handler) to a linker; every
/// outgoing request then reaches the store data's [`EgressHooks`] through
/// its [`WasiHttpView`](wasmtime_wasi_http::WasiHttpView), and what the
/// host buffers for the guest is charged to its host-memory budget
/// ([`budget`]).
pub fn add_to_linker<T: budget::HostMemoryView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> anyhow::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
        .map_err(|e| anyhow::anyhow!("linking wasi:http: {e:#}"))?;
    budget::add_to_linker(linker)
}

/// `berth-outbound-<name>`: the header an outbound parameter travels in.
pub fn outbound_header_name(name: &str) -> Option<http::HeaderName> {
    let clean: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        return None;
    }
    http::HeaderName::from_bytes(format!("berth-outbound-{clean}").as_bytes()).ok()
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: HookFuture<Result<(), HttpError>>,
    ) -> HookFuture<Result<(http::Response<WasiBody>, HookFuture<Result<(), HttpError>>), HttpError>>
    {
        drop(fut);
        let reserved = request.uri().host().and_then(reserved_target);
        // A dispatch worker calling a user worker: not a subrequest, and
        // never the network.
        if let (Some(target), Some(route)) = (reserved.clone(), self.internal.clone()) {
            return Box::new(async move {
                let response = route.serve(target, request).await;
                Ok((response, Box::new(async { Ok(()) }) as HookFuture<_>))
            });
        }
        self.subrequests += 1;
        let method = request.method().clone();
        let target = format!(
            "{}://{}",
            request.uri().scheme_str().unwrap_or("http"),
            request.uri().authority().map(|a| a.as_str()).unwrap_or("")
        );
        let (namespace, script) = (self.namespace.clone(), self.script.clone());
        let count = {
            let (metrics, ns, sc) = (self.metrics.clone(), namespace.clone(), script.clone());
            move |outcome: &str| {
                if let Some(m) = &metrics {
                    m.subrequest(&ns, &sc, outcome);
                }
            }
        };
        if reserved.is_some() {
            count("denied");
            tracing::warn!(
                target: "berth::egress", %namespace, %script, %method, %target,
                rule = "reserved domain *.dispatch.internal (dispatch workers only)",
                "subrequest denied"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Some(limit) = self
            .max_subrequests
            .filter(|limit| self.subrequests > *limit)
        {
            self.subrequest_limit_hit = true;
            count("denied");
            tracing::warn!(
                target: "berth::egress", %namespace, %script, %method, %target,
                rule = %format!("subrequest limit ({limit})"), "subrequest denied"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // A subrequest that comes back into a Berth host (a worker fetching
        // its own public hostname) carries one more hop; the data plane
        // refuses it past `egress.max_hops`.
        let mut request = request;
        request.headers_mut().insert(
            HOP_HEADER,
            http::HeaderValue::from(self.hops.saturating_add(1)),
        );
        if let Some(outbound) = self.outbound_worker.clone() {
            let params = self.outbound.clone();
            return Box::new(async move {
                let started = Instant::now();
                let result = via_outbound_worker(outbound, params, request).await;
                log_outcome(
                    &namespace,
                    &script,
                    &method,
                    &target,
                    started,
                    &result,
                    "outbound worker",
                );
                count(if result.is_ok() { "ok" } else { "error" });
                result.map(unpin_io)
            });
        }
        let egress = self.egress.clone();
        let rules = self.rules.clone();
        Box::new(async move {
            let started = Instant::now();
            let result = match egress.send(&rules, request, options).await {
                Ok(result) => result,
                Err(Denied(rule)) => {
                    tracing::warn!(
                        target: "berth::egress", %namespace, %script, %method, %target,
                        %rule, elapsed_ms = started.elapsed().as_millis() as u64, "subrequest denied"
                    );
                    count("denied");
                    return Err(HttpError::HttpRequestDenied);
                }
            };
            log_outcome(
                &namespace, &script, &method, &target, started, &result, "network",
            );
            count(if result.is_ok() { "ok" } else { "error" });
            result.map(unpin_io)
        })
    }
}

/// The hook wants the connection future as a plain box.
fn unpin_io((response, io): Sent) -> (http::Response<WasiBody>, HookFuture<Result<(), HttpError>>) {
    (response, Box::new(io))
}

fn log_outcome(
    namespace: &str,
    script: &str,
    method: &http::Method,
    target: &str,
    started: Instant,
    result: &Result<Sent, HttpError>,
    via: &str,
) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok((response, _)) => tracing::info!(
            target: "berth::egress", %namespace, %script, %method, %target, via,
            status = response.status().as_u16(), elapsed_ms, "subrequest"
        ),
        Err(error) => tracing::warn!(
            target: "berth::egress", %namespace, %script, %method, %target, via,
            error = %error, elapsed_ms, "subrequest failed"
        ),
    }
}

/// Hands a user worker's outbound request to the outbound worker, with the
/// dispatch worker's parameters as `berth-outbound-<name>` headers.
async fn via_outbound_worker(
    outbound: OutboundWorker,
    params: Vec<(String, String)>,
    mut request: http::Request<WasiBody>,
) -> Result<Sent, HttpError> {
    let headers = request.headers_mut();
    // The user worker cannot forge parameters.
    let forged: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("berth-outbound-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    for (name, value) in params {
        if let (Some(name), Ok(value)) = (
            outbound_header_name(&name),
            http::HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(authority) = request.uri().authority().map(|a| a.to_string())
        && let Ok(host) = http::HeaderValue::from_str(&authority)
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let invoker = outbound
        .invoker
        .get()
        .map_err(|error| HttpError::InternalError(Some(format!("outbound worker: {error}"))))?;
    match invoker
        .serve(outbound.worker, request, CallOptions::default())
        .await
    {
        Ok(response) => Ok((
            response,
            Box::pin(async { Ok(()) }) as client::BoxFuture<'static, _>,
        )),
        Err(error) => Err(HttpError::InternalError(Some(format!(
            "outbound worker: {error}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    //! The policy end to end through the real client, with an in-memory
    //! connector that records every attempted address and serves HTTP over
    //! a duplex pipe: no socket is ever opened.

    use std::convert::Infallible;
    use std::io;
    use std::sync::Mutex;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use hyper_util::rt::TokioIo;

    use super::client::{BoxFuture, Stream};
    use super::*;
    use crate::base::egress_rules::EgressRules;

    #[derive(Default)]
    struct Recorder {
        attempts: Mutex<Vec<SocketAddr>>,
    }

    impl Connect for Recorder {
        fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Stream>>> {
            self.attempts.lock().unwrap().push(addr);
            Box::pin(async move {
                let (client, server) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let host = req
                                .headers()
                                .get_all(http::header::HOST)
                                .iter()
                                .map(|h| h.to_str().unwrap_or("?").to_owned())
                                .collect::<Vec<_>>()
                                .join(",");
                            let text = format!("{} host={host}", req.uri());
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(server), service)
                        .await;
                });
                Ok(Box::new(client) as Box<dyn Stream>)
            })
        }
    }

    /// Names to addresses; each lookup pops the next answer (the last one
    /// repeats), which models a rebinding DNS server.
    struct Answers(Mutex<BTreeMap<String, Vec<Vec<IpAddr>>>>);

    impl Resolve for Answers {
        fn resolve<'a>(
            &'a self,
            host: &'a str,
            _port: u16,
        ) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
            let mut map = self.0.lock().unwrap();
            let answer = match map.get_mut(host) {
                Some(list) if list.len() > 1 => Ok(list.remove(0)),
                Some(list) => Ok(list[0].clone()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            };
            Box::pin(async move { answer })
        }
    }

    fn setup(allow_private: &[&str], answers: &[(&str, &[&[&str]])]) -> (Egress, Arc<Recorder>) {
        setup_ports(allow_private, answers, &["1-65535"])
    }

    fn setup_ports(
        allow_private: &[&str],
        answers: &[(&str, &[&[&str]])],
        ports: &[&str],
    ) -> (Egress, Arc<Recorder>) {
        let config = EgressConfig {
            allow_private: allow_private.iter().map(|s| s.to_string()).collect(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
            ..EgressConfig::default()
        };
        let map = answers
            .iter()
            .map(|(name, seq)| {
                let seq = seq
                    .iter()
                    .map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect())
                    .collect();
                (name.to_string(), seq)
            })
            .collect();
        let recorder = Arc::new(Recorder::default());
        let egress = Egress::with_seams(
            &config,
            Arc::new(Answers(Mutex::new(map))),
            recorder.clone(),
        )
        .unwrap();
        (egress, recorder)
    }

    fn request(url: &str) -> http::Request<WasiBody> {
        http::Request::get(url)
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap()
    }

    async fn body_text(sent: Sent) -> String {
        let (response, _io) = sent;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn every_denied_range_and_spelling_is_refused_before_connecting() {
        let (egress, recorder) = setup(
            &[],
            &[
                ("localhost", &[&["127.0.0.1", "::1"]]),
                ("metadata.internal", &[&["169.254.169.254"]]),
                ("loopback.example", &[&["127.0.0.1"]]),
            ],
        );
        let urls = [
            "http://localhost/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.0.0.1:8788/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://metadata.internal/",
            "http://loopback.example/",
            "https://10.1.2.3/",
            "http://[64:ff9b::a00:1]/",
        ];
        assert!(urls.len() >= 20);
        for url in urls {
            let outcome = egress.send(&[], request(url), None).await;
            let Err(Denied(rule)) = outcome else {
                panic!("{url} was not denied")
            };
            assert!(rule.starts_with("host policy: "), "{url}: {rule}");
        }
        assert!(
            recorder.attempts.lock().unwrap().is_empty(),
            "a denied request reached the connector"
        );
        let Err(Denied(rule)) = egress
            .send(&[], request("http://169.254.169.254/"), None)
            .await
        else {
            unreachable!()
        };
        assert!(rule.contains("metadata"), "{rule}");
    }

    #[tokio::test]
    async fn public_names_connect_to_the_vetted_address_with_the_checked_host() {
        let (egress, recorder) = setup(
            &[],
            &[("api.example.com", &[&["10.9.9.9", "93.184.215.14"]])],
        );
        let mut req = request("http://api.example.com:8080/v1/x?q=1");
        req.headers_mut()
            .insert(http::header::HOST, "internal.admin".parse().unwrap());
        let sent = egress
            .send(&[], req, None)
            .await
            .expect("allowed")
            .expect("sent");
        // The private answer was skipped; only the public address was used.
        assert_eq!(
            *recorder.attempts.lock().unwrap(),
            vec!["93.184.215.14:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(body_text(sent).await, "/v1/x?q=1 host=api.example.com:8080");
    }

    #[tokio::test]
    async fn dns_rebinding_cannot_swap_the_address() {
        let (egress, recorder) = setup(
            &[],
            &[("rebind.example", &[&["93.184.215.14"], &["127.0.0.1"]])],
        );
        assert!(
            egress
                .send(&[], request("http://rebind.example/"), None)
                .await
                .is_ok()
        );
        let second = egress
            .send(&[], request("http://rebind.example/"), None)
            .await;
        assert!(
            matches!(second, Err(Denied(_))),
            "the rebound answer must be refused"
        );
        let attempts = recorder.attempts.lock().unwrap();
        assert!(
            attempts.iter().all(|a| !a.ip().is_loopback()),
            "{attempts:?}"
        );
    }

    #[tokio::test]
    async fn allow_private_is_the_only_way_in() {
        let (egress, recorder) = setup(&["10.0.0.0/8"], &[]);
        let sent = egress
            .send(&[], request("http://10.1.2.3/ok"), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body_text(sent).await, "/ok host=10.1.2.3");
        assert!(matches!(
            egress.send(&[], request("http://192.168.0.1/"), None).await,
            Err(Denied(_))
        ));
        // A namespace or script rule cannot open a private range.
        let rules = [EgressRules {
            allow: vec!["192.168.0.1".into()],
            deny: vec![],
        }
        .compile("script")
        .unwrap()];
        assert!(matches!(
            egress
                .send(&rules, request("http://192.168.0.1/"), None)
                .await,
            Err(Denied(_))
        ));
        assert_eq!(recorder.attempts.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn namespace_and_script_rules_only_narrow() {
        let (egress, recorder) = setup(
            &[],
            &[
                ("api.example.com", &[&["93.184.215.14"]]),
                ("other.example.com", &[&["93.184.215.14"]]),
            ],
        );
        let rules = [
            EgressRules {
                allow: vec![],
                deny: vec!["*.example.com:8443".into()],
            }
            .compile("namespace")
            .unwrap(),
            EgressRules {
                allow: vec!["api.example.com".into()],
                deny: vec![],
            }
            .compile("script")
            .unwrap(),
        ];
        assert!(
            egress
                .send(&rules, request("http://api.example.com/"), None)
                .await
                .is_ok()
        );
        let Err(Denied(rule)) = egress
            .send(&rules, request("http://other.example.com/"), None)
            .await
        else {
            panic!()
        };
        assert_eq!(rule, "script egress.allow (no pattern matches)");
        let Err(Denied(rule)) = egress
            .send(&rules, request("http://api.example.com:8443/"), None)
            .await
        else {
            panic!()
        };
        assert_eq!(rule, "namespace egress.deny \"*.example.com:8443\"");
        let Err(Denied(rule)) = egress
            .send(&rules, request("ftp://api.example.com/"), None)
            .await
        else {
            panic!()
        };
        assert!(rule.contains("ftp"), "{rule}");
        assert_eq!(recorder.attempts.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn only_the_configured_ports_are_reachable() {
        let answers: &[(&str, &[&[&str]])] = &[("api.example.com", &[&["93.184.216.34"]])];
        // The default: the web's own ports only.
        let (egress, recorder) = setup_ports(&[], answers, &["80", "443"]);
        for port in [25, 22, 5432, 8080] {
            let url = format!("http://api.example.com:{port}/");
            let denied = egress.send(&[], request(&url), None).await.err();
            assert_eq!(
                denied,
                Some(Denied(format!("port {port} is not in [egress] ports"))),
                "{url}"
            );
        }
        assert!(
            recorder.attempts.lock().unwrap().is_empty(),
            "nothing was dialled"
        );
        let ok = egress
            .send(&[], request("http://api.example.com/"), None)
            .await;
        assert!(ok.is_ok(), "port 80 is allowed");
        // Ranges.
        let (egress, _) = setup_ports(&[], answers, &["8000-8999"]);
        assert!(
            egress
                .send(&[], request("http://api.example.com:8443/"), None)
                .await
                .is_ok()
        );
        assert!(
            egress
                .send(&[], request("http://api.example.com:9000/"), None)
                .await
                .is_err()
        );
        for bad in ["0", "70000", "9-1", "x", "80-"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outbound_parameter_headers_are_sanitized() {
        assert_eq!(
            outbound_header_name("customer").unwrap().as_str(),
            "berth-outbound-customer"
        );
        assert_eq!(
            outbound_header_name("Plan Tier").unwrap().as_str(),
            "berth-outbound-plan-tier"
        );
        assert!(outbound_header_name("  ").is_none());
    }
}
