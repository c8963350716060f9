//! The Cloudflare-shaped API under `/client/v4` (docs/cloudflare-api.md):
//! the Workers for Platforms routes a platform calls and what `wrangler
//! deploy --dispatch-namespace` needs, with Cloudflare's envelope and
//! numeric error codes, so `CLOUDFLARE_API_BASE_URL=http://<admin>/client/v4`
//! with the admin token works.
//!
//! Every handler parses Cloudflare's shapes and calls the same operations
//! layer as `/v1` — the two APIs cannot drift. Account-level script paths
//! (`/workers/scripts/{name}/…`, which `wrangler secret` and `wrangler
//! delete` use, having no `--dispatch-namespace`) act on the server's
//! default namespace. Failures become `{success: false, errors: [{code,
//! message}]}` through [`CfError`], whose codes come from the admin API's
//! one map ([`ApiError::status_and_code`]).
//!
//! Must never: write to the store itself, accept a binding it cannot
//! honour (an unknown type is a 400 naming it), or answer a client error
//! with a 5xx (wrangler retries those).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Router, middleware};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::auth::{AdminToken, token_matches};
use super::error::ApiError;
use super::scripts::{build_info, is_javascript};
use super::{AdminState, names, namespace};
use crate::base::Invalid;
use crate::base::limits::ScriptLimits;
use crate::base::listing::ListQuery;
use crate::base::metadata::ScriptMetadata;
use crate::base::names::Name;
use crate::js::{JsBundle, JsError, JsModule};
use crate::ops::{JsUpload, NamespaceInfo, OpsError};
use crate::store::{ScriptRecord, rfc3339};

/// A failure in Cloudflare's shape.
#[derive(Debug)]
pub struct CfError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl CfError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 10021, message)
    }

    /// On account-level paths a missing script is 10007, which wrangler
    /// reads as "Worker not found" (10092 is the namespaced answer).
    fn account_level(mut self) -> Self {
        if self.code == 10092 {
            self.code = 10007;
        }
        self
    }
}

/// Cloudflare's number for each of the admin API's codes.
fn numeric(code: &str) -> u32 {
    match code {
        "unauthorized" => 10001,
        "invalid_request" | "unsupported_media_type" => 10026,
        "payload_too_large" => 10027,
        "not_found" => 10056,
        "script_not_found" => 10092,
        "script_deleted" => 10007,
        "namespace_not_found" => 100119,
        "namespace_exists" => 100120,
        "namespace_not_empty" | "conflict" | "default_namespace" => 100121,
        "kv_limit" => 10054,
        "store_unavailable" | "js_unavailable" => 10013,
        "storage_error" | "internal" | "build_failed" => 10002,
        // invalid_name, invalid_metadata, invalid_component,
        // invalid_script, script_error, build_limit_exceeded,
        // missing_assets: Cloudflare's validation error.
        _ => 10021,
    }
}

impl From<ApiError> for CfError {
    fn from(error: ApiError) -> Self {
        let (status, code) = error.status_and_code();
        let message = match &error {
            // "<error>\n  at <module>:<line>:<col>", which wrangler
            // source-maps back to the developer's file.
            ApiError::Ops(OpsError::Js(JsError::Script(failure))) => {
                match (&failure.module, failure.line, failure.column) {
                    (Some(m), Some(l), Some(c)) => format!("{}\n  at {m}:{l}:{c}", failure.message),
                    _ => failure.message.clone(),
                }
            }
            _ => error.public_message(),
        };
        Self::new(status, numeric(code), message)
    }
}

impl From<OpsError> for CfError {
    fn from(error: OpsError) -> Self {
        ApiError::Ops(error).into()
    }
}

impl IntoResponse for CfError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "errors": [{"code": self.code, "message": self.message}],
            "messages": [],
            "result": null,
        });
        (self.status, Json(body)).into_response()
    }
}

type CfResult<T = Json<Value>> = Result<T, CfError>;

fn cf_ok(result: impl serde::Serialize) -> Json<Value> {
    Json(json!({"success": true, "errors": [], "messages": [], "result": result}))
}

fn cf_list(result: Vec<Value>) -> Json<Value> {
    let count = result.len();
    Json(json!({
        "success": true, "errors": [], "messages": [], "result": result,
        "result_info": {"page": 1, "per_page": count.max(1), "count": count, "total_count": count},
    }))
}

