//! The single choke point for guests' outbound HTTP.
//!
//! Every `wasi:http/outgoing-handler.handle` call of every guest reaches
//! [`EgressHooks::send_request`]; guests get no sockets, so there is no
//! other way out. Each subrequest is counted per invocation and logged with
//! namespace, script, method, scheme+authority (never the query string),
//! outcome and duration.

use std::time::Instant;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

type BoxFuture<T> = Box<dyn Future<Output = T> + Send>;

/// Per-invocation egress state: who is calling, how many subrequests they
/// have made and may make, and the dispatch worker's outbound parameters.
pub struct EgressHooks {
    namespace: String,
    script: String,
    /// Subrequests made so far by this invocation (denied ones included).
    pub subrequests: u32,
    max_subrequests: Option<u32>,
    /// Set when a subrequest was refused because of the limit.
    pub subrequest_limit_hit: bool,
    /// Parameters the dispatch worker attached to this invocation
    /// (`options.outbound`); never visible to the guest.
    pub outbound: Vec<(String, String)>,
}

impl EgressHooks {
    /// Egress state for one invocation of `namespace/script`.
    pub fn new(namespace: &str, script: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            script: script.to_owned(),
            subrequests: 0,
            max_subrequests: None,
            subrequest_limit_hit: false,
            outbound: Vec::new(),
        }
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
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: BoxFuture<Result<(), HttpError>>,
    ) -> BoxFuture<Result<(http::Response<WasiBody>, BoxFuture<Result<(), HttpError>>), HttpError>>
    {
        drop(fut);
        self.subrequests += 1;
        let method = request.method().clone();
        let target = format!(
            "{}://{}",
            request.uri().scheme_str().unwrap_or("http"),
            request.uri().authority().map(|a| a.as_str()).unwrap_or("")
        );
        let (namespace, script) = (self.namespace.clone(), self.script.clone());
        if let Some(limit) = self
            .max_subrequests
            .filter(|limit| self.subrequests > *limit)
        {
            self.subrequest_limit_hit = true;
            tracing::warn!(
                target: "berth::egress", %namespace, %script, %method, %target, limit,
                rule = "subrequest-limit", "subrequest denied"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(async move {
            let started = Instant::now();
            let result = wasmtime_wasi_http::default_send_request(request, options).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok((response, _)) => tracing::info!(
                    target: "berth::egress", %namespace, %script, %method, %target,
                    status = response.status().as_u16(), elapsed_ms, "subrequest"
                ),
                Err(error) => tracing::warn!(
                    target: "berth::egress", %namespace, %script, %method, %target,
                    ?error, elapsed_ms, "subrequest failed"
                ),
            }
            let (response, io) = result?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as BoxFuture<Result<(), HttpError>>,
            ))
        })
    }
}
