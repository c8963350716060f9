//! The hostname table of a namespace: custom hostnames and wildcard
//! subdomains mapped to scripts.
//!
//! `PUT /v1/namespaces/{ns}/hostnames/{hostname}` with `{"script": "name"}`,
//! `DELETE` the same path, `GET /v1/namespaces/{ns}/hostnames` lists them.
//! A hostname is exact (`shop.example.com`) or a wildcard (`*.example.com`,
//! any subdomain); lookups take the exact entry, else the most specific
//! wildcard. The built-in router consults the default namespace's table
//! before falling back to the first label; dispatch workers call
//! `dispatcher.lookup-hostname`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ok};
use super::{AdminState, json_body, namespace};
use crate::base::names::Name;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapBody {
    script: String,
}

pub(super) async fn list(State(state): State<AdminState>, Path(ns): Path<String>) -> ApiResult {
    let entries: Vec<_> = state
        .ops
        .hostnames(&namespace(&ns)?)
        .await?
        .into_iter()
        .map(|(hostname, script)| serde_json::json!({"hostname": hostname, "script": script}))
        .collect();
    Ok(ok(entries))
}

pub(super) async fn put(
    State(state): State<AdminState>,
    Path((ns, hostname)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let ns = namespace(&ns)?;
    let MapBody { script } = json_body(&body, "{\"script\": \"name\"}")?;
    let script = Name::new(&script).map_err(ApiError::name("script name"))?;
    let hostname = state.ops.put_hostname(&ns, &hostname, &script).await?;
    Ok(ok(
        serde_json::json!({"hostname": hostname, "script": script}),
    ))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, hostname)): Path<(String, String)>,
) -> ApiResult {
    let hostname = state
        .ops
        .delete_hostname(&namespace(&ns)?, &hostname)
        .await?;
    Ok(ok(serde_json::json!({"hostname": hostname})))
}