/// Authentication with Cloudflare's error shape (10001: wrangler treats
/// 10000 and 9106 as "log in again").
async fn require_token(
    State(token): State<AdminToken>,
    request: Request,
    next: middleware::Next,
) -> Response {
    if token_matches(&token, request.headers()) {
        next.run(request).await
    } else {
        CfError::new(
            StatusCode::UNAUTHORIZED,
            10001,
            "missing or invalid API token (send `Authorization: Bearer <berth admin token>`)",
        )
        .into_response()
    }
}

/// The `/client/v4` router.
pub(super) fn router(token: AdminToken) -> Router<AdminState> {
    let ns = "/accounts/{account}/workers/dispatch/namespaces";
    let acct = "/accounts/{account}/workers";
    Router::new()
        .route(ns, get(list_namespaces).post(create_namespace))
        .route(
            &format!("{ns}/{{ns}}"),
            get(get_namespace)
                .delete(delete_namespace)
                .put(rename_namespace),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts"),
            get(list_scripts).delete(delete_scripts),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}"),
            get(get_script).put(upload).delete(delete_script),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/content"),
            get(content),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/bindings"),
            get(bindings),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/settings"),
            get(settings).patch(patch_settings),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/secrets"),
            get(list_secrets).put(put_secret),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/secrets/{{secret}}"),
            get(get_secret).delete(delete_secret),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/tags"),
            get(get_tags).put(put_tags),
        )
        .route(
            &format!("{ns}/{{ns}}/scripts/{{name}}/tags/{{tag}}"),
            put(put_tag).delete(delete_tag),
        )
        // Account-level paths on the default namespace.
        .route(&format!("{acct}/scripts/{{name}}"), put(account_upload))
        .route(
            &format!("{acct}/scripts/{{name}}/secrets"),
            get(account_list_secrets).put(account_put_secret),
        )
        .route(
            &format!("{acct}/scripts/{{name}}/secrets/{{secret}}"),
            get(account_get_secret).delete(account_delete_secret),
        )
        .route(
            &format!("{acct}/scripts/{{name}}/settings"),
            get(account_settings),
        )
        .route(
            &format!("{acct}/scripts/{{name}}/script-settings"),
            get(account_settings).patch(account_script_settings),
        )
        .route(
            &format!("{acct}/scripts/{{name}}/references"),
            get(references),
        )
        .route(
            &format!("{acct}/services/{{name}}"),
            axum::routing::delete(account_delete),
        )
        .route(
            &format!("{acct}/tails/by-consumer/{{name}}"),
            get(empty_list),
        )
        .route(
            &format!("{acct}/durable_objects/namespaces"),
            get(empty_list),
        )
        .route("/accounts/{account}/storage/kv/namespaces", get(empty_list))
        .fallback(no_route)
        .route_layer(middleware::from_fn_with_state(token, require_token))
}

async fn no_route(request: Request) -> CfError {
    CfError::new(
        StatusCode::NOT_FOUND,
        7003,
        format!(
            "Could not route to {} {}: Berth implements the Workers for Platforms subset in docs/cloudflare-api.md",
            request.method(),
            request.uri().path()
        ),
    )
}

// ---- namespaces -------------------------------------------------------

fn cf_namespace(info: &NamespaceInfo) -> Value {
    json!({
        "namespace_id": info.name,
        "namespace_name": info.name,
        "created_on": info.created_on,
        "modified_on": info.created_on,
        "script_count": info.script_count,
        "trusted_workers": info.trusted,
    })
}

async fn list_namespaces(State(state): State<AdminState>) -> CfResult {
    let all = state.ops.list_namespaces().await?;
    Ok(cf_list(all.iter().map(cf_namespace).collect()))
}

#[derive(Deserialize)]
struct NamespaceBody {
    name: Option<String>,
}

async fn create_namespace(State(state): State<AdminState>, body: Bytes) -> CfResult {
    let body: NamespaceBody = serde_json::from_slice(&body).map_err(|e| {
        CfError::new(
            StatusCode::BAD_REQUEST,
            10026,
            format!("body must be {{\"name\": ...}}: {e}"),
        )
    })?;
    let name = body
        .name
        .ok_or_else(|| CfError::bad("a dispatch namespace needs a name"))?;
    let name = namespace(&name)?;
    Ok(cf_ok(cf_namespace(
        &state.ops.create_namespace(&name, false).await?,
    )))
}

