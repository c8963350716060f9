//! `PUT|GET /v1/namespaces/{ns}/scripts/{name}/assets`: a script's static
//! files.
//!
//! The upload is `multipart/form-data` with a `manifest` part —
//! `{"/index.html": {"sha256": "…", "size": 1234}, …}` — and one part per
//! file whose content the host does not have yet, named by its sha256.
//! Content is addressed by hash and de-duplicated across scripts, so a
//! client may send the manifest alone first: the `missing_assets` error
//! lists exactly the hashes to upload. The new manifest replaces the old
//! one atomically; nothing changes on any error.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult, ok};
use super::scripts::{load_script, names_and_not_found};
use super::{AdminState, blocking};
use crate::assets::{MAX_ASSET_BYTES, check_manifest};
use crate::store::AssetEntry;

pub(super) async fn get(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let record = load_script(&state, &ns, &script).await?;
    Ok(ok(
        serde_json::json!({"assets": record.assets, "config": record.asset_config}),
    ))
}

fn bad(message: impl ToString) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

pub(super) async fn put(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(format!("assets upload must be multipart/form-data: {e}")))?;
    let mut manifest: Option<BTreeMap<String, AssetEntry>> = None;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut problem: Option<ApiError> = None;
    // Every part is read even after a problem, so the connection stays
    // usable; the first problem is reported.
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("invalid multipart body: {}", e.body_text())))?
    {
        let name = field.name().unwrap_or("").to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("invalid multipart body: {}", e.body_text())))?;
        if problem.is_some() {
            continue;
        }
        if name == "manifest" {
            match serde_json::from_slice(&bytes) {
                Ok(m) => manifest = Some(m),
                Err(e) => problem = Some(bad(format!("manifest: {e}"))),
            }
            continue;
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        if name != hash {
            problem = Some(bad(format!(
                "part {name:?}: file parts must be named by their sha256; this content hashes to {hash}"
            )));
        } else if bytes.len() as u64 > MAX_ASSET_BYTES {
            problem = Some(bad(format!(
                "file {hash} is {} bytes; the limit is {MAX_ASSET_BYTES}",
                bytes.len()
            )));
        } else {
            files.insert(hash, bytes.to_vec());
        }
    }
    if let Some(problem) = problem {
        return Err(problem);
    }
    let manifest = manifest.ok_or_else(|| bad("the upload lacks a \"manifest\" part"))?;
    check_manifest(&manifest).map_err(bad)?;
    for (path, entry) in &manifest {
        if let Some(content) = files.get(&entry.sha256)
            && content.len() as u64 != entry.size
        {
            return Err(bad(format!(
                "{path}: manifest says {} bytes, the file has {}",
                entry.size,
                content.len()
            )));
        }
    }
    if let Some(stray) = files
        .keys()
        .find(|h| !manifest.values().any(|e| &e.sha256 == *h))
    {
        return Err(bad(format!("file {stray} is not in the manifest")));
    }
    let uploaded: Vec<String> = files.keys().cloned().collect();
    let runtime = state.runtime.clone();
    let (namespace, name) = (ns.clone(), script.clone());
    let count = manifest.len();
    blocking(move || {
        state
            .store()
            .put_assets(&ns, &script, manifest, files)?
            .ok_or(not_found)
    })
    .await?;
    runtime.evict(&namespace, &name);
    tracing::info!(namespace = %namespace, script = %name, files = count, uploaded = uploaded.len(), "assets updated");
    Ok(ok(
        serde_json::json!({"count": count, "uploaded": uploaded}),
    ))
}
