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

/// Per-invocation egress state: who is calling, and how many subrequests
/// they have made.
pub struct EgressHooks {
    namespace: String,
    script: String,
    /// Subrequests made so far by this invocation.
    pub subrequests: u32,
}

impl EgressHooks {
    /// Egress state for one invocation of `namespace/script`.
    pub fn new(namespace: &str, script: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            script: script.to_owned(),
            subrequests: 0,
        }
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