async fn get_namespace(
    State(state): State<AdminState>,
    Path((_, ns)): Path<(String, String)>,
) -> CfResult {
    Ok(cf_ok(cf_namespace(
        &state.ops.namespace(&namespace(&ns)?).await?,
    )))
}

async fn delete_namespace(
    State(state): State<AdminState>,
    Path((_, ns)): Path<(String, String)>,
) -> CfResult {
    // Cloudflare deletes a namespace with its scripts.
    state.ops.delete_namespace(&namespace(&ns)?, true).await?;
    Ok(cf_ok(Value::Null))
}

async fn rename_namespace(Path((_, ns)): Path<(String, String)>) -> CfError {
    CfError::bad(format!(
        "Berth cannot rename dispatch namespace {ns:?}: its scripts' KV and hostnames are keyed by it; create a new namespace and redeploy"
    ))
}

// ---- scripts ----------------------------------------------------------

fn deployment_id(record: &ScriptRecord) -> String {
    let digest = Sha256::digest(format!(
        "{}/{}/{}/{}",
        record.namespace, record.name, record.version, record.sha256
    ));
    hex::encode(&digest[..16])
}

fn cf_script(record: &ScriptRecord) -> Value {
    json!({
        "id": record.name,
        "etag": record.sha256,
        "created_on": rfc3339(record.created_ms),
        "modified_on": rfc3339(record.modified_ms),
        "tags": record.tags,
        "handlers": ["fetch"],
        "usage_model": "standard",
        "logpush": false,
        "placement": {},
        "tail_consumers": [],
        "has_assets": !record.assets.is_empty(),
        "deployment_id": deployment_id(record),
    })
}

