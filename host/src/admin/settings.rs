//! `GET|PATCH /v1/namespaces/{ns}/scripts/{name}/settings` (a script's
//! limits, vars and egress rules) and `GET|PATCH /v1/namespaces/{ns}/settings`
//! (a namespace's egress rules), changed without a redeploy (JSON merge
//! patch).

use axum::body::Bytes;
use axum::extract::{Path, State};

use super::error::{ApiError, ApiResult, ok};
use super::scripts::{load_script, names_and_not_found};
use super::{AdminState, blocking};
use crate::base::names::Name;
use crate::settings::{self, NamespaceSettings, ScriptSettings};
use crate::store::{ScriptRecord, StoreError};

pub(super) async fn get(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let record = load_script(&state, &ns, &script).await?;
    Ok(ok(with_warnings(&state, &record).await))
}

pub(super) async fn patch(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let patch: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be a JSON object: {e}")))?;
    let record = settings::update(&state.runtime, &ns, &script, patch)
        .await?
        .ok_or(not_found)?;
    Ok(ok(with_warnings(&state, &record).await))
}

/// A script's settings, plus `warnings` for what is stored but not
/// applied: `isolation = "reuse"` on a component that cannot be reused is
/// served fresh, and the caller is told why (not only the server log).
async fn with_warnings(state: &AdminState, record: &ScriptRecord) -> serde_json::Value {
    let settings = ScriptSettings::of(record);
    let mut value = serde_json::to_value(&settings).unwrap_or_default();
    if settings.isolation.reuse()
        && let Ok(worker) = state.runtime.worker(&record.namespace, &record.name).await
        && let Some(reason) = worker.reuse_refused
    {
        value["warnings"] = serde_json::json!([format!(
            "settings.isolation \"reuse\" is stored but not applied: {reason}; \
             every request gets a fresh instance"
        )]);
    }
    value
}

pub(super) async fn get_namespace(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
) -> ApiResult {
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let record = blocking(move || {
        Ok(state
            .store()
            .get_namespace(&ns)?
            .ok_or(StoreError::NamespaceNotFound(ns))?)
    })
    .await?;
    Ok(ok(NamespaceSettings::of(&record)))
}

pub(super) async fn patch_namespace(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult {
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let patch: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be a JSON object: {e}")))?;
    let record = settings::update_namespace(&state.runtime, &ns, patch)
        .await?
        .ok_or(ApiError::Store(StoreError::NamespaceNotFound(ns)))?;
    Ok(ok(NamespaceSettings::of(&record)))
}
