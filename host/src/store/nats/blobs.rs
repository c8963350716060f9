//! Components, assets and artifacts in the cluster's Object Store, with a
//! per-host cache under `data_dir/cache`.
//!
//! Blobs are content-addressed: a blob fetched from NATS is checked against
//! its SHA-256 before it is cached or used, so a tampered object is refused
//! rather than run or served. Artifacts are native code and cannot be
//! checked that way: one fetched from NATS is loaded only with a valid HMAC
//! under the cluster's artifact key; a bad or missing tag means "no
//! artifact" and the runtime compiles (and shares a correctly tagged one).
//! Artifacts in the local cache were written by this host only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{NatsStore, keys};
use crate::base::names::Name;
use crate::store::{AssetEntry, Blobs, Catalog, ScriptRecord, StoreError, StoreResult, now_ms};

/// Length of an artifact's tag.
const TAG: usize = 32;

impl NatsStore {
    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.inner.cache_dir.join("blobs").join(sha256)
    }

    fn artifact_path(&self, sha256: &str, engine_hash: &str) -> PathBuf {
        self.inner
            .cache_dir
            .join("artifacts")
            .join(format!("{engine_hash}-{sha256}"))
    }

    /// Uploads `content` as blob `sha256` unless the store has it.
    pub(super) fn put_blob(&self, sha256: &str, content: &[u8]) -> StoreResult<()> {
        if !is_hex_sha(sha256) {
            return Err(StoreError::Backend(format!("{sha256:?} is not a sha256")));
        }
        let inner = self.inner.clone();
        let name = keys::blob(sha256);
        let upload = content.to_vec();
        self.run(async move {
            if inner.objects.info(&name).await.is_ok() {
                return Ok(());
            }
            inner
                .objects
                .put(name.as_str(), &mut upload.as_slice())
                .await
                .map(|_| ())
                .map_err(|e| inner.failure(&format!("uploading {name}"), e))
        })?;
        write_cache(&self.blob_path(sha256), content);
        Ok(())
    }

    /// Fetches an object's bytes; `None` if there is no such object.
    fn fetch(&self, name: String) -> StoreResult<Option<Vec<u8>>> {
        let inner = self.inner.clone();
        self.run(async move {
            let mut object = match inner.objects.get(&name).await {
                Ok(object) => object,
                Err(e)
                    if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(inner.failure(&format!("fetching {name}"), e)),
            };
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| inner.failure(&format!("reading {name}"), e))?;
            Ok(Some(bytes))
        })
    }

    fn mac(&self, key: &[u8], sha256: &str, engine_hash: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"berth-artifact\0");
        mac.update(engine_hash.as_bytes());
        mac.update(b"\0");
        mac.update(sha256.as_bytes());
        mac.update(b"\0");
        mac
    }
}

fn is_hex_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes a cache file atomically (temporary name, then rename); a failure
/// only costs a later re-fetch.
fn write_cache(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(error) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), %error, "cannot write the local store cache");
    }
}