async fn list_scripts(
    State(state): State<AdminState>,
    Path((_, ns)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> CfResult {
    let ns = namespace(&ns)?;
    let mut all = Vec::new();
    let mut query = ListQuery {
        limit: Some(1000),
        ..query
    };
    loop {
        let (page, cursor) = state.ops.list_scripts_page(&ns, query.clone()).await?;
        all.extend(page.iter().map(cf_script));
        match cursor {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    Ok(cf_list(all))
}

async fn delete_scripts(
    State(state): State<AdminState>,
    Path((_, ns)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> CfResult {
    let deleted = state.ops.delete_tagged(&namespace(&ns)?, &query).await?;
    Ok(cf_ok(json!({"deleted": deleted})))
}

async fn get_script(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    // A missing namespace answers 100119 (wrangler stops with a readable
    // message), a missing script 10092 (wrangler's "first deploy").
    state.ops.namespace(&ns).await?;
    let record = state.ops.script(&ns, &name).await?;
    Ok(cf_ok(json!({
        "created_on": rfc3339(record.created_ms),
        "modified_on": rfc3339(record.modified_ms),
        "dispatch_namespace": ns,
        "script": cf_script(&record),
    })))
}

async fn delete_script(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    state.ops.delete_script(&ns, &name).await?;
    Ok(cf_ok(Value::Null))
}

/// `metadata` of an upload; fields Berth has no use for (placement,
/// observability, code_update_strategy, …) are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
struct CfMetadata {
    main_module: Option<String>,
    body_part: Option<String>,
    #[serde(default)]
    bindings: Vec<CfBinding>,
    compatibility_date: Option<String>,
    #[serde(default)]
    keep_bindings: Vec<String>,
    tags: Option<Vec<String>>,
    limits: Option<CfLimits>,
}

#[derive(Debug, Deserialize)]
struct CfBinding {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CfLimits {
    cpu_ms: Option<u64>,
}

/// What a list of Cloudflare bindings asks of a script.
#[derive(Debug, Default)]
struct Bindings {
    /// `plain_text` vars, and `inherit`ed ones resolved against the
    /// previous version's vars.
    vars: BTreeMap<String, String>,
    /// `secret_text` bindings with their text (one listed without text is
    /// kept as it is).
    secrets: Vec<(String, String)>,
    /// `kv_namespace` binding names.
    kv: Vec<String>,
}

/// Sorts `bindings` by type; an unnamed binding or a type Berth cannot
/// honour is an error naming it.
fn classify(
    bindings: &[CfBinding],
    previous_vars: Option<&BTreeMap<String, String>>,
) -> Result<Bindings, CfError> {
    let mut out = Bindings::default();
    for binding in bindings {
        let Some(binding_name) = binding.name.clone() else {
            return Err(CfError::new(
                StatusCode::BAD_REQUEST,
                10052,
                "a binding has no name",
            ));
        };
        match binding.kind.as_str() {
            "plain_text" => {
                out.vars
                    .insert(binding_name, binding.text.clone().unwrap_or_default());
            }
            "secret_text" => {
                if let Some(text) = &binding.text {
                    out.secrets.push((binding_name, text.clone()));
                }
            }
            "kv_namespace" => out.kv.push(binding_name),
            // Keep what the previous version had under that name (a var;
            // secrets are always kept).
            "inherit" => {
                if let Some(value) = previous_vars.and_then(|vars| vars.get(&binding_name)) {
                    out.vars.insert(binding_name, value.clone());
                }
            }
            other => {
                return Err(CfError::bad(format!(
                    "binding {binding_name:?} has type {other:?}, which Berth does not support (supported: plain_text, secret_text, kv_namespace, inherit)"
                )));
            }
        }
    }
    Ok(out)
}

/// One part of an upload.
struct Part {
    name: String,
    file_name: Option<String>,
    mime: String,
    bytes: Bytes,
}

/// A module part as a JS module: JavaScript as is, text and data as a
/// module whose default export is the text or the bytes.
fn module_of(part: Part) -> Result<Option<JsModule>, CfError> {
    let raw = part.file_name.unwrap_or(part.name);
    let name = raw.strip_prefix("./").unwrap_or(&raw).to_owned();
    let text = |bytes: &Bytes| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CfError::bad(format!("module {name:?} is not UTF-8 text")))
    };
    let source = match part.mime.as_str() {
        "application/source-map" => return Ok(None),
        js if is_javascript(js) => text(&part.bytes)?,
        "text/plain" => format!(
            "export default {};\n",
            serde_json::to_string(&text(&part.bytes)?).map_err(|e| CfError::bad(e.to_string()))?
        ),
        "application/octet-stream" => format!(
            "const hex = \"{}\";\nconst bytes = new Uint8Array(hex.length / 2);\nfor (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);\nexport default bytes.buffer;\n",
            hex::encode(&part.bytes)
        ),
        "application/wasm" => {
            return Err(CfError::bad(format!(
                "module {name:?} is WebAssembly: Berth runs a JavaScript worker's modules in its JS engine and cannot link wasm modules into it; build the wasm into a component and upload that instead"
            )));
        }
        other => {
            return Err(CfError::bad(format!(
                "module {name:?} has Content-Type {other:?}; Berth takes JavaScript (application/javascript+module, application/javascript), text/plain and application/octet-stream modules"
            )));
        }
    };
    Ok(Some(JsModule { name, source }))
}

/// Reads an upload body: multipart (metadata and modules) or a raw
/// service-worker script.
async fn read_parts(
    request: Request,
    limit: usize,
) -> Result<(CfMetadata, Vec<JsModule>), CfError> {
    let mime = request_essence(&request);
    if is_javascript(&mime) {
        return read_raw_script(request, limit).await;
    }
    if mime != "multipart/form-data" {
        return Err(CfError::new(
            StatusCode::BAD_REQUEST,
            10026,
            format!(
                "unsupported Content-Type {mime:?}: send multipart/form-data (metadata and modules) or application/javascript"
            ),
        ));
    }
    let (metadata, parts) = read_multipart(request).await?;
    let metadata = metadata.ok_or_else(|| CfError::bad("the upload lacks its metadata part"))?;
    let mut modules = Vec::new();
    for part in parts {
        if let Some(module) = module_of(part)? {
            modules.push(module);
        }
    }
    Ok((metadata, modules))
}

/// A media type without its parameters, lower-cased (`""` if absent).
fn essence(content_type: Option<&str>) -> String {
    content_type
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The media type of a request's body (see [`essence`]).
fn request_essence(request: &Request) -> String {
    essence(
        request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A multipart body that cannot be read (code 10026).
fn invalid_multipart(detail: String) -> CfError {
    CfError::new(
        StatusCode::BAD_REQUEST,
        10026,
        format!("invalid multipart body: {detail}"),
    )
}

/// A raw service-worker script: one module, `worker.js`.
async fn read_raw_script(
    request: Request,
    limit: usize,
) -> Result<(CfMetadata, Vec<JsModule>), CfError> {
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            CfError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                10027,
                "the script is too large",
            )
        })?;
    let source = String::from_utf8(bytes.to_vec())
        .map_err(|_| CfError::bad("the script is not UTF-8 text"))?;
    let metadata = CfMetadata {
        body_part: Some("worker.js".into()),
        ..CfMetadata::default()
    };
    let module = JsModule {
        name: "worker.js".into(),
        source,
    };
    Ok((metadata, vec![module]))
}

/// A multipart body's `metadata` part (if any) and its other parts.
async fn read_multipart(request: Request) -> Result<(Option<CfMetadata>, Vec<Part>), CfError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| invalid_multipart(e.to_string()))?;
    let mut metadata = None;
    let mut parts = Vec::new();
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                CfError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    10027,
                    "the upload is too large (server.max_upload_mb)",
                )
            } else {
                invalid_multipart(e.body_text())
            }
        })?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let mime = essence(field.content_type());
        let bytes = field
            .bytes()
            .await
            .map_err(|e| invalid_multipart(e.body_text()))?;
        if name == "metadata" {
            let mut json = serde_json::Deserializer::from_slice(&bytes);
            let parsed: CfMetadata = serde_path_to_error::deserialize(&mut json)
                .map_err(|e| CfError::bad(format!("metadata.{}: {}", e.path(), e.inner())))?;
            metadata = Some(parsed);
        } else {
            parts.push(Part {
                name,
                file_name,
                mime,
                bytes,
            });
        }
    }
    Ok((metadata, parts))
}

