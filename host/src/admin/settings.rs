//! `GET|PATCH /v1/namespaces/{ns}/scripts/{name}/settings` (a script's
//! limits, vars, egress rules, assets options and isolation) and
//! `GET|PATCH /v1/namespaces/{ns}/settings` (a namespace's egress rules and
//! trust), changed without a redeploy (JSON merge patch, validated as a
//! whole; see `base::settings`).

use axum::body::Bytes;
use axum::extract::{Path, State};

use super::error::{ApiResult, ok};
use super::{AdminState, json_body, names, namespace};

pub(super) async fn get(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    Ok(ok(state.ops.script_settings(&ns, &script).await?))
}

pub(super) async fn patch(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    let patch = json_body(&body, "a JSON object")?;
    Ok(ok(state
        .ops
        .patch_script_settings(&ns, &script, patch)
        .await?))
}

pub(super) async fn get_namespace(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
) -> ApiResult {
    Ok(ok(state.ops.namespace_settings(&namespace(&ns)?).await?))
}

pub(super) async fn patch_namespace(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult {
    let ns = namespace(&ns)?;
    let patch = json_body(&body, "a JSON object")?;
    Ok(ok(state.ops.patch_namespace_settings(&ns, patch).await?))
}
