//! The host implementation of `berth:platform/dispatcher`.
//!
//! `get` looks a script up in the dispatch worker's bound namespace (and
//! nowhere else). `worker.fetch` turns the guest's `outgoing-request` into a
//! request for the user worker — body still streaming from the dispatch
//! worker — and starts the invocation on its own task, so several fetches
//! can be in flight. The `future-response` resolves when the user worker
//! sets its response (or fails); the response body keeps streaming from the
//! user worker while the dispatch worker reads it.
//!
//! The functions are written once, on [`DispatcherView`], with failures as
//! [`WorkerError`]s; each linked package version (`berth:platform@0.1.0`,
//! `@0.2.0`) gets the same trait implementations, differing only in how
//! its `dispatch-error` spells a failure (`bindings`).

use std::pin::Pin;
use std::sync::Arc;

use std::collections::BTreeMap;
use tokio::time::Instant;

use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::runtime::{poll_noop, spawn};
use wasmtime_wasi_http::p2::bindings::http::types::{Method, Scheme};
use wasmtime_wasi_http::p2::body::HostIncomingBody;
use wasmtime_wasi_http::p2::types::{
    HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest, HostResponseOutparam,
};
use wasmtime_wasi_http::{FieldMap, WasiBody};

use super::DispatcherView;
use super::bindings::{v0_1, v0_2, v0_3};
use super::resources::{FutureResponse, WorkerHandle};
use crate::base::error::WorkerError;
use crate::base::limits::CallLimits;
use crate::base::names::Name;
use crate::base::platform_headers::RequestMeta;
use crate::capabilities::{CallOptions, InvokerRef, OutboundWorker, WorkerRequest};

/// What a dispatch worker's store knows about its binding.
#[derive(Clone)]
pub struct DispatchBinding {
    pub(super) invoker: InvokerRef,
    namespace: Name,
    deadline: Option<Instant>,
    outbound_worker: Option<OutboundWorker>,
    request: Option<ClientContext>,
    dispatched: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The client request a dispatch worker is serving, for the platform
/// headers of the user workers it calls.
#[derive(Clone)]
struct ClientContext {
    meta: RequestMeta,
    trusted: bool,
    extra: Arc<BTreeMap<String, String>>,
}

impl DispatchBinding {
    /// A binding to `namespace` (the only one `get` can reach), running
    /// user workers through `invoker`.
    pub fn new(invoker: InvokerRef, namespace: Name) -> Self {
        Self {
            invoker,
            namespace,
            deadline: None,
            outbound_worker: None,
            request: None,
            dispatched: Default::default(),
        }
    }

    /// The scripts `get` has selected so far (for the tail).
    pub fn dispatched(&self) -> Arc<std::sync::Mutex<Vec<String>>> {
        self.dispatched.clone()
    }

    /// The client request being served and its namespace's mode: user
    /// worker requests get the same platform headers (or none).
    pub fn with_request(
        mut self,
        meta: RequestMeta,
        trusted: bool,
        extra: Arc<BTreeMap<String, String>>,
    ) -> Self {
        self.request = Some(ClientContext {
            meta,
            trusted,
            extra,
        });
        self
    }

    /// Sends every outbound request of the user workers through `worker`.
    pub fn with_outbound_worker(mut self, worker: Option<OutboundWorker>) -> Self {
        self.outbound_worker = worker;
        self
    }

    /// User workers called through this binding cannot outlive `deadline`.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The bound namespace.
    pub fn namespace(&self) -> &Name {
        &self.namespace
    }

    /// Notes that `get` selected `name` (for the tail; bounded).
    pub(super) fn record(&self, name: &str) {
        if let Ok(mut seen) = self.dispatched.lock()
            && !seen.iter().any(|s| s == name)
            && seen.len() < 64
        {
            seen.push(name.to_owned());
        }
    }

    /// Gives a user worker's request the platform headers of the client
    /// request being served (or strips them, for untrusted namespaces).
    pub(super) fn apply_platform_headers(&self, headers: &mut http::HeaderMap) {
        match &self.request {
            Some(client) => crate::base::platform_headers::apply(
                headers,
                client.trusted,
                &client.meta,
                &client.extra,
            ),
            None => crate::base::platform_headers::apply(
                headers,
                false,
                &RequestMeta::new(std::net::Ipv4Addr::UNSPECIFIED.into()),
                &BTreeMap::new(),
            ),
        }
    }