async fn upload(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
    request: Request,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    deploy(&state, &ns, &name, request).await
}

async fn account_upload(
    State(state): State<AdminState>,
    Path((_, name)): Path<(String, String)>,
    request: Request,
) -> CfResult {
    let ns = state.ops.default_namespace().clone();
    let name = Name::new(&name).map_err(ApiError::name("script name"))?;
    deploy(&state, &ns, &name, request)
        .await
        .map_err(CfError::account_level)
}

/// Parses a Cloudflare upload, builds and deploys it through the same
/// operation as `/v1`.
async fn deploy(state: &AdminState, ns: &Name, name: &Name, request: Request) -> CfResult {
    let (metadata, modules) = read_parts(request, state.max_upload_bytes).await?;
    if modules.is_empty() {
        return Err(CfError::bad("the upload has no JavaScript module"));
    }
    let main_module = metadata
        .main_module
        .clone()
        .or(metadata.body_part.clone())
        .ok_or_else(|| {
            CfError::bad("metadata needs main_module (ES modules) or body_part (service worker)")
        })?;
    let main_module = main_module
        .strip_prefix("./")
        .unwrap_or(&main_module)
        .to_owned();
    let previous = state.ops.script(ns, name).await.ok();

    let bindings = classify(&metadata.bindings, previous.as_ref().map(|p| &p.vars))?;
    let mut vars = BTreeMap::new();
    if metadata.keep_bindings.iter().any(|k| k == "plain_text")
        && let Some(previous) = &previous
    {
        vars.extend(previous.vars.clone());
    }
    vars.extend(bindings.vars);
    let (secrets, kv_bindings) = (bindings.secrets, bindings.kv);
    let limits = metadata.limits.as_ref().map(|l| ScriptLimits {
        cpu_ms: l.cpu_ms,
        ..previous.as_ref().map(|p| p.limits).unwrap_or_default()
    });
    let upload = JsUpload {
        bundle: JsBundle {
            main_module,
            modules,
            kv_bindings,
        },
        metadata: ScriptMetadata {
            tags: metadata.tags.clone(),
            vars: Some(vars),
            limits,
            ..ScriptMetadata::default()
        },
        secrets,
    };
    let deployed = state.ops.deploy_js(ns, name, upload).await?;
    let mut result = cf_script(&deployed.record);
    let init = deployed.build.timings.init_ms.round().max(1.0);
    result["startup_time_ms"] = json!(init as u64);
    result["compatibility_date"] = json!(metadata.compatibility_date);
    result["has_modules"] = json!(metadata.main_module.is_some());
    result["build"] = build_info(&deployed.build);
    Ok(cf_ok(result))
}

