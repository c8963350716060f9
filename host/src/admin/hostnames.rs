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
use super::{AdminState, blocking};
use crate::base::host_pattern::HostPattern;
use crate::base::names::Name;
use crate::store::StoreError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapBody {
    script: String,
}

fn pattern(hostname: &str) -> Result<String, ApiError> {
    HostPattern::parse(hostname)
        .map(|p| p.to_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub(super) async fn list(State(state): State<AdminState>, Path(ns): Path<String>) -> ApiResult {
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let entries = blocking(move || {
        if state.store().get_namespace(&ns)?.is_none() {
            return Err(StoreError::NamespaceNotFound(ns).into());
        }
        Ok(state.store().list_hostnames(&ns)?)
    })
    .await?;
    let entries: Vec<_> = entries
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
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let hostname = pattern(&hostname)?;
    let MapBody { script } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be {{\"script\": \"name\"}}: {e}")))?;
    let script = Name::new(&script).map_err(ApiError::name("script name"))?;
    let (host, name) = (hostname.clone(), script.clone());
    blocking(move || {
        let store = state.store();
        if store.get_script(&ns, &script)?.is_none() {
            return Err(ApiError::ScriptNotFound {
                namespace: ns.to_string(),
                script: script.to_string(),
            });
        }
        Ok(store.put_hostname(&ns, &host, &script)?)
    })
    .await?;
    Ok(ok(
        serde_json::json!({"hostname": hostname, "script": name}),
    ))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((ns, hostname)): Path<(String, String)>,
) -> ApiResult {
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let hostname = pattern(&hostname)?;
    let host = hostname.clone();
    blocking(move || {
        if state.store().delete_hostname(&ns, &host)? {
            Ok(())
        } else {
            Err(ApiError::ItemNotFound(format!(
                "no hostname {host:?} in namespace {ns:?}"
            )))
        }
    })
    .await?;
    Ok(ok(serde_json::json!({"hostname": hostname})))
}
