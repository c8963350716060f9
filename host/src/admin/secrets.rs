//! Secrets: write-only environment variables of a script.
//!
//! `PUT …/scripts/{name}/secrets/{key}` with `{"value": "…"}` sets one,
//! `DELETE` removes it, `GET …/scripts/{name}/secrets` lists the names —
//! values are never returned and never logged. A secret reaches the guest
//! as an environment variable, like a var; a name cannot be both. Secrets
//! are kept across redeploys.

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::{ApiResult, ok};
use super::{AdminState, json_body, names};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

pub(super) async fn list(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    let names: Vec<_> = state
        .ops
        .secret_names(&ns, &script)
        .await?
        .into_iter()
        .map(|name| serde_json::json!({"name": name}))
        .collect();
    Ok(ok(names))
}

pub(super) async fn put(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    let SecretBody { value } = json_body(&body, "{\"value\": \"…\"}")?;
    state
        .ops
        .put_secret(&ns, &script, key.clone(), value)
        .await?;
    Ok(ok(serde_json::json!({"name": key})))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    state.ops.delete_secret(&ns, &script, key.clone()).await?;
    Ok(ok(serde_json::json!({"name": key})))
}