async fn content(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> Result<Response, CfError> {
    let (ns, name) = names(&ns, &name)?;
    let bytes = state.ops.script_content(&ns, &name).await?;
    let Some(bundle) = crate::js::bundle_of(&bytes) else {
        return Ok(([(CONTENT_TYPE, "application/wasm")], Body::from(bytes)).into_response());
    };
    // The modules as multipart, the main one first (Cloudflare's shape).
    let boundary = format!("berth-{}", hex::encode(&Sha256::digest(&bytes)[..8]));
    let mut body = String::new();
    let mut modules = bundle.modules;
    modules.sort_by_key(|m| m.name != bundle.main_module);
    for module in modules {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{0}\"; filename=\"{0}\"\r\nContent-Type: application/javascript+module\r\n\r\n{1}\r\n",
            module.name, module.source
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Ok((
        [(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )],
        Body::from(body),
    )
        .into_response())
}

/// A script's bindings in Cloudflare's shape: vars, secret names, KV.
async fn cf_bindings(
    state: &AdminState,
    ns: &Name,
    name: &Name,
) -> Result<(ScriptRecord, Vec<Value>), CfError> {
    let record = state.ops.script(ns, name).await?;
    let mut bindings: Vec<Value> = record
        .vars
        .iter()
        .map(|(k, v)| json!({"type": "plain_text", "name": k, "text": v}))
        .collect();
    bindings.extend(
        record
            .secrets
            .keys()
            .map(|k| json!({"type": "secret_text", "name": k})),
    );
    let content = state.ops.script_content(ns, name).await?;
    if let Some(bundle) = crate::js::bundle_of(&content) {
        bindings.extend(bundle.kv_bindings.iter().map(
            |k| json!({"type": "kv_namespace", "name": k, "namespace_id": format!("{ns}/{name}")}),
        ));
    }
    Ok((record, bindings))
}

async fn bindings(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    Ok(cf_ok(cf_bindings(&state, &ns, &name).await?.1))
}

async fn settings_of(state: &AdminState, ns: &Name, name: &Name) -> CfResult {
    let (record, bindings) = cf_bindings(state, ns, name).await?;
    Ok(cf_ok(json!({
        "bindings": bindings,
        "compatibility_flags": [],
        "limits": {"cpu_ms": record.limits.cpu_ms},
        "logpush": false,
        "observability": {"enabled": false},
        "placement": {},
        "tags": record.tags,
        "tail_consumers": [],
        "usage_model": "standard",
    })))
}

async fn settings(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    settings_of(&state, &ns, &name).await
}

#[derive(Debug, Default, Deserialize)]
struct CfSettings {
    bindings: Option<Vec<CfBinding>>,
    tags: Option<Vec<String>>,
    limits: Option<CfLimits>,
}

async fn patch_settings(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
    request: Request,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    let patch = read_settings(request, state.max_upload_bytes).await?;
    if let Some(bindings) = patch.bindings {
        apply_bindings(&state, &ns, &name, &bindings).await?;
    }
    if let Some(tags) = patch.tags {
        state.ops.set_tags(&ns, &name, tags).await?;
    }
    if let Some(limits) = patch.limits {
        state
            .ops
            .patch_script_settings(&ns, &name, json!({"limits": {"cpu_ms": limits.cpu_ms}}))
            .await?;
    }
    settings_of(&state, &ns, &name).await
}

/// A settings PATCH body: the `settings` part of a multipart body, or the
/// JSON body itself.
async fn read_settings(request: Request, limit: usize) -> Result<CfSettings, CfError> {
    let mime = request_essence(&request);
    let raw = if mime == "multipart/form-data" {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| invalid_multipart(e.to_string()))?;
        let mut settings = None;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| invalid_multipart(e.body_text()))?
        {
            let part = field.name().unwrap_or("").to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| invalid_multipart(e.body_text()))?;
            if part == "settings" {
                settings = Some(bytes);
            }
        }
        settings.ok_or_else(|| CfError::bad("the settings PATCH lacks its `settings` part"))?
    } else {
        axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| CfError::new(StatusCode::PAYLOAD_TOO_LARGE, 10027, "too large"))?
    };
    let mut json = serde_json::Deserializer::from_slice(&raw);
    serde_path_to_error::deserialize(&mut json)
        .map_err(|e| CfError::bad(format!("settings.{}: {}", e.path(), e.inner())))
}