impl Blobs for NatsStore {
    fn script_content(&self, namespace: &Name, name: &Name) -> StoreResult<Option<Vec<u8>>> {
        let Some(record) = self.get_script(namespace, name)? else {
            return Ok(None);
        };
        match self.blob(&record.sha256)? {
            Some(bytes) => Ok(Some(bytes)),
            None => Err(StoreError::Corrupt {
                key: record.sha256,
                message: "script refers to content missing from the object store".into(),
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
        self.writable()?;
        let key = keys::script(namespace, name);
        if self.authoritative(&key)?.0.is_none() {
            return Ok(None);
        }
        // A manifest may name only content this namespace uploaded itself
        // (as on one machine): a hash alone never makes content servable.
        // Ownership is read from the mirror once it holds everything NATS
        // had: one round trip, not one per file.
        self.caught_up()?;
        let owned = |sha256: &str| {
            self.inner
                .mirror
                .get(&keys::asset_owner(namespace, sha256))
                .is_some()
        };
        let mut missing = Vec::new();
        for entry in manifest.values() {
            if !files.contains_key(&entry.sha256) && !owned(&entry.sha256) {
                missing.push(entry.sha256.clone());
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(StoreError::MissingAssets(missing));
        }
        let named: std::collections::HashSet<&str> =
            manifest.values().map(|e| e.sha256.as_str()).collect();
        for (sha256, content) in &files {
            if !named.contains(sha256.as_str()) {
                continue;
            }
            self.put_blob(sha256, content)?;
            if !owned(sha256) {
                // Create-if-absent; losing the race means someone recorded
                // the same ownership.
                self.compare_and_set(
                    &keys::asset_owner(namespace, sha256),
                    bytes::Bytes::new(),
                    None,
                )?;
            }
        }
        let updated = self.update_script(namespace, name, &mut |record| {
            record.assets = manifest.clone();
            record.modified_ms = now_ms();
            Ok(())
        })?;
        match updated {
            Some(Ok(record)) => Ok(Some(record)),
            Some(Err(refusal)) => Err(StoreError::Backend(refusal.0)),
            None => Ok(None),
        }
    }

    fn blob(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        if !is_hex_sha(sha256) {
            return Ok(None);
        }
        let path = self.blob_path(sha256);
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(Some(bytes));
        }
        let Some(bytes) = self.fetch(keys::blob(sha256))? else {
            return Ok(None);
        };
        if hex::encode(Sha256::digest(&bytes)) != sha256.to_ascii_lowercase() {
            tracing::error!(sha256, "object store blob does not match its hash; refused");
            return Err(StoreError::Corrupt {
                key: keys::blob(sha256),
                message: "content does not match its sha256".into(),
            });
        }
        write_cache(&path, &bytes);
        Ok(Some(bytes))
    }

    fn has_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<bool> {
        if self.artifact_path(sha256, engine_hash).exists() {
            return Ok(true);
        }
        if self.inner.artifact_key.is_none() {
            return Ok(false);
        }
        let inner = self.inner.clone();
        let name = keys::artifact(sha256, engine_hash);
        self.run(async move { Ok(inner.objects.info(&name).await.is_ok()) })
    }

    fn get_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<Option<Vec<u8>>> {
        let path = self.artifact_path(sha256, engine_hash);
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(Some(bytes));
        }
        let Some(key) = self.inner.artifact_key.clone() else {
            return Ok(None);
        };
        let Some(tagged) = self.fetch(keys::artifact(sha256, engine_hash))? else {
            return Ok(None);
        };
        if tagged.len() < TAG {
            tracing::error!(
                sha256,
                engine_hash,
                "shared artifact has no tag; refused, compiling instead"
            );
            return Ok(None);
        }
        let (tag, artifact) = tagged.split_at(TAG);
        let mut mac = self.mac(&key, sha256, engine_hash);
        mac.update(artifact);
        if mac.verify_slice(tag).is_err() {
            tracing::error!(
                sha256,
                engine_hash,
                "shared artifact failed its HMAC check (tampered, or another artifact key); \
                 refused, compiling instead"
            );
            return Ok(None);
        }
        write_cache(&path, artifact);
        Ok(Some(artifact.to_vec()))
    }

    fn put_artifact(&self, sha256: &str, engine_hash: &str, bytes: &[u8]) -> StoreResult<()> {
        write_cache(&self.artifact_path(sha256, engine_hash), bytes);
        let Some(key) = self.inner.artifact_key.clone() else {
            return Ok(());
        };
        let mut mac = self.mac(&key, sha256, engine_hash);
        mac.update(bytes);
        let mut tagged = mac.finalize().into_bytes().to_vec();
        tagged.extend_from_slice(bytes);
        let inner = self.inner.clone();
        let name = keys::artifact(sha256, engine_hash);
        // Sharing is an optimisation: a host that cannot upload still
        // serves from its own cache, and the others compile.
        let shared = self.run(async move {
            inner
                .objects
                .put(name.as_str(), &mut tagged.as_slice())
                .await
                .map(|_| ())
                .map_err(|e| inner.failure(&format!("uploading {name}"), e))
        });
        if let Err(error) = shared {
            tracing::warn!(sha256, %error, "could not share the compiled artifact");
        }
        Ok(())
    }
}
