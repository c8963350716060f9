//! `/v1/namespaces` endpoints.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, ok};
use super::{AdminState, blocking};
use crate::base::names::Name;
use crate::store::{NamespaceRecord, rfc3339};

/// A namespace as the API shows it.
#[derive(Debug, Serialize)]
pub struct NamespaceInfo {
    name: Name,
    created_on: String,
    script_count: usize,
    trusted: bool,
}

fn info(state: &AdminState, record: NamespaceRecord) -> Result<NamespaceInfo, ApiError> {
    let scripts = state.store().list_scripts(&record.name)?.len();
    Ok(NamespaceInfo {
        created_on: rfc3339(record.created_ms),
        name: record.name,
        script_count: scripts,
        trusted: record.trusted,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    trusted: bool,
}

pub(super) async fn list(State(state): State<AdminState>) -> ApiResult {
    let infos = blocking(move || {
        state
            .store()
            .list_namespaces()?
            .into_iter()
            .map(|r| info(&state, r))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(ok(infos))
}

pub(super) async fn create(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("body must be JSON {{\"name\": \"...\"}}: {e}"))
    })?;
    let name = Name::new(&body.name).map_err(ApiError::name("namespace name"))?;
    let trusted = body.trusted;
    let runtime = state.runtime.clone();
    let ns = name.clone();
    let created = blocking(move || {
        let mut record = state.store().create_namespace(&name)?;
        if trusted
            && let Some(Ok(updated)) = state.store().update_namespace(&name, &mut |r| {
                r.trusted = true;
                Ok(())
            })?
        {
            record = updated;
        }
        info(&state, record)
    })
    .await?;
    runtime.evict_namespace(&ns);
    Ok(ok(created))
}

pub(super) async fn get(State(state): State<AdminState>, Path(ns): Path<String>) -> ApiResult {
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let found = blocking(move || {
        let record = state
            .store()
            .get_namespace(&ns)?
            .ok_or(crate::store::StoreError::NamespaceNotFound(ns))?;
        info(&state, record)
    })
    .await?;
    Ok(ok(found))
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
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    if ns == state.default_namespace {
        return Err(ApiError::DefaultNamespace(ns.to_string()));
    }
    let runtime = state.runtime.clone();
    let name = ns.clone();
    let deleted = blocking(move || Ok(state.store().delete_namespace(&name, q.force)?)).await?;
    runtime.evict_namespace(&ns);
    tracing::info!(namespace = %ns, scripts_deleted = deleted.len(), "namespace deleted");
    Ok(ok(
        serde_json::json!({"name": ns, "deleted_scripts": deleted}),
    ))
}