/// Applies a settings PATCH's bindings: vars replaced as a whole, secrets
/// set, KV bindings unchanged (they are part of the build).
async fn apply_bindings(
    state: &AdminState,
    ns: &Name,
    name: &Name,
    bindings: &[CfBinding],
) -> Result<(), CfError> {
    let content = state.ops.script_content(ns, name).await?;
    let current_kv = crate::js::bundle_of(&content)
        .map(|b| b.kv_bindings)
        .unwrap_or_default();
    let record = state.ops.script(ns, name).await?;
    let wanted = classify(bindings, Some(&record.vars))?;
    if wanted.kv != current_kv {
        return Err(CfError::bad(
            "kv_namespace bindings are part of a JavaScript build: change them with a new upload",
        ));
    }
    // Vars are replaced as a whole: a var not listed is removed.
    let mut var_patch = serde_json::Map::new();
    for old in record.vars.keys() {
        if !wanted.vars.contains_key(old) {
            var_patch.insert(old.clone(), Value::Null);
        }
    }
    var_patch.extend(wanted.vars.into_iter().map(|(k, v)| (k, json!(v))));
    state
        .ops
        .patch_script_settings(ns, name, json!({"vars": var_patch}))
        .await?;
    for (key, value) in wanted.secrets {
        state.ops.put_secret(ns, name, key, value).await?;
    }
    Ok(())
}

// ---- secrets ------------------------------------------------------------

