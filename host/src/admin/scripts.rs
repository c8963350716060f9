//! `/v1/namespaces/{ns}/scripts` endpoints: upload (a component, or plain
//! JavaScript that the host builds), list, get, content, delete.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::Serialize;

use super::error::{ApiError, ApiResult, ok};
use super::{AdminState, names};
use crate::base::Invalid;
use crate::base::isolation::Isolation;
use crate::base::limits::ScriptLimits;
use crate::base::metadata::ScriptMetadata;
use crate::base::names::Name;
use crate::js::{JsBuild, JsBundle, JsModule};
use crate::ops::{JsUpload, OpsError, Upload};
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
    /// The script's own limits (the host's `[limits]` cap them).
    limits: ScriptLimits,
    /// Fresh instance per request, or warm reuse and its tuning.
    isolation: Isolation,
    /// Hostnames of its namespace's table mapped to it (only in the answer
    /// of a single script's GET).
    #[serde(skip_serializing_if = "Option::is_none")]
    hostnames: Option<Vec<String>>,
    /// Its static assets: how many files and their bytes together.
    assets: AssetsSummary,
    /// How the host built a JavaScript upload (only in its upload answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<serde_json::Value>,
}

/// A script's static assets in two numbers.
#[derive(Debug, Serialize)]
pub(super) struct AssetsSummary {
    count: usize,
    bytes: u64,
}

/// What an upload answer says about a JS build.
pub(super) fn build_info(build: &JsBuild) -> serde_json::Value {
    serde_json::json!({
        "timings_ms": build.timings,
        "snapshot_bytes": build.snapshot_bytes,
        "component_bytes": build.component.len(),
        "stdout": build.stdout,
    })
}

impl From<ScriptRecord> for ScriptInfo {
    fn from(r: ScriptRecord) -> Self {
        Self {
            build: None,
            limits: r.limits,
            isolation: r.isolation,
            hostnames: None,
            assets: AssetsSummary {
                count: r.assets.len(),
                bytes: r.assets.values().map(|a| a.size).sum(),
            },
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
    let mut info = ScriptInfo::from(state.ops.script(&ns, &script).await?);
    let hostnames = state.ops.hostnames(&ns).await?;
    info.hostnames = Some(
        hostnames
            .into_iter()
            .filter(|(_, target)| *target == script)
            .map(|(hostname, _)| hostname)
            .collect(),
    );
    Ok(ok(info))
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

/// The JavaScript media types a module may be sent as.
pub(super) fn is_javascript(mime: &str) -> bool {
    matches!(
        mime,
        "application/javascript+module"
            | "application/javascript"
            | "text/javascript"
            | "application/x-javascript"
    )
}

/// `PUT …/scripts/{name}`: `application/wasm` (raw component), a raw
/// JavaScript module (`application/javascript+module`, named by
/// `?main_module=`, default `index.js`), or `multipart/form-data` with a
/// `metadata` part (JSON) and either a `component` part or JavaScript
/// module parts (named by their filename).
pub(super) async fn upload(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<UploadQuery>,
    request: Request,
) -> ApiResult {
    let limit = state.max_upload_bytes;
    let (ns, script) = match super::names(&ns, &script) {
        Ok(names) => names,
        Err(e) => return Err(drain_then(request, limit, e).await),
    };
    let (code, metadata) = read_upload(request, limit, query).await?;
    match code {
        Code::Component(component) => {
            let upload = Upload {
                component,
                metadata,
            };
            let record = state.ops.deploy(&ns, &script, upload).await?;
            Ok(ok(ScriptInfo::from(record)))
        }
        Code::Js(modules) => {
            let bundle = bundle(modules, &metadata);
            let deployed = state
                .ops
                .deploy_js(
                    &ns,
                    &script,
                    JsUpload {
                        bundle,
                        metadata,
                        secrets: Vec::new(),
                    },
                )
                .await?;
            let mut info = ScriptInfo::from(deployed.record);
            info.build = Some(build_info(&deployed.build));
            Ok(ok(info))
        }
    }
}

/// The bundle of uploaded modules: the main module is the metadata's, the
/// only module, or `index.js`.
pub(super) fn bundle(modules: Vec<JsModule>, metadata: &ScriptMetadata) -> JsBundle {
    let main_module = match (&metadata.main_module, modules.as_slice()) {
        (Some(main), _) => main.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => "index.js".to_owned(),
    };
    JsBundle {
        main_module,
        modules,
        kv_bindings: metadata.kv_bindings.clone().unwrap_or_default(),
    }
}

/// Reads an upload body: a raw component, a raw JavaScript module, or
/// multipart (metadata plus a component or modules).
pub(super) async fn read_upload(
    request: Request,
    limit: usize,
    query: UploadQuery,
) -> Result<(Code, ScriptMetadata), ApiError> {
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
    match mime.as_str() {
        "application/wasm" | "application/octet-stream" => {
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| too_large())?;
            Ok((Code::Component(bytes.to_vec()), ScriptMetadata::default()))
        }
        js if is_javascript(js) => {
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| too_large())?;
            let name = query.main_module.unwrap_or_else(|| "index.js".to_owned());
            let source = utf8(&name, bytes)?;
            Ok((
                Code::Js(vec![JsModule { name, source }]),
                ScriptMetadata::default(),
            ))
        }
        "multipart/form-data" => {
            let multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::BadRequest(format!("invalid multipart body: {e}")))?;
            read_multipart(multipart, too_large).await
        }
        "" => {
            let e = ApiError::UnsupportedMediaType(
                "missing Content-Type; send application/wasm, application/javascript+module or multipart/form-data".into(),
            );
            Err(drain_then(request, limit, e).await)
        }
        other => {
            let e = ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Type {other:?}; send application/wasm, application/javascript+module or multipart/form-data"
            ));
            Err(drain_then(request, limit, e).await)
        }
    }
}

