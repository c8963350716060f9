//! Routing: the tenant-facing data plane.
//!
//! Every request follows one path: route by `Host` → load the worker →
//! invoke it → stream its response back. A host that matches a
//! `[[dispatch]]` entry ([`table`]) goes to that entry's dispatch worker
//! (which calls user workers itself); any other host goes to the default
//! namespace's hostname table, then the built-in subdomain router
//! ([`builtin`](mod@builtin): first label → script), or gets 404 when it is disabled.
//! Failures become `x-berth-error` responses through the one error map
//! ([`WorkerError::to_http`]). No admin route exists here.
//!
//! [`router`] is an ordinary axum `Router`: it can be merged or nested into
//! another application and driven with `tower::ServiceExt::oneshot`. The
//! client address comes from axum's `ConnectInfo` when the server provides
//! it, else `0.0.0.0`.

pub mod builtin;
pub mod table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;

use crate::base::error::WorkerError;
use crate::base::host_pattern::check_host;
use crate::base::names::Name;
use crate::base::platform_headers::{self, HOP_HEADER, RequestMeta};
use crate::capabilities::CallOptions;
use crate::capabilities::dispatcher::DispatchBinding;
use crate::runtime::{InvokeOptions, Runtime};
pub use table::{DispatchEntry, DispatchTable};

/// Shared state of the data plane.
#[derive(Clone)]
pub struct DataPlane {
    /// The runtime that runs workers.
    pub runtime: Arc<Runtime>,
    /// `[[dispatch]]` entries, consulted before the built-in router.
    pub dispatch: Arc<DispatchTable>,
    /// Namespace served by the built-in router.
    pub default_namespace: Name,
    /// Whether the built-in subdomain router is enabled.
    pub builtin_router: bool,
    /// `[server] trusted_headers`.
    pub trusted_headers: Arc<std::collections::BTreeMap<String, String>>,
    /// `[server] expose_error_details`: trap text and stderr in responses.
    pub expose_error_details: bool,
    /// `[egress] max_hops`: how often a request may come back through
    /// workers' subrequests before it is refused with `loop-detected`.
    pub max_hops: u32,
    /// `[server] body_read_timeout_ms`: longest wait for the next piece of
    /// a request body.
    pub body_read_timeout: std::time::Duration,
}

/// The data-plane router: every path and method goes to [`handle`].
pub fn router(state: DataPlane) -> Router {
    // Behind one `Arc`: axum clones the state for every request, and a
    // plain clone copied the namespace's name and bumped three counters.
    Router::new().fallback(handle).with_state(Arc::new(state))
}

async fn handle(State(plane): State<Arc<DataPlane>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let meta = RequestMeta::new(peer);
    let id = meta.id.clone();
    // Every log line of this request (host and guest) carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = match tracing::Instrument::instrument(serve(&plane, request, meta), span)
        .await
    {
        Ok(response) => response,
        Err(error) => {
            // What the client does not see, the operator can read.
            if matches!(error, WorkerError::Internal(_)) {
                tracing::warn!(request_id = %id, code = error.code().as_str(), %error, "request failed");
            }
            error.to_public_http(&id, plane.expose_error_details, Body::from)
        }
    };
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(http::HeaderName::from_static("berth-request-id"), value);
    }
    response
}

async fn serve(
    plane: &DataPlane,
    request: Request,
    meta: RequestMeta,
) -> Result<Response, WorkerError> {
    let host = request_host(&request)?;
    let hops = hop_count(request.headers());
    if hops >= plane.max_hops {
        return Err(WorkerError::LoopDetected(hops));
    }
    let timeout = plane.body_read_timeout;
    let request = request.map(|body| {
        use http_body_util::BodyExt;
        let body = body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())));
        crate::limits::body::ReadTimeout::new(body, timeout)
    });
    let meta = RequestMeta { hops, ..meta };
    if let Some(entry) = plane.dispatch.route(&host) {
        return dispatch(plane, entry, request, meta).await;
    }
    if !plane.builtin_router {
        return Err(WorkerError::NotFound(format!(
            "no route matches host {host:?}"
        )));
    }
    builtin(plane, &host, request, meta).await
}

/// The host the request is for: its `Host` header, bounded (see
/// [`check_host`]); a request target in absolute form must name the same
/// authority, so routing and the guest see one host.
fn request_host(request: &Request) -> Result<String, WorkerError> {
    let header =
        match request.headers().get(http::header::HOST) {
            Some(value) => Some(value.to_str().map_err(|_| {
                WorkerError::BadRequest("the Host header is not visible ASCII".into())
            })?),
            None => None,
        };
    let target = request.uri().authority().map(|a| a.as_str());
    let host = match (header, target) {
        (Some(header), Some(target)) if !header.eq_ignore_ascii_case(target) => {
            return Err(WorkerError::BadRequest(format!(
                "the request target names {target:?} but Host is {header:?}"
            )));
        }
        (Some(host), _) | (None, Some(host)) => host,
        (None, None) => "",
    };
    check_host(host).map_err(|e| WorkerError::BadRequest(e.0))?;
    Ok(host.to_owned())
}

/// The request's hop count (0 for a client's own request).
fn hop_count(headers: &http::HeaderMap) -> u32 {
    headers
        .get(HOP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

/// A `[[dispatch]]` entry's dispatch worker serves the request.
async fn dispatch<B>(
    plane: &DataPlane,
    entry: &DispatchEntry,
    mut request: http::Request<B>,
    meta: RequestMeta,
) -> Result<Response, WorkerError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let trusted = plane.runtime.namespace_trusted(&entry.namespace);
    platform_headers::apply(
        request.headers_mut(),
        trusted,
        &meta,
        &plane.trusted_headers,
    );
    let worker = entry.worker(&plane.runtime).await?;
    let binding = DispatchBinding::new(plane.runtime.invoker(), entry.namespace.clone())
        .with_outbound_worker(entry.outbound_worker.clone())
        .with_request(meta.clone(), trusted, plane.trusted_headers.clone());
    let options = InvokeOptions {
        call: CallOptions {
            limits: entry.limits,
            request_id: Some(meta.id),
            hops: meta.hops,
            ..CallOptions::default()
        },
        gate: Some(entry.gate.clone()),
        dispatch: Some(binding),
    };
    let response = plane.runtime.invoke(worker, request, options).await?;
    Ok(response.map(Body::new))
}

/// The default namespace serves the request: its hostname table first
/// (custom hostnames, wildcards), then the first label of the host.
async fn builtin<B>(
    plane: &DataPlane,
    host: &str,
    mut request: http::Request<B>,
    meta: RequestMeta,
) -> Result<Response, WorkerError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let mapped = plane
        .runtime
        .store()
        .lookup(&plane.default_namespace, host)?;
    let script = match mapped {
        Some(script) => script,
        None => builtin::script_for_host(host).map_err(|e| WorkerError::NotFound(e.to_string()))?,
    };
    let trusted = plane.runtime.namespace_trusted(&plane.default_namespace);
    platform_headers::apply(
        request.headers_mut(),
        trusted,
        &meta,
        &plane.trusted_headers,
    );
    let worker = plane
        .runtime
        .worker(&plane.default_namespace, &script)
        .await?;
    let options = InvokeOptions::from(CallOptions {
        request_id: Some(meta.id),
        hops: meta.hops,
        ..CallOptions::default()
    });
    let response = plane.runtime.handle(worker, request, options).await?;
    Ok(response.map(Body::new))
}
