//! A script's static assets: the manifest and the files it names.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{Ops, OpsResult, no_script};
use crate::assets::{MAX_ASSET_BYTES, check_manifest};
use crate::base::Invalid;
use crate::base::names::Name;
use crate::store::{AssetConfig, AssetEntry};

/// What an assets upload stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AssetsStored {
    /// Files in the manifest.
    pub count: usize,
    /// Hashes whose bytes came with this upload.
    pub uploaded: Vec<String>,
}

impl Ops {
    /// A script's asset manifest and serving options.
    pub async fn assets(
        &self,
        ns: &Name,
        name: &Name,
    ) -> OpsResult<(BTreeMap<String, AssetEntry>, AssetConfig)> {
        let record = self.script(ns, name).await?;
        Ok((record.assets, record.asset_config))
    }

    /// Replaces a script's asset manifest. `files` are the bytes of
    /// hashes the store may not have (each checked against its hash and
    /// the manifest's size); a hash neither stored for this namespace nor
    /// uploaded is refused with the list of what is missing.
    pub async fn put_assets(
        &self,
        ns: &Name,
        name: &Name,
        manifest: BTreeMap<String, AssetEntry>,
        files: Vec<Vec<u8>>,
    ) -> OpsResult<AssetsStored> {
        check_manifest(&manifest)?;
        let files = check_files(&manifest, files)?;
        let stored = AssetsStored {
            count: manifest.len(),
            uploaded: files.keys().cloned().collect(),
        };
        let (n, s) = (ns.clone(), name.clone());
        self.with_store(move |store| {
            store
                .put_assets(&n, &s, manifest, files)?
                .ok_or_else(|| no_script(&n, &s))
        })
        .await?;
        self.script_changed(ns, name);
        tracing::info!(namespace = %ns, script = %name, files = stored.count,
            uploaded = stored.uploaded.len(), "assets updated");
        Ok(stored)
    }
}

/// The uploaded files by hash, each within the size limit, matching the
/// size the manifest declares, and named by the manifest.
fn check_files(
    manifest: &BTreeMap<String, AssetEntry>,
    files: Vec<Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, Invalid> {
    let mut by_hash = BTreeMap::new();
    for bytes in files {
        let hash = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 > MAX_ASSET_BYTES {
            return Err(Invalid(format!(
                "file {hash} is {} bytes; the limit is {MAX_ASSET_BYTES}",
                bytes.len()
            )));
        }
        by_hash.insert(hash, bytes);
    }
    for (path, entry) in manifest {
        if let Some(content) = by_hash.get(&entry.sha256)
            && content.len() as u64 != entry.size
        {
            return Err(Invalid(format!(
                "{path}: manifest says {} bytes, the file has {}",
                entry.size,
                content.len()
            )));
        }
    }
    if let Some(stray) = by_hash
        .keys()
        .find(|h| !manifest.values().any(|e| &e.sha256 == *h))
    {
        return Err(Invalid(format!("file {stray} is not in the manifest")));
    }
    Ok(by_hash)
}
