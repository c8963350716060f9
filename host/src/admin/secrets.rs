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

use super::error::{ApiError, ApiResult, ok};
use super::scripts::{load_script, names_and_not_found};
use super::{AdminState, blocking};
use crate::deploy::{MAX_VARS_BYTES, validate_var_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

pub(super) async fn list(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let record = load_script(&state, &ns, &script).await?;
    let names: Vec<&String> = record.secrets.keys().collect();
    Ok(ok(serde_json::json!(
        names
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect::<Vec<_>>()
    )))
}

pub(super) async fn put(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    validate_var_name(&key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let SecretBody { value } = serde_json::from_slice(&body)
        .map_err(|_| ApiError::BadRequest("body must be {\"value\": \"…\"}".into()))?;
    if value.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "secret {key:?} contains a NUL character"
        )));
    }
    let runtime = state.runtime.clone();
    let (namespace, name, secret) = (ns.clone(), script.clone(), key.clone());
    blocking(move || {
        let outcome = state.store().update_script(&ns, &script, &mut |record| {
            if record.vars.contains_key(&key) {
                return Err(format!(
                    "{key:?} is already a var of this script; remove the var first"
                )
                .into());
            }
            record.secrets.insert(key.clone(), value.clone());
            let total: usize = record.secrets.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > MAX_VARS_BYTES {
                return Err(
                    format!("secrets total {total} bytes; the limit is {MAX_VARS_BYTES}").into(),
                );
            }
            Ok(())
        })?;
        match outcome {
            None => Err(not_found),
            Some(Err(message)) => Err(ApiError::BadRequest(message.0)),
            Some(Ok(_)) => Ok(()),
        }
    })
    .await?;
    runtime.evict(&namespace, &name);
    tracing::info!(namespace = %namespace, script = %name, secret = %secret, "secret set");
    Ok(ok(serde_json::json!({"name": secret})))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let runtime = state.runtime.clone();
    let (namespace, name, secret) = (ns.clone(), script.clone(), key.clone());
    blocking(move || {
        let outcome = state
            .store()
            .update_script(
                &ns,
                &script,
                &mut |record| match record.secrets.remove(&key) {
                    Some(_) => Ok(()),
                    None => Err(format!("no secret {key:?}").into()),
                },
            )?;
        match outcome {
            None => Err(not_found),
            Some(Err(message)) => Err(ApiError::ItemNotFound(message.0)),
            Some(Ok(_)) => Ok(()),
        }
    })
    .await?;
    runtime.evict(&namespace, &name);
    tracing::info!(namespace = %namespace, script = %name, secret = %secret, "secret deleted");
    Ok(ok(serde_json::json!({"name": secret})))
}
