//! A script's key-value bucket from the outside:
//! `GET …/scripts/{name}/kv?limit=&cursor=` lists keys (a page, with
//! `result_info.cursor`), `GET …/kv/{key}` returns the raw value
//! (`application/octet-stream`), `PUT …/kv/{key}` sets it (raw body, under
//! the script's quota), `DELETE …/kv/{key}` removes it.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ok, ok_page};
use super::{AdminState, names};
use crate::base::listing::MAX_PAGE;

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
    let (ns, script) = names(&ns, &script)?;
    let limit = query.limit.unwrap_or(MAX_PAGE);
    let (keys, more) = state.ops.kv_keys(&ns, &script, query.cursor, limit).await?;
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
    let (ns, script) = names(&ns, &script)?;
    let value = state.ops.kv_value(&ns, &script, key).await?;
    Ok((
        [(http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(value),
    )
        .into_response())
}

pub(super) async fn put(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    state
        .ops
        .kv_put(&ns, &script, key.clone(), body.to_vec())
        .await?;
    Ok(ok(serde_json::json!({"name": key})))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, script, key)): Path<(String, String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    state.ops.kv_delete(&ns, &script, key.clone()).await?;
    Ok(ok(serde_json::json!({"name": key})))
}