    /// How a user worker called through this binding runs.
    pub(super) fn invoke_options(
        &self,
        limits: CallLimits,
        outbound: Vec<(String, String)>,
    ) -> CallOptions {
        CallOptions {
            limits,
            deadline_cap: self.deadline,
            outbound,
            outbound_worker: self.outbound_worker.clone(),
            request_id: self.request.as_ref().map(|c| c.meta.id.clone()),
            hops: self.request.as_ref().map_or(0, |c| c.meta.hops),
            on_behalf_of: None,
        }
    }
}

/// The head of a request for a user worker, however the dispatch worker
/// gave it (an `outgoing-request` to copy, or its own `incoming-request`).
pub(super) struct Head {
    pub(super) method: Method,
    pub(super) scheme: Option<Scheme>,
    pub(super) authority: Option<String>,
    pub(super) path_with_query: Option<String>,
    pub(super) headers: http::HeaderMap,
}

/// Builds the request the user worker receives from a guest's
/// `outgoing-request`.
fn user_request(
    request: HostOutgoingRequest,
    script: &Name,
) -> Result<WorkerRequest, RequestError> {
    let head = Head {
        method: request.method,
        scheme: request.scheme,
        authority: request.authority,
        path_with_query: request.path_with_query,
        headers: request.headers.into(),
    };
    build_request(head, request.body, script)
}

/// A body with nothing in it, for a request or response that has none.
pub(super) fn empty_body() -> WasiBody {
    use http_body_util::{BodyExt, Empty};
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Why a dispatch worker's request could not be handed to a user worker.
/// It reaches the dispatch worker as `internal` through the
/// `future-response` (see [`DispatcherView::call`]), this text its message.
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    #[error("invalid request method {0:?}")]
    Method(String),
    #[error("invalid request {uri:?}: {source}")]
    Uri {
        uri: String,
        source: http::uri::InvalidUri,
    },
    #[error("invalid request authority {0:?}")]
    Authority(String),
    #[error("forward-incoming: the request's body was already consumed; use worker.fetch")]
    BodyConsumed,
    #[error("forward-incoming: drop the request's headers (and anything else taken from it) first")]
    ChildrenHeld,
}

/// The request a user worker receives: its authority (the script's name
/// if there is none) becomes the `host` header; scheme defaults to `http`.
pub(super) fn build_request(
    head: Head,
    body: Option<WasiBody>,
    script: &Name,
) -> Result<WorkerRequest, RequestError> {
    let method = match head.method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(m) => {
            http::Method::from_bytes(m.as_bytes()).map_err(|_| RequestError::Method(m.clone()))?
        }
    };
    let scheme = match &head.scheme {
        Some(Scheme::Https) => "https",
        Some(Scheme::Other(s)) => s.as_str(),
        _ => "http",
    };
    let authority = head
        .authority
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| script.to_string());
    let path = head.path_with_query.as_deref().unwrap_or("/");
    let uri = format!("{scheme}://{authority}{path}");
    let uri: http::Uri = uri
        .parse()
        .map_err(|source| RequestError::Uri { uri, source })?;
    let host = http::HeaderValue::from_str(&authority)
        .map_err(|_| RequestError::Authority(authority.clone()))?;
    // The headers move over as they are, every value of every name; only
    // `host` follows the authority.
    let mut headers = head.headers;
    headers.insert(http::header::HOST, host);
    let body = body.unwrap_or_else(empty_body);
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

