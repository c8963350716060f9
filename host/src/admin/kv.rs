//! A script's key-value bucket from the outside:
//! `GET …/scripts/{name}/kv?limit=&cursor=` lists keys (a page, with
//! `result_info.cursor`), `GET …/kv/{key}` returns the raw value
//! (`application/octet-stream`), `DELETE …/kv/{key}` removes it.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ok, ok_page};
use super::scripts::names_and_not_found;
use super::{AdminState, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeysQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub(super) async fn list(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    Query(query): Query<KeysQuery>,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let limit = query.limit.unwrap_or(1000);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let (keys, more) = blocking(move || {
        let store = state.store();
        store.get_script(&ns, &script)?.ok_or(not_found)?;
        Ok(store.kv_list(&ns, &script, query.cursor.as_deref(), limit)?)
    })
    .await?;
    let cursor = if more { keys.last().cloned() } else { None };
    Ok(ok_page(
        keys.into_iter()
            .map(|k| serde_json::json!({"name": k}))
            .collect(),
        cursor,
    ))
}

pub(super) async fn get(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let value = blocking(move || {
        let store = state.store();
        store.get_script(&ns, &script)?.ok_or(not_found)?;
        store
            .kv_get(&ns, &script, &key)?
            .ok_or_else(|| ApiError::ItemNotFound(format!("no key {key:?}")))
    })
    .await?;
    Ok((
        [(http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(value),
    )
        .into_response())
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let name = key.clone();
    blocking(move || {
        let store = state.store();
        store.get_script(&ns, &script)?.ok_or(not_found)?;
        if store.kv_delete(&ns, &script, &key)? {
            Ok(())
        } else {
            Err(ApiError::ItemNotFound(format!("no key {key:?}")))
        }
    })
    .await?;
    Ok(ok(serde_json::json!({"name": name})))
}
