//! [`NamespaceStore`] on an embedded sled database.
//!
//! Layout (one sled tree each):
//! - `namespaces`: `<ns>` → JSON [`NamespaceRecord`]
//! - `scripts`: `<ns>/<script>` → JSON [`ScriptRecord`] (names cannot contain `/`)
//! - `blobs`: `<sha256>` → component bytes, shared by every script with that content
//! - `blob_refs`: `<sha256>` → big-endian u64 count of scripts using the blob
//! - `artifacts`: `<sha256>/<engine-hash>` → the host's precompiled artifact
//!
//! Each mutation is one multi-tree sled transaction followed by a flush, so
//! it is atomic and durable before it returns. Mutations are additionally
//! serialized by a mutex: they are rare (admin calls) and some need a scan
//! plus a transaction to be atomic as a whole (deleting a namespace).
//! Artifacts of a blob that lost its last reference are swept after the
//! transaction, and again at start-up in case a crash came in between.

use std::path::Path;
use std::sync::Mutex;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};

use std::collections::BTreeMap;

use super::KvQuota;
use super::seal::Sealer;
use super::{
    AssetEntry, Blobs, Catalog, Hostnames, KvStore, NamespaceRecord, NewScript, ScriptRecord,
    StoreError, StoreResult, next_script_record, now_ms,
};
use crate::base::Invalid;
use crate::base::names::Name;

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    namespaces: sled::Tree,
    scripts: sled::Tree,
    blobs: sled::Tree,
    blob_refs: sled::Tree,
    artifacts: sled::Tree,
    hostnames: sled::Tree,
    kv: sled::Tree,
    kv_usage: sled::Tree,
    asset_owners: sled::Tree,
    write_lock: Mutex<()>,
    sealer: Option<Sealer>,
}

/// How long bytes a bucket overwrote or deleted keep counting against its
/// byte quota: sled keeps them on disk until its segment cleaner rewrites
/// their segment, so they are stored even though no key reaches them. A
/// bucket can thus leave at most its quota of such garbage per window,
/// however often it rewrites the same keys.
pub const KV_REWRITE_WINDOW_MS: u64 = 60_000;

/// What a bucket holds, kept beside it in the `kv_usage` tree and updated
/// in the same transaction as every write: keys and bytes (keys + values)
/// reachable now, and the bytes it overwrote or deleted in the current
/// rewrite window. The byte quota applies to [`Self::stored`], the two
/// together: the bytes as stored, not only as live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct KvUsage {
    keys: u64,
    bytes: u64,
    rewritten: u64,
    window_start_ms: u64,
}

impl KvUsage {
    fn encode(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.keys.to_be_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        out[16..24].copy_from_slice(&self.rewritten.to_be_bytes());
        out[24..].copy_from_slice(&self.window_start_ms.to_be_bytes());
        out
    }

    /// Bytes the bucket takes on disk: live, plus what it overwrote or
    /// deleted in the current window.
    fn stored(&self) -> u64 {
        self.bytes + self.rewritten
    }

    /// Starts a new rewrite window at `now_ms` if the current one is over.
    fn at(mut self, now_ms: u64) -> Self {
        if now_ms.saturating_sub(self.window_start_ms) >= KV_REWRITE_WINDOW_MS {
            self.rewritten = 0;
            self.window_start_ms = now_ms;
        }
        self
    }

    /// After `key` (replacing `old` bytes of value, if it existed) is set
    /// to `new` bytes of value.
    fn after_set(self, key: usize, old: Option<usize>, new: usize, now_ms: u64) -> Self {
        let mut next = self.at(now_ms);
        match old {
            Some(old) => {
                let replaced = (key + old) as u64;
                next.bytes = next.bytes.saturating_sub(replaced);
                next.rewritten += replaced;
            }
            None => next.keys += 1,
        }
        next.bytes += (key + new) as u64;
        next
    }

    /// After `key` (with `old` bytes of value) is deleted.
    fn after_delete(self, key: usize, old: usize, now_ms: u64) -> Self {
        let mut next = self.at(now_ms);
        let removed = (key + old) as u64;
        next.keys = next.keys.saturating_sub(1);
        next.bytes = next.bytes.saturating_sub(removed);
        next.rewritten += removed;
        next
    }

    fn decode(bytes: &[u8]) -> Self {
        let word = |i: usize| {
            bytes
                .get(i..i + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes)
        };
        // Records written before the rewrite window have two words.
        Self {
            keys: word(0),
            bytes: word(8),
            rewritten: word(16),
            window_start_ms: word(24),
        }
    }
}

