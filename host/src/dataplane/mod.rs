//! The data plane: the tenant-facing HTTP listener.
//!
//! Every request follows one path: route (host → namespace + script) → load
//! the worker → invoke it on a fresh instance → stream its response back.
//! Failures become `x-berth-error` responses via [`WorkerError`]. No admin
//! route exists here.

pub mod router;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::errors::WorkerError;
use crate::names::Name;
use crate::runtime::Runtime;

/// Shared state of the data plane.
#[derive(Clone)]
pub struct DataPlane {
    /// The runtime that runs workers.
    pub runtime: Arc<Runtime>,
    /// Namespace served by the built-in router.
    pub default_namespace: Name,
    /// Whether the built-in subdomain router is enabled.
    pub builtin_router: bool,
}

/// The data-plane router: every path and method goes to [`handle`].
pub fn router(state: DataPlane) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(plane): State<DataPlane>, request: Request) -> Response {
    match serve(&plane, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn serve(plane: &DataPlane, request: Request) -> Result<Response, WorkerError> {
    let script = route(plane, &request)?;
    let worker = plane.runtime.worker(&plane.default_namespace, &script).await?;
    let response = plane.runtime.invoke(worker, request).await?;
    Ok(response.map(Body::new))
}

fn route(plane: &DataPlane, request: &Request) -> Result<Name, WorkerError> {
    if !plane.builtin_router {
        return Err(WorkerError::NotFound("no route matches this host".into()));
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("");
    router::script_for_host(host).map_err(WorkerError::NotFound)
}
