//! Content-addressed bytes on sled: components, assets (with per-namespace
//! ownership marks) and the host's own precompiled artifacts.

use std::collections::BTreeMap;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, abort};

use super::{SledStore, decode_count, owner_key, release_blob, script_key};
use crate::base::names::Name;
use crate::store::{AssetEntry, Blobs, Catalog, ScriptRecord, StoreError, StoreResult, now_ms};

impl Blobs for SledStore {
    fn script_content(&self, namespace: &Name, name: &Name) -> StoreResult<Option<Vec<u8>>> {
        let Some(record) = self.get_script(namespace, name)? else {
            return Ok(None);
        };
        match self.blobs.get(&record.sha256)? {
            Some(bytes) => Ok(Some(bytes.to_vec())),
            None => Err(StoreError::Corrupt {
                key: record.sha256,
                message: "script refers to missing content".into(),
            }),
        }
    }

    fn put_assets(
        &self,
        namespace: &Name,
        name: &Name,
        manifest: BTreeMap<String, AssetEntry>,
        files: BTreeMap<String, Vec<u8>>,
    ) -> StoreResult<Option<ScriptRecord>> {
        let _guard = self.lock();
        let key = script_key(namespace, name);
        let outcome = (
            &self.scripts,
            &self.blobs,
            &self.blob_refs,
            &self.asset_owners,
        )
            .transaction(|(scripts, blobs, refs, owners)| {
                let Some(bytes) = scripts.get(key.as_bytes())? else {
                    return Ok(None);
                };
                let mut record: ScriptRecord = self
                    .decode_script(key.as_bytes(), &bytes)
                    .map_err(ConflictableTransactionError::Abort)?;
                let mut missing = Vec::new();
                // One reference per manifest entry; identical files share a
                // blob. A manifest may name only content this namespace
                // uploaded itself: a hash alone (another tenant's asset, any
                // component's bytes) never makes content servable.
                for entry in manifest.values() {
                    let owner = owner_key(namespace, &entry.sha256);
                    let owned = owners.get(&owner)?.is_some();
                    let count = decode_count(refs.get(entry.sha256.as_bytes())?);
                    match files.get(&entry.sha256) {
                        Some(content) => {
                            if count == 0 {
                                blobs.insert(entry.sha256.as_bytes(), content.as_slice())?;
                            }
                            owners.insert(owner, &[])?;
                        }
                        None if owned && count > 0 => {}
                        None => {
                            missing.push(entry.sha256.clone());
                            continue;
                        }
                    }
                    refs.insert(entry.sha256.as_bytes(), &(count + 1).to_be_bytes())?;
                }
                if !missing.is_empty() {
                    missing.sort();
                    missing.dedup();
                    return abort(StoreError::MissingAssets(missing));
                }
                for old in record.assets.values() {
                    release_blob(blobs, refs, &old.sha256)?;
                }
                record.assets = manifest.clone();
                record.modified_ms = now_ms();
                scripts.insert(key.as_bytes(), self.encode_script(&record))?;
                Ok(Some(record))
            })?;
        self.flush()?;
        Ok(outcome)
    }

    fn blob(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.blobs.get(sha256.as_bytes())?.map(|v| v.to_vec()))
    }

    fn has_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<bool> {
        Ok(self
            .artifacts
            .contains_key(format!("{sha256}/{engine_hash}").as_bytes())?)
    }

    fn get_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .artifacts
            .get(format!("{sha256}/{engine_hash}"))?
            .map(|v| v.to_vec()))
    }

    fn put_artifact(&self, sha256: &str, engine_hash: &str, bytes: &[u8]) -> StoreResult<()> {
        let _guard = self.lock();
        if self.blob_refs.get(sha256)?.is_none() {
            return Ok(()); // content deleted meanwhile; don't resurrect an orphan
        }
        self.artifacts
            .insert(format!("{sha256}/{engine_hash}"), bytes)?;
        self.flush()
    }
}
