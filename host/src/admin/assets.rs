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

use super::error::{ApiError, ApiResult, ok};
use super::{AdminState, names};
use crate::store::AssetEntry;

pub(super) async fn get(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    let (assets, config) = state.ops.assets(&ns, &script).await?;
    Ok(ok(serde_json::json!({"assets": assets, "config": config})))
}

fn bad(message: impl ToString) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

pub(super) async fn put(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    let (manifest, files) = read_upload(request).await?;
    Ok(ok(state
        .ops
        .put_assets(&ns, &script, manifest, files)
        .await?))
}

/// The manifest part and every file part (each named by its hash). The
/// whole body is read even after a problem, so the connection stays
/// usable; the first problem is the answer.
async fn read_upload(
    request: Request,
) -> Result<(BTreeMap<String, AssetEntry>, Vec<Vec<u8>>), ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(format!("assets upload must be multipart/form-data: {e}")))?;
    let mut manifest: Option<BTreeMap<String, AssetEntry>> = None;
    let mut files = Vec::new();
    let mut problem: Option<ApiError> = None;
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
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if name != hash {
            problem = Some(bad(format!(
                "part {name:?}: file parts must be named by their sha256; this content hashes to {hash}"
            )));
        } else {
            files.push(bytes.to_vec());
        }
    }
    if let Some(problem) = problem {
        return Err(problem);
    }
    let manifest = manifest.ok_or_else(|| bad("the upload lacks a \"manifest\" part"))?;
    Ok((manifest, files))
}
