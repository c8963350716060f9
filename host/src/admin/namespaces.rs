//! `/v1/namespaces` endpoints.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ok};
use super::{AdminState, json_body, namespace};
use crate::base::names::Name;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    trusted: bool,
}

pub(super) async fn list(State(state): State<AdminState>) -> ApiResult {
    Ok(ok(state.ops.list_namespaces().await?))
}

pub(super) async fn create(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: CreateBody = json_body(&body, "JSON {\"name\": \"...\"}")?;
    let name = Name::new(&body.name).map_err(ApiError::name("namespace name"))?;
    Ok(ok(state.ops.create_namespace(&name, body.trusted).await?))
}

pub(super) async fn get(State(state): State<AdminState>, Path(ns): Path<String>) -> ApiResult {
    Ok(ok(state.ops.namespace(&namespace(&ns)?).await?))
}

#[derive(Deserialize)]
pub(super) struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult {
    let ns = namespace(&ns)?;
    let deleted = state.ops.delete_namespace(&ns, q.force).await?;
    Ok(ok(
        serde_json::json!({"name": ns, "deleted_scripts": deleted}),
    ))
}