/// Key of an asset-ownership mark: `ns\0sha256` — the namespace uploaded
/// that content as an asset, so its manifests may name it.
fn owner_key(namespace: &Name, sha256: &str) -> Vec<u8> {
    let mut key = namespace.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(sha256.as_bytes());
    key
}

/// Key of a script's KV entry: `ns/script\0key`. The NUL cannot occur in
/// names, so one script's prefix never covers another's keys.
fn kv_prefix(namespace: &Name, script: &Name) -> Vec<u8> {
    format!("{namespace}/{script}\0").into_bytes()
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn script_key(namespace: &Name, name: &Name) -> String {
    format!("{namespace}/{name}")
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records always serialize")
}

fn decode_count(bytes: Option<sled::IVec>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Adds one reference to `sha`, storing `content` if it is new.
fn retain_blob(
    blobs: &TransactionalTree,
    refs: &TransactionalTree,
    sha: &str,
    content: &[u8],
) -> TxResult<()> {
    let count = decode_count(refs.get(sha)?);
    if count == 0 {
        blobs.insert(sha, content)?;
    }
    refs.insert(sha, &(count + 1).to_be_bytes())?;
    Ok(())
}

/// Drops one reference to `sha`; returns true when the blob was removed.
fn release_blob(blobs: &TransactionalTree, refs: &TransactionalTree, sha: &str) -> TxResult<bool> {
    let count = decode_count(refs.get(sha)?);
    if count <= 1 {
        refs.remove(sha)?;
        blobs.remove(sha)?;
        Ok(true)
    } else {
        refs.insert(sha, &(count - 1).to_be_bytes())?;
        Ok(false)
    }
}

impl SledStore {
    /// Opens (creating if needed) the store under `dir`, with script
    /// secrets sealed by `sealer` (see [`super::seal`]).
    pub fn open_sealed(dir: &Path, sealer: Sealer) -> StoreResult<Self> {
        let mut store = Self::open(dir)?;
        store.sealer = Some(sealer);
        Ok(store)
    }

    /// Opens (creating if needed) the store under `dir`; secrets are kept
    /// as given (tests, or a backend whose disk is encrypted already).
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", dir.display())))?;
        let store = Self {
            namespaces: db.open_tree("namespaces")?,
            scripts: db.open_tree("scripts")?,
            blobs: db.open_tree("blobs")?,
            blob_refs: db.open_tree("blob_refs")?,
            artifacts: db.open_tree("artifacts")?,
            hostnames: db.open_tree("hostnames")?,
            kv: db.open_tree("kv")?,
            kv_usage: db.open_tree("kv_usage")?,
            asset_owners: db.open_tree("asset_owners")?,
            db,
            write_lock: Mutex::new(()),
            sealer: None,
        };
        store.sweep_orphan_artifacts()?;
        Ok(store)
    }

    fn encode_script(&self, record: &ScriptRecord) -> Vec<u8> {
        match &self.sealer {
            Some(sealer) => encode(&sealer.seal_record(record)),
            None => encode(record),
        }
    }

    fn decode_script(&self, key: &[u8], bytes: &[u8]) -> StoreResult<ScriptRecord> {
        let record: ScriptRecord = decode(key, bytes)?;
        match &self.sealer {
            Some(sealer) => sealer.open_record(record),
            None => Ok(record),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave sled half-written (each
        // mutation is one transaction), so a poisoned lock is safe to reuse.
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Removes every KV entry of a script (its bucket dies with it).
    /// A bucket's usage record; computed from the bucket once when a store
    /// written before quotas existed has none.
    fn kv_usage_of(&self, prefix: &[u8]) -> StoreResult<KvUsage> {
        if let Some(bytes) = self.kv_usage.get(prefix)? {
            return Ok(KvUsage::decode(&bytes));
        }
        let mut usage = KvUsage::default();
        for entry in self.kv.scan_prefix(prefix) {
            let (k, v) = entry?;
            usage.keys += 1;
            usage.bytes += (k.len() - prefix.len() + v.len()) as u64;
        }
        Ok(usage)
    }

    /// Every KV key under `prefix` (a script's bucket, or a namespace's
    /// `ns/`), read under the write lock before a deleting transaction.
    fn kv_keys_under(&self, prefix: &[u8]) -> StoreResult<Vec<sled::IVec>> {
        Ok(self
            .kv
            .scan_prefix(prefix)
            .keys()
            .collect::<Result<_, _>>()?)
    }

    /// Removes artifacts whose content is no longer stored.
    fn sweep_orphan_artifacts(&self) -> StoreResult<()> {
        let mut removed = 0usize;
        for entry in self.artifacts.iter() {
            let (key, _) = entry?;
            let sha = key.split(|b| *b == b'/').next().unwrap_or(&[]);
            if self.blob_refs.get(sha)?.is_none() {
                self.artifacts.remove(&key)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "swept artifacts of deleted components");
            self.flush()?;
        }
        Ok(())
    }

    fn remove_artifacts_of(&self, shas: &[String]) -> StoreResult<()> {
        for sha in shas {
            for entry in self.artifacts.scan_prefix(format!("{sha}/")) {
                let (key, _) = entry?;
                self.artifacts.remove(key)?;
            }
        }
        Ok(())
    }

    fn script_keys(&self, namespace: &Name) -> StoreResult<Vec<sled::IVec>> {
        self.scripts
            .scan_prefix(format!("{namespace}/"))
            .keys()
            .map(|k| k.map_err(StoreError::from))
            .collect()
    }
}

impl Catalog for SledStore {
    fn create_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        let _guard = self.lock();
        let record = NamespaceRecord {
            name: name.clone(),
            created_ms: now_ms(),
            egress: Default::default(),
            trusted: false,
        };
        let previous = self.namespaces.compare_and_swap(
            name.as_str(),
            None as Option<&[u8]>,
            Some(encode(&record)),
        )?;
        if previous.is_err() {
            return Err(StoreError::NamespaceExists(name.clone()));
        }
        self.flush()?;
        Ok(record)
    }

    fn ensure_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        match self.create_namespace(name) {
            Err(StoreError::NamespaceExists(_)) => self
                .get_namespace(name)?
                .ok_or_else(|| StoreError::NamespaceNotFound(name.clone())),
            other => other,
        }
    }

    fn get_namespace(&self, name: &Name) -> StoreResult<Option<NamespaceRecord>> {
        self.namespaces
            .get(name.as_str())?
            .map(|v| decode(name.as_str().as_bytes(), &v))
            .transpose()
    }

    fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>> {
        self.namespaces
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                decode(&k, &v)
            })
            .collect()
    }

    fn delete_namespace(&self, name: &Name, force: bool) -> StoreResult<Vec<Name>> {
        let _guard = self.lock();
        if self.get_namespace(name)?.is_none() {
            return Err(StoreError::NamespaceNotFound(name.clone()));
        }
        let keys = self.script_keys(name)?;
        if !keys.is_empty() && !force {
            return Err(StoreError::NamespaceNotEmpty {
                name: name.clone(),
                scripts: keys.len(),
            });
        }
        // Every KV key of the namespace's scripts goes in the same
        // transaction: a crash can never leave a bucket that a script
        // re-created under the same name would inherit. (KV writes take
        // the same lock, so the list is complete.)
        let kv_keys = self.kv_keys_under(format!("{name}/").as_bytes())?;
        let usage_keys: Vec<sled::IVec> = self
            .kv_usage
            .scan_prefix(format!("{name}/").as_bytes())
            .keys()
            .collect::<Result<_, _>>()?;
        let (deleted, released) = (
            &self.namespaces,
            &self.scripts,
            &self.blobs,
            &self.blob_refs,
            &self.kv,
            &self.kv_usage,
        )
            .transaction(|(namespaces, scripts, blobs, refs, kv, kv_usage)| {
                for key in &kv_keys {
                    kv.remove(key)?;
                }
                for key in &usage_keys {
                    kv_usage.remove(key)?;
                }
                let mut deleted = Vec::new();
                let mut released = Vec::new();
                for key in &keys {
                    let Some(bytes) = scripts.remove(key)? else {
                        continue;
                    };
                    let record: ScriptRecord =
                        decode(key, &bytes).map_err(ConflictableTransactionError::Abort)?;
                    if release_blob(blobs, refs, &record.sha256)? {
                        released.push(record.sha256.clone());
                    }
                    for asset in record.assets.values() {
                        release_blob(blobs, refs, &asset.sha256)?;
                    }
                    deleted.push(record.name);
                }
                namespaces.remove(name.as_str())?;
                Ok((deleted, released))
            })?;
        self.remove_artifacts_of(&released)?;
        // Its hostname mappings go too, so a namespace re-created under the
        // same name starts clean.
        let keys: Vec<sled::IVec> = self
            .hostnames
            .scan_prefix(format!("{name}/").as_bytes())
            .keys()
            .collect::<Result<_, _>>()?;
        for key in keys {
            self.hostnames.remove(key)?;
        }
        // And its asset ownership: a namespace re-created under the same
        // name cannot name the old one's content without uploading it.
        let mut prefix = name.as_str().as_bytes().to_vec();
        prefix.push(0);
        let owned: Vec<sled::IVec> = self
            .asset_owners
            .scan_prefix(prefix)
            .keys()
            .collect::<Result<_, _>>()?;
        for key in owned {
            self.asset_owners.remove(key)?;
        }
        self.flush()?;
        Ok(deleted)
    }

    fn put_script(
        &self,
        namespace: &Name,
        name: &Name,
        script: NewScript,
    ) -> StoreResult<ScriptRecord> {
        let _guard = self.lock();
        let key = script_key(namespace, name);
        let now = now_ms();
        let (record, released) = (
            &self.namespaces,
            &self.scripts,
            &self.blobs,
            &self.blob_refs,
            &self.artifacts,
        )
            .transaction(|(namespaces, scripts, blobs, refs, artifacts)| {
                if namespaces.get(namespace.as_str())?.is_none() {
                    return abort(StoreError::NamespaceNotFound(namespace.clone()));
                }
                let old: Option<ScriptRecord> = scripts
                    .get(&key)?
                    .map(|v| self.decode_script(key.as_bytes(), &v))
                    .transpose()
                    .map_err(ConflictableTransactionError::Abort)?;
                retain_blob(blobs, refs, &script.sha256, &script.content)?;
                let mut released = Vec::new();
                if let Some(old) = &old
                    && release_blob(blobs, refs, &old.sha256)?
                {
                    released.push(old.sha256.clone());
                }
                if let Some((engine_hash, bytes)) = &script.artifact {
                    artifacts.insert(
                        format!("{}/{engine_hash}", script.sha256).as_bytes(),
                        bytes.as_slice(),
                    )?;
                }
                let record = next_script_record(namespace, name, &script, old.as_ref(), now);
                scripts.insert(key.as_bytes(), self.encode_script(&record))?;
                Ok((record, released))
            })?;
        self.remove_artifacts_of(&released)?;
        self.flush()?;
        Ok(record)
    }

    fn get_script(&self, namespace: &Name, name: &Name) -> StoreResult<Option<ScriptRecord>> {
        let key = script_key(namespace, name);
        self.scripts
            .get(&key)?
            .map(|v| self.decode_script(key.as_bytes(), &v))
            .transpose()
    }

    fn list_scripts(&self, namespace: &Name) -> StoreResult<Vec<ScriptRecord>> {
        self.scripts
            .scan_prefix(format!("{namespace}/"))
            .map(|entry| {
                let (k, v) = entry?;
                self.decode_script(&k, &v)
            })
            .collect()
    }

    fn update_script(
        &self,
        namespace: &Name,
        name: &Name,
        change: &mut dyn FnMut(&mut ScriptRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<ScriptRecord, Invalid>>> {
        let _guard = self.lock();
        let key = script_key(namespace, name);
        let Some(mut record) = self.get_script(namespace, name)? else {
            return Ok(None);
        };
        if let Err(refusal) = change(&mut record) {
            return Ok(Some(Err(refusal)));
        }
        record.modified_ms = now_ms();
        // One key, one insert: atomic on its own; the write lock keeps a
        // concurrent redeploy from interleaving between read and write.
        self.scripts
            .insert(key.as_bytes(), self.encode_script(&record))?;
        self.flush()?;
        Ok(Some(Ok(record)))
    }

    fn update_namespace(
        &self,
        name: &Name,
        change: &mut dyn FnMut(&mut NamespaceRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<NamespaceRecord, Invalid>>> {
        let _guard = self.lock();
        let Some(mut record) = self.get_namespace(name)? else {
            return Ok(None);
        };
        if let Err(refusal) = change(&mut record) {
            return Ok(Some(Err(refusal)));
        }
        self.namespaces
            .insert(name.as_str().as_bytes(), encode(&record))?;
        self.flush()?;
        Ok(Some(Ok(record)))
    }

    fn delete_script(&self, namespace: &Name, name: &Name) -> StoreResult<bool> {
        let _guard = self.lock();
        let key = script_key(namespace, name);
        // Its bucket goes in the same transaction (see delete_namespace).
        let prefix = kv_prefix(namespace, name);
        let kv_keys = self.kv_keys_under(&prefix)?;
        let released = (
            &self.scripts,
            &self.blobs,
            &self.blob_refs,
            &self.kv,
            &self.kv_usage,
        )
            .transaction(|(scripts, blobs, refs, kv, kv_usage)| {
                let Some(bytes) = scripts.remove(key.as_bytes())? else {
                    return Ok(None);
                };
                for key in &kv_keys {
                    kv.remove(key)?;
                }
                kv_usage.remove(prefix.as_slice())?;
                let record: ScriptRecord =
                    decode(key.as_bytes(), &bytes).map_err(ConflictableTransactionError::Abort)?;
                for asset in record.assets.values() {
                    release_blob(blobs, refs, &asset.sha256)?;
                }
                let gone = release_blob(blobs, refs, &record.sha256)?;
                Ok(Some(gone.then_some(record.sha256)))
            })?;
        let Some(released) = released else {
            return Ok(false);
        };
        self.remove_artifacts_of(released.as_slice())?;
        self.flush()?;
        Ok(true)
    }
}

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

impl Hostnames for SledStore {
    fn put_hostname(&self, namespace: &Name, hostname: &str, script: &Name) -> StoreResult<()> {
        let _guard = self.lock();
        if self.namespaces.get(namespace.as_str())?.is_none() {
            return Err(StoreError::NamespaceNotFound(namespace.clone()));
        }
        self.hostnames.insert(
            format!("{namespace}/{hostname}").as_bytes(),
            script.as_str().as_bytes(),
        )?;
        self.flush()
    }

    fn delete_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<bool> {
        let _guard = self.lock();
        let removed = self
            .hostnames
            .remove(format!("{namespace}/{hostname}").as_bytes())?
            .is_some();
        self.flush()?;
        Ok(removed)
    }

    fn get_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        let key = format!("{namespace}/{hostname}");
        match self.hostnames.get(key.as_bytes())? {
            None => Ok(None),
            Some(value) => {
                let text = String::from_utf8_lossy(&value).into_owned();
                Name::new(&text).map(Some).map_err(|e| StoreError::Corrupt {
                    key,
                    message: e.to_string(),
                })
            }
        }
    }

    fn list_hostnames(&self, namespace: &Name) -> StoreResult<Vec<(String, Name)>> {
        let prefix = format!("{namespace}/");
        self.hostnames
            .scan_prefix(prefix.as_bytes())
            .map(|entry| {
                let (k, v) = entry?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let script =
                    Name::new(&String::from_utf8_lossy(&v)).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        message: e.to_string(),
                    })?;
                Ok((key[prefix.len()..].to_owned(), script))
            })
            .collect()
    }
}

impl KvStore for SledStore {
    fn kv_get(&self, namespace: &Name, script: &Name, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut k = kv_prefix(namespace, script);
        k.extend_from_slice(key.as_bytes());
        Ok(self.kv.get(k)?.map(|v| v.to_vec()))
    }

    fn kv_set(
        &self,
        namespace: &Name,
        script: &Name,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> StoreResult<()> {
        // Under the write lock, so a deletion's key list is complete and
        // the usage record cannot race.
        let _guard = self.lock();
        let prefix = kv_prefix(namespace, script);
        let usage = self.kv_usage_of(&prefix)?;
        let mut k = prefix.clone();
        k.extend_from_slice(key.as_bytes());
        let now = now_ms();
        (&self.kv, &self.kv_usage).transaction(|(kv, usage_tree)| {
            let old = kv.get(&k)?;
            let next = usage.after_set(key.len(), old.as_ref().map(|o| o.len()), value.len(), now);
            if next.keys > quota.max_keys {
                return abort(StoreError::KvQuota(format!(
                    "the bucket may hold {} keys",
                    quota.max_keys
                )));
            }
            // Growing past the byte quota, as stored, is refused. Every
            // write stores its bytes (an overwrite leaves the old value on
            // disk until sled reclaims it), so room comes back by deleting
            // keys and when the rewrite window ends.
            if next.stored() > quota.max_bytes && next.stored() > usage.stored() {
                return abort(StoreError::KvQuota(format!(
                    "the bucket may store {} bytes of keys and values; this write would make it {} \
                     ({} live, {} overwritten or deleted in the last {} s)",
                    quota.max_bytes,
                    next.stored(),
                    next.bytes,
                    next.rewritten,
                    KV_REWRITE_WINDOW_MS / 1000
                )));
            }
            kv.insert(k.as_slice(), value)?;
            usage_tree.insert(prefix.as_slice(), next.encode().as_slice())?;
            Ok(())
        })?;
        self.flush()
    }

    fn kv_delete(&self, namespace: &Name, script: &Name, key: &str) -> StoreResult<bool> {
        let _guard = self.lock();
        let prefix = kv_prefix(namespace, script);
        let usage = self.kv_usage_of(&prefix)?;
        let mut k = prefix.clone();
        k.extend_from_slice(key.as_bytes());
        let now = now_ms();
        let removed = (&self.kv, &self.kv_usage).transaction(|(kv, usage_tree)| {
            let Some(old) = kv.remove(k.as_slice())? else {
                return Ok(false);
            };
            let next = usage.after_delete(key.len(), old.len(), now);
            usage_tree.insert(prefix.as_slice(), next.encode().as_slice())?;
            Ok(true)
        })?;
        self.flush()?;
        Ok(removed)
    }

    fn kv_list(
        &self,
        namespace: &Name,
        script: &Name,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)> {
        let prefix = kv_prefix(namespace, script);
        // Start right after `after` (its successor is `after` + NUL), so a
        // page costs its own keys, not a rescan of every earlier one.
        let mut start = prefix.clone();
        if let Some(after) = after {
            start.extend_from_slice(after.as_bytes());
            start.push(0);
        }
        let mut keys = Vec::new();
        let mut more = false;
        for entry in self.kv.range(start..).keys() {
            let key = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(name);
        }
        Ok((keys, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn settings_update_keeps_code_and_version() {
        use crate::limits::ScriptLimits;
        use std::collections::BTreeMap;
        let (_dir, store) = open();
        let ns = Name::new("ns").unwrap();
        let name = Name::new("app").unwrap();
        store.create_namespace(&ns).unwrap();
        let first = store.put_script(&ns, &name, script(b"code")).unwrap();
        let limits = ScriptLimits {
            cpu_ms: Some(5),
            ..Default::default()
        };
        let vars: BTreeMap<String, String> = [("K".to_string(), "v".to_string())].into();
        let updated = store
            .update_script(&ns, &name, &mut |r| {
                r.vars = vars.clone();
                r.limits = limits;
                Ok(())
            })
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (updated.version, &updated.sha256),
            (first.version, &first.sha256)
        );
        assert_eq!((updated.vars, updated.limits), (vars.clone(), limits));
        let missing = Name::new("nope").unwrap();
        assert!(
            store
                .update_script(&ns, &missing, &mut |_| Ok(()))
                .unwrap()
                .is_none()
        );
        let refused = store.update_script(&ns, &name, &mut |r| {
            r.vars.clear();
            Err("no".into())
        });
        assert_eq!(refused.unwrap().unwrap().unwrap_err(), "no".into());
        assert_eq!(
            store.get_script(&ns, &name).unwrap().unwrap().vars,
            vars,
            "a refused change is not stored"
        );
    }

    fn script(content: &[u8]) -> NewScript {
        NewScript {
            content: content.to_vec(),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content)),
            tags: None,
            vars: None,
            limits: None,
            egress: None,
            artifact: Some(("engine".into(), b"artifact".to_vec())),
        }
    }

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    const ROOMY: KvQuota = KvQuota {
        max_keys: 1000,
        max_bytes: 1 << 20,
    };

    #[test]
    fn kv_quotas_count_keys_and_bytes_and_free_them_on_delete() {
        let (_dir, store) = open();
        let ns = name("ns");
        let app = name("app");
        store.create_namespace(&ns).unwrap();
        let quota = KvQuota {
            max_keys: 2,
            max_bytes: 100,
        };
        store.kv_set(&ns, &app, "a", &[0; 40], quota).unwrap();
        store.kv_set(&ns, &app, "b", &[0; 40], quota).unwrap();
        let err = store.kv_set(&ns, &app, "c", b"x", quota).unwrap_err();
        assert!(matches!(err, StoreError::KvQuota(_)), "{err}");
        assert!(err.to_string().starts_with("kv-limit: "), "{err}");
        // An overwrite stores its bytes beside the old ones (sled keeps
        // them until it cleans their segment): 82 live + 41 overwritten.
        let err = store.kv_set(&ns, &app, "a", &[1; 40], quota).unwrap_err();
        assert!(err.to_string().contains("100 bytes"), "{err}");
        assert_eq!(
            store.kv_get(&ns, &app, "a").unwrap(),
            Some(vec![0; 40]),
            "refused writes change nothing"
        );
        // A delete is always allowed and frees a key, but its bytes stay
        // stored for the window.
        assert!(store.kv_delete(&ns, &app, "b").unwrap());
        store.kv_set(&ns, &app, "c", b"x", quota).unwrap();
        let err = store.kv_set(&ns, &app, "c", &[2; 20], quota).unwrap_err();
        assert!(err.to_string().contains("overwritten or deleted"), "{err}");
        // Usage survives a reopen (it is stored, not recomputed).
        let usage = store.kv_usage_of(&kv_prefix(&ns, &app)).unwrap();
        assert_eq!((usage.keys, usage.bytes, usage.rewritten), (2, 43, 41));
    }

    #[test]
    fn rewritten_bytes_count_until_their_window_ends() {
        let t0 = 1_000_000;
        let usage = KvUsage::default().after_set(1, None, 99, t0);
        assert_eq!((usage.keys, usage.bytes, usage.stored()), (1, 100, 100));
        // Three overwrites of the same key: 100 live, 300 as stored.
        let mut usage = usage;
        for _ in 0..3 {
            usage = usage.after_set(1, Some(99), 99, t0 + 10);
        }
        assert_eq!((usage.keys, usage.bytes, usage.stored()), (1, 100, 400));
        let deleted = usage.after_delete(1, 99, t0 + 20);
        assert_eq!((deleted.keys, deleted.bytes, deleted.stored()), (0, 0, 400));
        // A window later the garbage is forgiven (sled had a window to
        // reclaim it); only what is live and new counts.
        let later = usage.after_set(1, Some(99), 9, t0 + KV_REWRITE_WINDOW_MS);
        assert_eq!((later.bytes, later.rewritten), (10, 100));
        assert_eq!(later.window_start_ms, t0 + KV_REWRITE_WINDOW_MS);
        // Old two-word records read as no rewrites yet.
        let mut old = [0u8; 16];
        old[..8].copy_from_slice(&3u64.to_be_bytes());
        old[8..].copy_from_slice(&30u64.to_be_bytes());
        assert_eq!(
            KvUsage::decode(&old),
            KvUsage {
                keys: 3,
                bytes: 30,
                ..KvUsage::default()
            }
        );
        assert_eq!(KvUsage::decode(&later.encode()), later);
    }

    /// The measured case, scaled down: re-setting the same keys over and
    /// over stops at the quota instead of growing the store without bound.
    #[test]
    fn rewriting_the_same_keys_cannot_grow_the_store_past_the_quota() {
        let (_dir, store) = open();
        let (ns, app) = (name("ns"), name("app"));
        store.create_namespace(&ns).unwrap();
        let quota = KvQuota {
            max_keys: 100,
            max_bytes: 1 << 20,
        };
        let value = vec![7u8; 64 << 10];
        let mut written = 0u64;
        'rounds: for _ in 0..10 {
            for key in ["k1", "k2", "k3", "k4"] {
                match store.kv_set(&ns, &app, key, &value, quota) {
                    Ok(()) => written += value.len() as u64,
                    Err(StoreError::KvQuota(_)) => break 'rounds,
                    Err(other) => panic!("{other}"),
                }
            }
        }
        // 256 KiB live; writes stop once 1 MiB has been stored.
        assert!(written <= 1 << 20, "{written}");
        assert!(written >= (1 << 20) - (64 << 10) - 64, "{written}");
    }

    #[test]
    fn deleting_a_script_or_namespace_takes_its_buckets_along() {
        let (_dir, store) = open();
        let ns = name("ns");
        store.create_namespace(&ns).unwrap();
        for app in ["app", "other"] {
            store.put_script(&ns, &name(app), script(b"\0asm")).unwrap();
            store.kv_set(&ns, &name(app), "k", b"v", ROOMY).unwrap();
        }
        assert!(store.delete_script(&ns, &name("app")).unwrap());
        assert_eq!(store.kv_get(&ns, &name("app"), "k").unwrap(), None);
        assert!(store.kv_get(&ns, &name("other"), "k").unwrap().is_some());
        // Re-created under the same name: an empty bucket.
        store
            .put_script(&ns, &name("app"), script(b"\0asm"))
            .unwrap();
        assert_eq!(
            store.kv_list(&ns, &name("app"), None, 10).unwrap().0.len(),
            0
        );
        store.delete_namespace(&ns, true).unwrap();
        store.create_namespace(&ns).unwrap();
        store
            .put_script(&ns, &name("other"), script(b"\0asm"))
            .unwrap();
        assert_eq!(store.kv_get(&ns, &name("other"), "k").unwrap(), None);
    }

    #[test]
    fn kv_pages_resume_after_the_last_key_and_stay_in_their_bucket() {
        let (_dir, store) = open();
        let ns = name("ns");
        store.create_namespace(&ns).unwrap();
        let (a, b) = (name("a"), name("ab"));
        // Keys that are prefixes of each other, and a neighbouring bucket.
        let keys = ["k", "k\u{1}", "ka", "kb", "l", "z"];
        for key in keys {
            store.kv_set(&ns, &a, key, b"v", ROOMY).unwrap();
        }
        store.kv_set(&ns, &b, "k", b"other", ROOMY).unwrap();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = store.kv_list(&ns, &a, after.as_deref(), 2).unwrap();
            assert!(page.len() <= 2);
            seen.extend(page.iter().cloned());
            after = page.last().cloned();
            if !more {
                break;
            }
        }
        assert_eq!(
            seen, keys,
            "every key once, in order, none of the other bucket"
        );
        let (rest, more) = store.kv_list(&ns, &a, Some("z"), 10).unwrap();
        assert!(rest.is_empty() && !more);
    }

    #[test]
    fn namespace_lifecycle() {
        let (_d, s) = open();
        let ns = name("ns");
        s.create_namespace(&ns).unwrap();
        assert!(matches!(
            s.create_namespace(&ns),
            Err(StoreError::NamespaceExists(_))
        ));
        s.ensure_namespace(&ns).unwrap();
        assert_eq!(s.list_namespaces().unwrap().len(), 1);
        s.put_script(&ns, &name("a"), script(b"one")).unwrap();
        assert!(matches!(
            s.delete_namespace(&ns, false),
            Err(StoreError::NamespaceNotEmpty { scripts: 1, .. })
        ));
        assert_eq!(s.delete_namespace(&ns, true).unwrap(), vec![name("a")]);
        assert!(s.get_namespace(&ns).unwrap().is_none());
        assert!(s.list_scripts(&ns).unwrap().is_empty());
        assert!(s.blobs.is_empty() && s.blob_refs.is_empty() && s.artifacts.is_empty());
    }

    #[test]
    fn put_requires_namespace_and_stores_nothing_otherwise() {
        let (_d, s) = open();
        let err = s
            .put_script(&name("nope"), &name("a"), script(b"x"))
            .unwrap_err();
        assert!(matches!(err, StoreError::NamespaceNotFound(_)));
        assert!(s.blobs.is_empty() && s.scripts.is_empty() && s.artifacts.is_empty());
    }

    #[test]
    fn redeploy_bumps_version_and_shares_blobs() {
        let (_d, s) = open();
        let ns = name("ns");
        s.create_namespace(&ns).unwrap();
        let v1 = s.put_script(&ns, &name("a"), script(b"one")).unwrap();
        s.put_script(&ns, &name("b"), script(b"one")).unwrap();
        assert_eq!(s.blobs.len(), 1, "identical content is stored once");
        let v2 = s.put_script(&ns, &name("a"), script(b"two")).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(v2.created_ms, v1.created_ms);
        assert_eq!(s.script_content(&ns, &name("a")).unwrap().unwrap(), b"two");
        assert_eq!(s.script_content(&ns, &name("b")).unwrap().unwrap(), b"one");
        assert!(s.delete_script(&ns, &name("b")).unwrap());
        assert!(!s.delete_script(&ns, &name("b")).unwrap());
        assert_eq!(s.blobs.len(), 1, "content of deleted script is dropped");
        assert!(s.get_artifact(&v1.sha256, "engine").unwrap().is_none());
        assert!(s.get_artifact(&v2.sha256, "engine").unwrap().is_some());
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ns = name("ns");
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.create_namespace(&ns).unwrap();
            s.put_script(&ns, &name("a"), script(b"one")).unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        let rec = s.get_script(&ns, &name("a")).unwrap().unwrap();
        assert_eq!(
            s.get_artifact(&rec.sha256, "engine").unwrap().unwrap(),
            b"artifact"
        );
    }

    #[test]
    fn orphan_artifacts_are_swept_and_not_resurrected() {
        let (_d, s) = open();
        s.put_artifact("deadbeef", "engine", b"x").unwrap();
        assert!(
            s.artifacts.is_empty(),
            "artifact for unknown content is refused"
        );
        s.artifacts
            .insert("deadbeef/engine", b"x".as_slice())
            .unwrap();
        s.sweep_orphan_artifacts().unwrap();
        assert!(s.artifacts.is_empty());
    }
}
