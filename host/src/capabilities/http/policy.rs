//! The choke point's decisions for one outbound request, in order: scheme
//! and authority, the namespace's and script's rules, the port, name
//! resolution, the address policy; then the request goes to the one vetted
//! address ([`super::client`]). No per-instance state: [`Egress`] is shared
//! by every instance of the host.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::addr::{Cidr, Host, denied_range, parse_host};
use super::client::{self, Connect, Sent, TcpConnector, Timeouts, Vetted};
use super::config::{EgressConfig, PortRange};
use super::resolve::{Resolve, SystemResolver};
use crate::base::egress_rules::CompiledRules;

/// The shared outbound machinery: policy, resolver, connector, TLS.
pub struct Egress {
    allow_private: Vec<Cidr>,
    ports: Vec<PortRange>,
    resolver: Arc<dyn Resolve>,
    connector: Arc<dyn Connect>,
    tls: Arc<rustls::ClientConfig>,
    timeouts: Timeouts,
}

/// Why an outbound request got no response.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The policy refused it; names the rule. Nothing was sent.
    #[error("denied by {0}")]
    Denied(String),
    /// It was allowed, but resolving, connecting or the exchange failed.
    #[error("failed: {0:?}")]
    Failed(HttpError),
}

use EgressError::{Denied, Failed};

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

    /// Applies the rules and the address policy, then sends: the target
    /// named by the request, the namespace's and script's rules and the
    /// ports, the resolved addresses, then the one vetted address.
    pub async fn send(
        &self,
        rules: &[CompiledRules],
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, EgressError> {
        let target = Target::of(request.uri())?;
        for level in rules {
            level
                .check(&target.host_text(), target.port)
                .map_err(|e| Denied(e.to_string()))?;
        }
        if !self.ports.iter().any(|range| range.contains(target.port)) {
            return Err(Denied(format!(
                "port {} is not in [egress] ports",
                target.port
            )));
        }
        let ip = self.vet(self.resolve(&target).await?)?;
        let vetted = Vetted {
            addr: SocketAddr::new(ip, target.port),
            tls_name: target.https.then(|| {
                target
                    .authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            }),
            authority: target.authority.as_str().to_owned(),
        };
        let timeouts = self.timeouts.tightened(options);
        client::send(
            self.connector.as_ref(),
            &self.tls,
            vetted,
            request,
            timeouts,
        )
        .await
        .map_err(Failed)
    }

    /// The addresses of the target: itself if it is an IP, else what the
    /// resolver answers within the connect timeout.
    async fn resolve(&self, target: &Target) -> Result<Vec<IpAddr>, EgressError> {
        let name = match &target.host {
            Host::Ip(ip) => return Ok(vec![*ip]),
            Host::Name(name) => name,
        };
        let answer = tokio::time::timeout(
            self.timeouts.connect,
            self.resolver.resolve(name, target.port),
        )
        .await;
        match answer {
            Ok(Ok(ips)) if !ips.is_empty() => Ok(ips),
            Ok(Ok(_)) => Err(Failed(HttpError::DestinationNotFound)),
            Ok(Err(_)) => Err(Failed(HttpError::DnsError {
                rcode: None,
                info_code: None,
            })),
            Err(_) => Err(Failed(HttpError::DnsTimeout)),
        }
    }

    /// The first address no denied range forbids (unless `allow_private`
    /// opens it); else the refusal naming the first range that denied one.
    fn vet(&self, candidates: Vec<IpAddr>) -> Result<IpAddr, EgressError> {
        let mut refusal = None;
        for ip in candidates {
            match denied_range(ip) {
                Some(range) if !self.allow_private.iter().any(|c| c.contains(ip)) => {
                    refusal.get_or_insert_with(|| format!("host policy: {range} ({ip})"));
                }
                _ => return Ok(ip),
            }
        }
        Err(Denied(refusal.unwrap_or_else(|| "no address".into())))
    }
}

/// Where a request goes, as its URL names it.
struct Target {
    https: bool,
    authority: http::uri::Authority,
    host: Host,
    port: u16,
}

impl Target {
    /// The target of `uri`: http or https, with an authority and a host
    /// in any IP spelling or a name.
    fn of(uri: &http::Uri) -> Result<Self, EgressError> {
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
        Ok(Self {
            https,
            authority,
            host,
            port,
        })
    }

    /// The host as rules match it (IPv6 in brackets).
    fn host_text(&self) -> String {
        match &self.host {
            Host::Name(name) => name.clone(),
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

impl Timeouts {
    /// These timeouts, each tightened by what the guest asked for (a guest
    /// can shorten, never lengthen them).
    fn tightened(mut self, options: Option<RequestOptions>) -> Self {
        if let Some(o) = options {
            let min = |host: std::time::Duration, guest: Option<std::time::Duration>| {
                guest.map_or(host, |t| t.min(host))
            };
            self.connect = min(self.connect, o.connect_timeout);
            self.first_byte = min(self.first_byte, o.first_byte_timeout);
            self.between_bytes = min(self.between_bytes, o.between_bytes_timeout);
        }
        self
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

    use std::collections::BTreeMap;

    use super::super::client::{BoxFuture, Stream};
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
        let sent = egress.send(&[], req, None).await.expect("allowed and sent");
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
            let denied = match egress.send(&[], request(&url), None).await {
                Err(Denied(rule)) => Some(rule),
                _ => None,
            };
            assert_eq!(
                denied,
                Some(format!("port {port} is not in [egress] ports")),
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
}
