//! The admin API: a separate listener, behind a bearer token, for managing
//! namespaces and scripts, and the operator dashboard (its files need no
//! token; everything it shows comes from the token-protected API). It never
//! serves tenant traffic, and the data plane never serves these routes.

mod activity;
mod assets;
mod auth;
mod cloudflare;
mod dashboard;
mod error;
mod hostnames;
mod js;
mod kv;
mod namespaces;
mod observe;
mod scripts;
mod secrets;
mod settings;
mod tags;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::routing::get;

pub use auth::{AdminToken, TOKEN_ENV, TOKEN_FILE, TokenError, TokenSource, resolve_token};
pub use error::{ApiError, ApiResult};

use crate::base::names::Name;
use crate::ops::Ops;

/// Shared state of admin handlers.
#[derive(Clone)]
pub struct AdminState {
    /// Every operation goes through here.
    pub ops: Ops,
    /// Largest accepted upload body.
    pub max_upload_bytes: usize,
}

/// A namespace name from the path.
fn namespace(ns: &str) -> Result<Name, ApiError> {
    Name::new(ns).map_err(ApiError::name("namespace name"))
}

/// Namespace and script names from the path.
fn names(ns: &str, script: &str) -> Result<(Name, Name), ApiError> {
    Ok((
        namespace(ns)?,
        Name::new(script).map_err(ApiError::name("script name"))?,
    ))
}

/// A JSON body, or a clear `invalid_request` naming what was expected.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body must be {expected}: {e}")))
}

async fn runtime_stats(State(state): State<AdminState>) -> ApiResult {
    Ok(error::ok(state.ops.runtime().stats()))
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NoRoute {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

/// The admin router, with authentication applied to every route.
pub fn router(state: AdminState, token: AdminToken) -> Router {
    let body_limit = state.max_upload_bytes;
    Router::new()
        .merge(host_routes())
        .merge(namespace_routes())
        .merge(script_routes())
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(axum::middleware::from_fn_with_state(
            token.clone(),
            auth::require_token,
        ))
        // Cloudflare's API shape, with its own authentication answer.
        .nest(
            "/client/v4",
            cloudflare::router(token).layer(DefaultBodyLimit::max(body_limit)),
        )
        // Added after the auth layer: health checks and the dashboard's
        // files need no token.
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(observe::readyz))
        .route("/dashboard", get(dashboard::index))
        .route("/dashboard/", get(dashboard::index))
        .route("/dashboard/{*path}", get(dashboard::file))
        .with_state(state)
}

/// The host's own resources: runtime stats, the JS engine, metrics, the
/// cluster and the dashboard's data.
fn host_routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/runtime", get(runtime_stats))
        .route("/v1/js", get(js::status))
        .route("/v1/js/build", axum::routing::post(js::build))
        .route("/metrics", get(observe::metrics))
        .route("/v1/cluster", get(activity::cluster))
        .route("/v1/dashboard/history", get(activity::history))
        .route("/v1/dashboard/top", get(activity::top))
        .route(
            "/v1/dashboard/scripts/{ns}/{name}/history",
            get(activity::script_history),
        )
}

/// Namespaces and what hangs off one namespace.
fn namespace_routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/v1/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/v1/namespaces/{ns}",
            get(namespaces::get).delete(namespaces::delete),
        )
        .route("/v1/namespaces/{ns}/hostnames", get(hostnames::list))
        .route(
            "/v1/namespaces/{ns}/hostnames/{hostname}",
            axum::routing::put(hostnames::put).delete(hostnames::delete),
        )
        .route(
            "/v1/namespaces/{ns}/settings",
            get(settings::get_namespace).patch(settings::patch_namespace),
        )
}

/// Scripts and what hangs off one script.
fn script_routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/tail",
            get(observe::tail),
        )
        .route(
            "/v1/namespaces/{ns}/scripts",
            get(tags::list).delete(tags::bulk_delete),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/tags",
            axum::routing::put(tags::put_all),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/tags/{tag}",
            axum::routing::put(tags::put_one).delete(tags::delete_one),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/assets",
            get(assets::get).put(assets::put),
        )
        .route("/v1/namespaces/{ns}/scripts/{name}/kv", get(kv::list))
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/kv/{key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/secrets",
            get(secrets::list),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/secrets/{key}",
            axum::routing::put(secrets::put).delete(secrets::delete),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}",
            get(scripts::get)
                .put(scripts::upload)
                .delete(scripts::delete),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/content",
            get(scripts::content),
        )
        .route(
            "/v1/namespaces/{ns}/scripts/{name}/settings",
            get(settings::get).patch(settings::patch),
        )
}
