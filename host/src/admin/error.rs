//! The admin API's JSON envelope and its one error type.
//!
//! Every admin response is `{"success", "errors": [{"code", "message"}],
//! "messages", "result"}` (Cloudflare's shape). [`ApiError`] is the single
//! place where failures become an HTTP status, a stable error `code`
//! (snake_case; the same code kebab-cased in `x-berth-error`) and a message
//! that names the problem; details that would only confuse a client
//! (storage internals) go to the log instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::base::names::NameError;
use crate::js::JsError;
use crate::ops::OpsError;
use crate::store::StoreError;

/// An admin API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("missing or invalid admin token (send `Authorization: Bearer <token>`)")]
    Unauthorized,
    /// A namespace or script name in the path or body is invalid.
    #[error("invalid {what}: {source}")]
    InvalidName {
        /// Which name (namespace, script).
        what: &'static str,
        /// Why.
        source: NameError,
    },
    /// The request is malformed (body, query, multipart).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than `server.max_upload_mb`.
    #[error("request body exceeds the {limit_mb} MiB limit (server.max_upload_mb)")]
    PayloadTooLarge {
        /// The limit in MiB.
        limit_mb: u64,
    },
    /// Unsupported `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No such route.
    #[error("no admin endpoint {method} {path}")]
    NoRoute {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
    /// The operation was refused or failed.
    #[error(transparent)]
    Ops(#[from] OpsError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Ops(error.into())
    }
}

/// Status and stable code of a store failure (snake_case, like every admin
/// code).
fn store_status(error: &StoreError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match error {
        StoreError::NamespaceNotFound(_) => (S::NOT_FOUND, "namespace_not_found"),
        StoreError::NamespaceExists(_) => (S::CONFLICT, "namespace_exists"),
        StoreError::NamespaceNotEmpty { .. } => (S::CONFLICT, "namespace_not_empty"),
        StoreError::MissingAssets(_) => (S::BAD_REQUEST, "missing_assets"),
        StoreError::KvQuota(_) => (S::INSUFFICIENT_STORAGE, "kv_limit"),
        StoreError::BucketGone { .. } => (S::CONFLICT, "script_deleted"),
        StoreError::Corrupt { .. } | StoreError::Backend(_) => {
            (S::INTERNAL_SERVER_ERROR, "storage_error")
        }
        // The cluster store is unreachable: nothing was written, and
        // retrying later is the right move.
        StoreError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "store_unavailable"),
        StoreError::Conflict(_) => (S::CONFLICT, "conflict"),
        StoreError::Task(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// Status and stable code of a JS build failure.
fn js_status(error: &JsError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match error {
        JsError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "js_unavailable"),
        JsError::Invalid(_) => (S::BAD_REQUEST, "invalid_script"),
        JsError::Script(_) | JsError::HostCallAtTopLevel { .. } => (S::BAD_REQUEST, "script_error"),
        JsError::Limit { .. } => (S::BAD_REQUEST, "build_limit_exceeded"),
        JsError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "build_failed"),
    }
}

impl ApiError {
    /// Status and stable error code: the one map from a failure to what
    /// the client sees.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            Self::InvalidName { .. } => (S::BAD_REQUEST, "invalid_name"),
            Self::BadRequest(_) | Self::Ops(OpsError::Invalid(_)) => {
                (S::BAD_REQUEST, "invalid_request")
            }
            Self::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::NoRoute { .. } | Self::Ops(OpsError::NotFound { .. }) => {
                (S::NOT_FOUND, "not_found")
            }
            Self::Ops(OpsError::Metadata(_)) => (S::BAD_REQUEST, "invalid_metadata"),
            Self::Ops(OpsError::Component(_)) => (S::BAD_REQUEST, "invalid_component"),
            Self::Ops(OpsError::Js(e)) => js_status(e),
            Self::Ops(OpsError::ScriptNotFound { .. }) => (S::NOT_FOUND, "script_not_found"),
            Self::Ops(OpsError::DefaultNamespace(_)) => (S::CONFLICT, "default_namespace"),
            Self::Ops(OpsError::Store(e)) => store_status(e),
        }
    }

    /// Shorthand for a bad name.
    pub fn name(what: &'static str) -> impl FnOnce(NameError) -> Self {
        move |source| Self::InvalidName { what, source }
    }

    /// The message the client sees: host internals stay in the log.
    pub fn public_message(&self) -> String {
        match self.status_and_code() {
            (_, "internal") | (_, "storage_error") => "internal error; see the server log".into(),
            _ => self.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "admin request failed");
        }
        let mut error = json!({"code": code, "message": self.public_message()});
        // Structured detail a client can act on without reading the text.
        match &self {
            Self::Ops(OpsError::Store(StoreError::MissingAssets(missing))) => {
                error["missing"] = json!(missing);
            }
            Self::Ops(OpsError::Js(JsError::Script(failure))) => {
                error["script"] = json!(failure);
            }
            Self::Ops(OpsError::Js(JsError::Limit { limit, .. })) => {
                error["limit"] = json!(limit);
            }
            _ => {}
        }
        let body = json!({
            "success": false,
            "errors": [error],
            "messages": [],
            "result": null,
        });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        // The same code in `x-berth-error` casing: the data plane's header,
        // and the spelling this code had before every admin code became
        // snake_case (`store-unavailable`).
        if let Ok(value) = http::HeaderValue::from_str(&code.replace('_', "-")) {
            headers.insert(crate::base::error::ERROR_HEADER, value);
        }
        if matches!(self, Self::Unauthorized) {
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A successful envelope around `result`.
pub fn ok<T: Serialize>(result: T) -> Json<Value> {
    Json(json!({"success": true, "errors": [], "messages": [], "result": result}))
}

/// A successful envelope around one page of a list, with
/// `result_info: {"count", "cursor"}`; `cursor` is `null` on the last page.
pub fn ok_page<T: Serialize>(result: Vec<T>, cursor: Option<String>) -> Json<Value> {
    let count = result.len();
    Json(json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": result,
        "result_info": {"count": count, "cursor": cursor},
    }))
}

/// Result alias for admin handlers.
pub type ApiResult<T = Json<Value>> = Result<T, ApiError>;