/// What an upload carries.
pub(super) enum Code {
    Component(Vec<u8>),
    Js(Vec<JsModule>),
}

/// Query of an upload.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct UploadQuery {
    /// The name of a raw JavaScript body (default `index.js`).
    pub main_module: Option<String>,
    /// `POST /v1/js/build`: `component` answers with the self-contained
    /// component instead of a report.
    pub output: Option<String>,
}

/// A module's source as text, or a 400 naming it.
pub(super) fn utf8(name: &str, bytes: Bytes) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest(format!("module {name:?} is not UTF-8 text")))
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
) -> Result<(Code, ScriptMetadata), ApiError> {
    let mut content: Option<Bytes> = None;
    let mut modules: Vec<JsModule> = Vec::new();
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
        let file_name = field.file_name().map(str::to_owned);
        let mime = field
            .content_type()
            .map(|m| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let bytes = field.bytes().await.map_err(&field_error)?;
        if problem.is_some() {
            continue;
        }
        if name != "metadata" && is_javascript(&mime) {
            let module = file_name.unwrap_or(name);
            let module = module.strip_prefix("./").unwrap_or(&module).to_owned();
            match utf8(&module, bytes) {
                Ok(source) => modules.push(JsModule {
                    name: module,
                    source,
                }),
                Err(e) => problem = Some(e),
            }
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
                    "unexpected multipart part {other:?}; expected \"metadata\" and either \"component\" or JavaScript modules (Content-Type application/javascript+module)"
                )));
            }
        }
    }
    if let Some(problem) = problem {
        return Err(problem);
    }
    let metadata = metadata.unwrap_or_default();
    match (content, modules.is_empty()) {
        (Some(_), false) => Err(ApiError::BadRequest(
            "an upload carries either a \"component\" part or JavaScript modules, not both".into(),
        )),
        (Some(content), true) => Ok((Code::Component(content.to_vec()), metadata)),
        (None, false) => Ok((Code::Js(modules), metadata)),
        (None, true) => Err(ApiError::BadRequest(
            "multipart upload lacks a \"component\" part (or JavaScript module parts)".into(),
        )),
    }
}
