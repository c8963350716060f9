//! The admin API's JSON envelope and its one error type.
//!
//! Every admin response is `{"success", "errors": [{"code", "message"}],
//! "result"}` (Cloudflare's shape). [`ApiError`] is the single place where
//! internal failures become an HTTP status, a stable error `code` and a
//! message that names the problem; details that would only confuse a client
//! (storage internals) go to the log instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::base::names::NameError;
use crate::deploy::DeployError;
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
    /// The request is malformed.
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
    /// No script with this name.
    #[error("script {script:?} does not exist in namespace {namespace:?}")]
    ScriptNotFound {
        /// The namespace.
        namespace: String,
        /// The script.
        script: String,
    },
    /// The server's default namespace cannot be deleted.
    #[error("namespace {0:?} is the server's default_namespace and cannot be deleted")]
    DefaultNamespace(String),
    /// A named item (secret, hostname) does not exist.
    #[error("{0}")]
    ItemNotFound(String),
    /// No such route.
    #[error("no admin endpoint {method} {path}")]
    NoRoute {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
    /// A deploy failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// Status and stable error code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            Self::InvalidName { .. } => (S::BAD_REQUEST, "invalid_name"),
            Self::BadRequest(_) => (S::BAD_REQUEST, "invalid_request"),
            Self::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::ScriptNotFound { .. } => (S::NOT_FOUND, "script_not_found"),
            Self::DefaultNamespace(_) => (S::CONFLICT, "default_namespace"),
            Self::NoRoute { .. } | Self::ItemNotFound(_) => (S::NOT_FOUND, "not_found"),
            Self::Deploy(DeployError::InvalidMetadata(_)) => (S::BAD_REQUEST, "invalid_metadata"),
            Self::Deploy(DeployError::Component(_)) => (S::BAD_REQUEST, "invalid_component"),
            Self::Deploy(DeployError::Store(e)) | Self::Store(e) => match e {
                StoreError::NamespaceNotFound(_) => (S::NOT_FOUND, "namespace_not_found"),
                StoreError::NamespaceExists(_) => (S::CONFLICT, "namespace_exists"),
                StoreError::NamespaceNotEmpty { .. } => (S::CONFLICT, "namespace_not_empty"),
                StoreError::MissingAssets(_) => (S::BAD_REQUEST, "missing_assets"),
                StoreError::KvQuota(_) => (S::INSUFFICIENT_STORAGE, "kv_limit"),
                StoreError::Corrupt { .. } | StoreError::Backend(_) => {
                    (S::INTERNAL_SERVER_ERROR, "storage_error")
                }
                // The cluster store is unreachable: nothing was written,
                // and retrying later is the right move.
                StoreError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "store-unavailable"),
                StoreError::Conflict(_) => (S::CONFLICT, "conflict"),
            },
            Self::Deploy(DeployError::Internal(_)) | Self::Internal(_) => {
                (S::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }

    /// Shorthand for a bad name.
    pub fn name(what: &'static str) -> impl FnOnce(NameError) -> Self {
        move |source| Self::InvalidName { what, source }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "admin request failed");
        }
        let message = match &self {
            Self::Internal(_) => "internal error; see the server log".to_owned(),
            other => other.to_string(),
        };
        let mut error = json!({"code": code, "message": message});
        // Structured detail a client can act on without reading the text.
        if let Self::Store(StoreError::MissingAssets(missing))
        | Self::Deploy(DeployError::Store(StoreError::MissingAssets(missing))) = &self
        {
            error["missing"] = json!(missing);
        }
        let body = json!({
            "success": false,
            "errors": [error],
            "result": null,
        });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A successful envelope around `result`.
pub fn ok<T: Serialize>(result: T) -> Json<Value> {
    Json(json!({"success": true, "errors": [], "result": result}))
}

/// A successful envelope around one page of a list, with
/// `result_info: {"count", "cursor"}`; `cursor` is `null` on the last page.
pub fn ok_page<T: Serialize>(result: Vec<T>, cursor: Option<String>) -> Json<Value> {
    let count = result.len();
    Json(json!({
        "success": true,
        "errors": [],
        "result": result,
        "result_info": {"count": count, "cursor": cursor},
    }))
}

/// Result alias for admin handlers.
pub type ApiResult<T = Json<Value>> = Result<T, ApiError>;