#[derive(Deserialize)]
struct SecretBody {
    name: String,
    text: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn secrets_of(state: &AdminState, ns: &Name, name: &Name) -> CfResult {
    let names = state.ops.secret_names(ns, name).await?;
    Ok(cf_ok(
        names
            .into_iter()
            .map(|n| json!({"name": n, "type": "secret_text"}))
            .collect::<Vec<_>>(),
    ))
}

async fn put_secret_of(state: &AdminState, ns: &Name, name: &Name, body: &[u8]) -> CfResult {
    let body: SecretBody = serde_json::from_slice(body).map_err(|e| {
        CfError::new(
            StatusCode::BAD_REQUEST,
            10026,
            format!("body must be {{\"name\", \"text\", \"type\": \"secret_text\"}}: {e}"),
        )
    })?;
    match body.kind.as_deref() {
        None | Some("secret_text") => {}
        Some(other) => {
            return Err(CfError::bad(format!(
                "secret {:?} has type {other:?}; Berth stores secret_text secrets",
                body.name
            )));
        }
    }
    let text = body
        .text
        .ok_or_else(|| CfError::bad(format!("secret {:?} has no text", body.name)))?;
    state
        .ops
        .put_secret(ns, name, body.name.clone(), text)
        .await?;
    Ok(cf_ok(json!({"name": body.name, "type": "secret_text"})))
}

async fn get_secret_of(state: &AdminState, ns: &Name, name: &Name, secret: &str) -> CfResult {
    let names = state.ops.secret_names(ns, name).await?;
    if names.iter().any(|n| n == secret) {
        Ok(cf_ok(json!({"name": secret, "type": "secret_text"})))
    } else {
        Err(CfError::new(
            StatusCode::NOT_FOUND,
            10056,
            format!("no secret {secret:?}"),
        ))
    }
}

async fn list_secrets(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    secrets_of(&state, &ns, &name).await
}

async fn put_secret(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
    body: Bytes,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    put_secret_of(&state, &ns, &name, &body).await
}

async fn get_secret(
    State(state): State<AdminState>,
    Path((_, ns, name, secret)): Path<(String, String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    get_secret_of(&state, &ns, &name, &secret).await
}

async fn delete_secret(
    State(state): State<AdminState>,
    Path((_, ns, name, secret)): Path<(String, String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    state.ops.delete_secret(&ns, &name, secret).await?;
    Ok(cf_ok(Value::Null))
}

fn default_script(state: &AdminState, name: &str) -> Result<(Name, Name), CfError> {
    let name = Name::new(name).map_err(ApiError::name("script name"))?;
    Ok((state.ops.default_namespace().clone(), name))
}

async fn account_list_secrets(
    State(state): State<AdminState>,
    Path((_, name)): Path<(String, String)>,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    secrets_of(&state, &ns, &name)
        .await
        .map_err(CfError::account_level)
}

async fn account_put_secret(
    State(state): State<AdminState>,
    Path((_, name)): Path<(String, String)>,
    body: Bytes,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    put_secret_of(&state, &ns, &name, &body)
        .await
        .map_err(CfError::account_level)
}

async fn account_get_secret(
    State(state): State<AdminState>,
    Path((_, name, secret)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    get_secret_of(&state, &ns, &name, &secret)
        .await
        .map_err(CfError::account_level)
}

async fn account_delete_secret(
    State(state): State<AdminState>,
    Path((_, name, secret)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    state
        .ops
        .delete_secret(&ns, &name, secret)
        .await
        .map_err(|e| CfError::from(e).account_level())?;
    Ok(cf_ok(Value::Null))
}

async fn account_settings(
    State(state): State<AdminState>,
    Path((_, name)): Path<(String, String)>,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    settings_of(&state, &ns, &name)
        .await
        .map_err(CfError::account_level)
}

/// wrangler tags account-level Workers with its service/environment after
/// a deploy; Berth has no such tags and accepts the call as a no-op.
async fn account_script_settings() -> CfResult {
    Ok(cf_ok(json!({})))
}

async fn account_delete(
    State(state): State<AdminState>,
    Path((_, name)): Path<(String, String)>,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    state
        .ops
        .delete_script(&ns, &name)
        .await
        .map_err(|e| CfError::from(e).account_level())?;
    Ok(cf_ok(Value::Null))
}

/// Nothing depends on a script in Berth (no service bindings).
async fn references(
    State(state): State<AdminState>,
    Path((_, name)): Path<(String, String)>,
) -> CfResult {
    let (ns, name) = default_script(&state, &name)?;
    state
        .ops
        .script(&ns, &name)
        .await
        .map_err(|e| CfError::from(e).account_level())?;
    Ok(cf_ok(json!({})))
}

/// Features Berth does not have, listed as empty (tail consumers, Durable
/// Objects, account KV namespaces): wrangler's delete flow reads them.
async fn empty_list() -> Json<Value> {
    cf_list(Vec::new())
}

// ---- tags ---------------------------------------------------------------

async fn get_tags(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    Ok(cf_ok(state.ops.script(&ns, &name).await?.tags))
}

async fn put_tags(
    State(state): State<AdminState>,
    Path((_, ns, name)): Path<(String, String, String)>,
    body: Bytes,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    let tags: Vec<String> = serde_json::from_slice(&body).map_err(|e| {
        CfError::new(
            StatusCode::BAD_REQUEST,
            10026,
            format!("body must be a JSON array of tags: {e}"),
        )
    })?;
    Ok(cf_ok(state.ops.set_tags(&ns, &name, tags).await?))
}

async fn put_tag(
    State(state): State<AdminState>,
    Path((_, ns, name, tag)): Path<(String, String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    state.ops.add_tag(&ns, &name, tag).await?;
    Ok(cf_ok(Value::Null))
}

async fn delete_tag(
    State(state): State<AdminState>,
    Path((_, ns, name, tag)): Path<(String, String, String, String)>,
) -> CfResult {
    let (ns, name) = names(&ns, &name)?;
    state.ops.remove_tag(&ns, &name, tag).await?;
    Ok(cf_ok(Value::Null))
}

impl From<Invalid> for CfError {
    fn from(error: Invalid) -> Self {
        ApiError::Ops(OpsError::Invalid(error)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_code_has_a_cloudflare_number() {
        assert_eq!(numeric("script_not_found"), 10092);
        assert_eq!(numeric("namespace_not_found"), 100119);
        assert_eq!(
            numeric("unauthorized"),
            10001,
            "never 10000 or 9106: wrangler would log in again"
        );
        assert_eq!(numeric("script_error"), 10021);
        let e = CfError::new(StatusCode::NOT_FOUND, 10092, "x").account_level();
        assert_eq!(e.code, 10007);
    }

    #[test]
    fn text_and_data_modules_become_js_modules() {
        let part = |mime: &str, bytes: &'static [u8]| Part {
            name: "files".into(),
            file_name: Some("./a.txt".into()),
            mime: mime.into(),
            bytes: Bytes::from_static(bytes),
        };
        let text = module_of(part("text/plain", b"hi \"there\""))
            .expect("ok")
            .expect("module");
        assert_eq!(text.name, "a.txt");
        assert_eq!(text.source, "export default \"hi \\\"there\\\"\";\n");
        let data = module_of(part("application/octet-stream", b"\x01\xff"))
            .expect("ok")
            .expect("module");
        assert!(data.source.contains("\"01ff\""), "{}", data.source);
        assert!(
            module_of(part("application/source-map", b"{}"))
                .expect("ok")
                .is_none()
        );
        assert!(module_of(part("application/wasm", b"\0asm")).is_err());
        assert!(module_of(part("text/x-python", b"")).is_err());
    }
}