impl DispatcherView<'_> {
    async fn lookup(&mut self, hostname: String) -> wasmtime::Result<Option<String>> {
        let Some(binding) = self.state.binding.clone() else {
            return Ok(None);
        };
        let Ok(invoker) = binding.invoker.get() else {
            return Ok(None);
        };
        let store = invoker.hostnames();
        let found =
            tokio::task::spawn_blocking(move || store.lookup(&binding.namespace, &hostname))
                .await
                .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
        Ok(found.ok().flatten().map(|name| name.to_string()))
    }

    async fn select(
        &mut self,
        name: String,
        limits: CallLimits,
        outbound: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<Resource<WorkerHandle>, WorkerError>> {
        let Some(binding) = self.state.binding.clone() else {
            return Ok(Err(WorkerError::Internal(
                "this component is not running as a dispatch worker".into(),
            )));
        };
        let Ok(script) = Name::new(&name) else {
            return Ok(Err(WorkerError::NotFound(name)));
        };
        binding.record(&name);
        let loaded = match binding.invoker.get() {
            Ok(invoker) => invoker.user_worker(binding.namespace.clone(), script).await,
            Err(error) => Err(error),
        };
        let worker = match loaded {
            Ok(worker) => worker,
            Err(error) => return Ok(Err(error)),
        };
        let handle = WorkerHandle {
            worker,
            limits,
            outbound,
        };
        Ok(Ok(self.http.table.push(handle)?))
    }

    fn worker_name(&mut self, this: Resource<WorkerHandle>) -> wasmtime::Result<String> {
        Ok(self.http.table.get(&this)?.worker.name().to_string())
    }

    fn fetch_with(
        &mut self,
        this: Resource<WorkerHandle>,
        request: Resource<HostOutgoingRequest>,
    ) -> wasmtime::Result<Resource<FutureResponse>> {
        let request = self.http.table.delete(request)?;
        let script = self.http.table.get(&this)?.worker.name().clone();
        let request = user_request(request, &script);
        self.call(this, request)
    }

    /// Starts the user worker of `this` on `request` (on its own task, so
    /// several calls can be in flight); a request that could not be built
    /// fails as `internal` through the `future-response`.
    pub(super) fn call(
        &mut self,
        this: Resource<WorkerHandle>,
        request: Result<WorkerRequest, RequestError>,
    ) -> wasmtime::Result<Resource<FutureResponse>> {
        let binding = self
            .state
            .binding
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("fetch outside a dispatch worker"))?;
        let handle = self.http.table.get(&this)?;
        let (worker, limits, outbound) = (
            handle.worker.clone(),
            handle.limits,
            handle.outbound.clone(),
        );
        let future = match request {
            Err(error) => FutureResponse::Ready(Err(WorkerError::Internal(error.to_string()))),
            Ok(mut request) => {
                binding.apply_platform_headers(request.headers_mut());
                let invoker = binding.invoker.clone();
                let options = binding.invoke_options(limits, outbound);
                // The user worker's logs belong to the client request too.
                let span = tracing::Span::current();
                FutureResponse::Pending(spawn(tracing::Instrument::instrument(
                    async move { invoker.get()?.serve(worker, request, options).await },
                    span,
                )))
            }
        };
        Ok(self.http.table.push(future)?)
    }

    fn drop_worker(&mut self, this: Resource<WorkerHandle>) -> wasmtime::Result<()> {
        self.http.table.delete(this)?;
        Ok(())
    }

    fn subscribe_response(
        &mut self,
        this: Resource<FutureResponse>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.http.table, this)
    }

    fn take_response(
        &mut self,
        this: Resource<FutureResponse>,
    ) -> wasmtime::Result<Option<Result<Resource<HostIncomingResponse>, WorkerError>>> {
        let future = self.http.table.get_mut(&this)?;
        let outcome = match std::mem::replace(future, FutureResponse::Consumed) {
            FutureResponse::Ready(outcome) => outcome,
            FutureResponse::Pending(mut handle) => match poll_noop(Pin::new(&mut handle)) {
                Some(outcome) => outcome,
                None => {
                    *future = FutureResponse::Pending(handle);
                    return Ok(None);
                }
            },
            FutureResponse::Consumed => {
                return Ok(Some(Err(WorkerError::Internal(
                    "the response was already taken".into(),
                ))));
            }
        };
        let response = match outcome {
            Ok(response) => response,
            Err(error) => return Ok(Some(Err(error))),
        };
        let (parts, body) = response.into_parts();
        let http = &mut self.http;
        let headers = FieldMap::new_immutable(http.hooks, parts.headers);
        let incoming = HostIncomingResponse {
            status: parts.status.as_u16(),
            headers,
            body: Some(HostIncomingBody::new(body)),
        };
        Ok(Some(Ok(http.table.push(incoming)?)))
    }

    fn drop_response(&mut self, this: Resource<FutureResponse>) -> wasmtime::Result<()> {
        self.http.table.delete(this)?;
        Ok(())
    }
}

