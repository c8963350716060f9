//! `/v1/namespaces/{ns}/scripts` endpoints: upload, list, get, content,
//! delete.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::Serialize;

use super::error::{ApiError, ApiResult, ok};
use super::{AdminState, names};
use crate::base::Invalid;
use crate::base::metadata::ScriptMetadata;
use crate::base::names::Name;
use crate::ops::{OpsError, Upload};
use crate::store::{ScriptRecord, rfc3339};

/// A script as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct ScriptInfo {
    namespace: Name,
    name: Name,
    sha256: String,
    size: u64,
    version: u64,
    created_on: String,
    modified_on: String,
    tags: Vec<String>,
    vars: std::collections::BTreeMap<String, String>,
}

impl From<ScriptRecord> for ScriptInfo {
    fn from(r: ScriptRecord) -> Self {
        Self {
            created_on: rfc3339(r.created_ms),
            modified_on: rfc3339(r.modified_ms),
            namespace: r.namespace,
            name: r.name,
            sha256: r.sha256,
            size: r.size,
            version: r.version,
            tags: r.tags,
            vars: r.vars,
        }
    }
}

pub(super) async fn get(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    Ok(ok(ScriptInfo::from(state.ops.script(&ns, &script).await?)))
}

pub(super) async fn content(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (ns, script) = names(&ns, &script)?;
    let bytes = state.ops.script_content(&ns, &script).await?;
    Ok(([(CONTENT_TYPE, "application/wasm")], Body::from(bytes)).into_response())
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    state.ops.delete_script(&ns, &script).await?;
    Ok(ok(serde_json::json!({"namespace": ns, "name": script})))
}

/// `PUT …/scripts/{name}`: `application/wasm` (raw component) or
/// `multipart/form-data` with `metadata` (JSON) and `component` parts.
pub(super) async fn upload(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let limit = state.max_upload_bytes;
    let (ns, script) = match super::names(&ns, &script) {
        Ok(names) => names,
        Err(e) => return Err(drain_then(request, limit, e).await),
    };
    let too_large = || ApiError::PayloadTooLarge {
        limit_mb: (limit >> 20) as u64,
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();

    let (content, metadata) = match mime.as_str() {
        "application/wasm" | "application/octet-stream" => {
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| too_large())?;
            (bytes.to_vec(), ScriptMetadata::default())
        }
        "multipart/form-data" => {
            let multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::BadRequest(format!("invalid multipart body: {e}")))?;
            read_multipart(multipart, too_large).await?
        }
        "" => {
            let e = ApiError::UnsupportedMediaType(
                "missing Content-Type; send application/wasm or multipart/form-data".into(),
            );
            return Err(drain_then(request, limit, e).await);
        }
        other => {
            let e = ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Type {other:?}; send application/wasm or multipart/form-data"
            ));
            return Err(drain_then(request, limit, e).await);
        }
    };
    let upload = Upload {
        component: content,
        metadata,
    };
    let record = state.ops.deploy(&ns, &script, upload).await?;
    Ok(ok(ScriptInfo::from(record)))
}

/// Reads and discards a request body (up to `limit`) before answering with
/// `error`, so the client's keep-alive connection stays usable: a server that
/// answers early and leaves the body unread must close the connection, and
/// the client's next request on it fails.
pub(super) async fn drain_then(request: Request, limit: usize, error: ApiError) -> ApiError {
    let _ = axum::body::to_bytes(request.into_body(), limit).await;
    error
}

async fn read_multipart(
    mut multipart: Multipart,
    too_large: impl Fn() -> ApiError,
) -> Result<(Vec<u8>, ScriptMetadata), ApiError> {
    let mut content: Option<Bytes> = None;
    let mut metadata: Option<ScriptMetadata> = None;
    let field_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::BadRequest(format!("invalid multipart body: {}", e.body_text()))
        }
    };
    // The first problem is remembered, but the remaining parts are still
    // read (bounded by the body limit): answering with the body half read
    // would force the connection closed under the client's next request.
    let mut problem: Option<ApiError> = None;
    while let Some(field) = multipart.next_field().await.map_err(&field_error)? {
        let name = field.name().unwrap_or("").to_owned();
        let bytes = field.bytes().await.map_err(&field_error)?;
        if problem.is_some() {
            continue;
        }
        match name.as_str() {
            "component" => content = Some(bytes),
            "metadata" => {
                let mut json = serde_json::Deserializer::from_slice(&bytes);
                match serde_path_to_error::deserialize(&mut json) {
                    Ok(parsed) => metadata = Some(parsed),
                    Err(e) => {
                        problem = Some(ApiError::Ops(OpsError::Metadata(Invalid(format!(
                            "metadata.{}: {}",
                            e.path(),
                            e.inner()
                        )))));
                    }
                }
            }
            other => {
                problem = Some(ApiError::BadRequest(format!(
                    "unexpected multipart part {other:?}; expected \"metadata\" and \"component\""
                )));
            }
        }
    }
    if let Some(problem) = problem {
        return Err(problem);
    }
    let content = content.ok_or_else(|| {
        ApiError::BadRequest("multipart upload lacks a \"component\" part".into())
    })?;
    Ok((content.to_vec(), metadata.unwrap_or_default()))
}
