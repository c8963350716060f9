//! The data plane: the tenant-facing HTTP listener.
//!
//! Every request follows one path: route by `Host` → load the worker →
//! invoke it on a fresh instance → stream its response back. A host that
//! matches a `[[dispatch]]` entry goes to that entry's dispatch worker
//! (which calls user workers itself); any other host goes to the built-in
//! subdomain router (first label → script of the default namespace), or
//! gets 404 when it is disabled. Failures become `x-berth-error` responses
//! via [`WorkerError`]. No admin route exists here.

pub mod headers;
pub mod router;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};

use self::headers::RequestMeta;
use crate::dispatch::{DispatchBinding, DispatchTable};
use crate::errors::WorkerError;
use crate::names::Name;
use crate::runtime::{InvokeOptions, Runtime};

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
}

/// The data-plane router: every path and method goes to [`handle`].
pub fn router(state: DataPlane) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(plane): State<DataPlane>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let meta = RequestMeta::new(peer.ip());
    let id = meta.id.clone();
    // Every log line of this request (host and guest) carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let mut response =
        match tracing::Instrument::instrument(serve(&plane, request, meta), span).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
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
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("")
        .to_owned();
    let mut request = request.map(|body| {
        use http_body_util::BodyExt;
        body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
    });
    if let Some(entry) = plane.dispatch.route(&host) {
        let trusted = plane.runtime.namespace_trusted(&entry.namespace);
        headers::apply(
            request.headers_mut(),
            trusted,
            &meta,
            &plane.trusted_headers,
        );
        let worker = entry.worker(&plane.runtime).await?;
        let options = InvokeOptions {
            limits: entry.limits,
            request_id: Some(meta.id.clone()),
            dispatch: Some(
                DispatchBinding::new(plane.runtime.clone(), entry.namespace.clone())
                    .with_outbound_worker(entry.outbound_worker.clone())
                    .with_request(meta, trusted, plane.trusted_headers.clone()),
            ),
            ..InvokeOptions::default()
        };
        let response = plane.runtime.invoke(worker, request, options).await?;
        return Ok(response.map(Body::new));
    }
    if !plane.builtin_router {
        return Err(WorkerError::NotFound(format!(
            "no route matches host {host:?}"
        )));
    }
    // The namespace's hostname table first (custom hostnames, wildcards),
    // then the first label of the host.
    let mapped = crate::dispatch::hostnames::lookup(
        plane.runtime.store().as_ref(),
        &plane.default_namespace,
        &host,
    )
    .map_err(|e| WorkerError::Internal(e.to_string()))?;
    let script = match mapped {
        Some(script) => script,
        None => router::script_for_host(&host).map_err(WorkerError::NotFound)?,
    };
    let trusted = plane.runtime.namespace_trusted(&plane.default_namespace);
    headers::apply(
        request.headers_mut(),
        trusted,
        &meta,
        &plane.trusted_headers,
    );
    let worker = plane
        .runtime
        .worker(&plane.default_namespace, &script)
        .await?;
    let options = InvokeOptions {
        request_id: Some(meta.id.clone()),
        ..InvokeOptions::default()
    };
    let response = plane.runtime.handle(worker, request, options).await?;
    Ok(response.map(Body::new))
}