/// The `dispatcher` traits of one package version, over the functions
/// above: only the records and the error type differ between versions.
macro_rules! dispatcher_version {
    ($v:ident $(, host: { $($host:item)* }, worker: { $($worker:item)* })?) => {
        impl $v::berth::platform::dispatcher::Host for DispatcherView<'_> {
            $($($host)*)?

            async fn lookup_hostname(
                &mut self,
                hostname: String,
            ) -> wasmtime::Result<Option<String>> {
                self.lookup(hostname).await
            }

            async fn get(
                &mut self,
                name: String,
                options: $v::berth::platform::dispatcher::Options,
            ) -> wasmtime::Result<
                Result<Resource<WorkerHandle>, $v::berth::platform::dispatcher::DispatchError>,
            > {
                let l = &options.limits;
                let limits = CallLimits {
                    cpu_ms: l.cpu_ms,
                    wall_ms: l.wall_ms,
                    memory_mb: l.memory_mb.map(u64::from),
                    subrequests: l.subrequests,
                };
                Ok(self
                    .select(name, limits, options.outbound)
                    .await?
                    .map_err(Into::into))
            }
        }

        impl $v::berth::platform::dispatcher::HostWorker for DispatcherView<'_> {
            $($($worker)*)?

            fn name(&mut self, this: Resource<WorkerHandle>) -> wasmtime::Result<String> {
                self.worker_name(this)
            }

            fn fetch(
                &mut self,
                this: Resource<WorkerHandle>,
                request: Resource<HostOutgoingRequest>,
            ) -> wasmtime::Result<Resource<FutureResponse>> {
                self.fetch_with(this, request)
            }

            fn drop(&mut self, this: Resource<WorkerHandle>) -> wasmtime::Result<()> {
                self.drop_worker(this)
            }
        }

        impl $v::berth::platform::dispatcher::HostFutureResponse for DispatcherView<'_> {
            fn subscribe(
                &mut self,
                this: Resource<FutureResponse>,
            ) -> wasmtime::Result<Resource<DynPollable>> {
                self.subscribe_response(this)
            }

            fn get(
                &mut self,
                this: Resource<FutureResponse>,
            ) -> wasmtime::Result<
                Option<
                    Result<
                        Resource<HostIncomingResponse>,
                        $v::berth::platform::dispatcher::DispatchError,
                    >,
                >,
            > {
                Ok(self
                    .take_response(this)?
                    .map(|outcome| outcome.map_err(Into::into)))
            }

            fn drop(&mut self, this: Resource<FutureResponse>) -> wasmtime::Result<()> {
                self.drop_response(this)
            }
        }
    };
}

dispatcher_version!(v0_1);
dispatcher_version!(v0_2);
// 0.3.0 adds the pass-through (`passthrough`).
dispatcher_version!(v0_3,
    host: {
        fn send_response(
            &mut self,
            out: Resource<HostResponseOutparam>,
            response: Resource<HostIncomingResponse>,
            drop_headers: Vec<String>,
        ) -> wasmtime::Result<()> {
            self.respond_with(out, response, drop_headers)
        }
    },
    worker: {
        fn forward_incoming(
            &mut self,
            this: Resource<WorkerHandle>,
            request: Resource<HostIncomingRequest>,
        ) -> wasmtime::Result<Resource<FutureResponse>> {
            self.forward(this, request)
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn head(authority: Option<&str>, headers: &[(&str, &str)]) -> Head {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        Head {
            method: Method::Post,
            scheme: None,
            authority: authority.map(str::to_owned),
            path_with_query: Some("/a?b=c".into()),
            headers: map,
        }
    }

    #[test]
    fn the_user_worker_request_keeps_every_header_and_follows_the_authority() {
        let script = Name::new("shop").unwrap();
        let request = build_request(
            head(
                Some("shop.example.com"),
                &[("x-multi", "1"), ("x-multi", "2"), ("host", "forged.test")],
            ),
            None,
            &script,
        )
        .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "http://shop.example.com/a?b=c");
        let multi: Vec<_> = request.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2"]);
        let hosts: Vec<_> = request.headers().get_all("host").iter().collect();
        assert_eq!(hosts, ["shop.example.com"], "host follows the authority");
    }

    #[test]
    fn no_authority_means_the_script_and_a_bad_one_is_named() {
        let script = Name::new("shop").unwrap();
        let request = build_request(head(None, &[]), None, &script).unwrap();
        assert_eq!(request.uri(), "http://shop/a?b=c");
        assert_eq!(request.headers()["host"], "shop");
        let error = build_request(head(Some("bad host"), &[]), None, &script).unwrap_err();
        assert!(
            matches!(&error, RequestError::Uri { uri, .. } if uri.contains("bad host")),
            "{error:?}"
        );
        let mut other = head(None, &[]);
        other.method = Method::Other("BAD METHOD".into());
        let error = build_request(other, None, &script).unwrap_err();
        assert!(
            matches!(&error, RequestError::Method(m) if m == "BAD METHOD"),
            "{error:?}"
        );
    }
}
