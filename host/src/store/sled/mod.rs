//! [`NamespaceStore`](crate::store::NamespaceStore) on an embedded sled database.
//!
//! Layout (one sled tree each):
//! - `namespaces`: `<ns>` → JSON [`NamespaceRecord`](crate::store::NamespaceRecord)
//! - `scripts`: `<ns>/<script>` → JSON [`ScriptRecord`] (names cannot contain `/`)
//! - `blobs`: `<sha256>` → component bytes, shared by every script with that content
//! - `blob_refs`: `<sha256>` → big-endian u64 count of scripts using the blob
//! - `artifacts`: `<sha256>/<engine-hash>` → the host's precompiled artifact
//! - `hostnames`: `<ns>/<hostname>` → script name
//! - `asset_owners`: `<ns>\0<sha256>` → empty: the namespace uploaded it
//! - `kv_buckets`: `<ns>/<script>\0<generation, 8 bytes BE><key>` → value
//! - `kv_bucket_usage`: `<ns>/<script>\0<generation>` → [`KvUsage`](crate::store::kv_usage::KvUsage)
//!
//! One file per area trait: [`catalog`], [`blobs`], [`hostnames`], [`kv`].
//!
//! Each mutation is one multi-tree sled transaction followed by a flush, so
//! it is atomic and durable before it returns. Mutations are additionally
//! serialized by a mutex: they are rare (admin calls) and some need a scan
//! plus a transaction to be atomic as a whole (deleting a namespace).
//! Artifacts of a blob that lost its last reference are swept after the
//! transaction, and again at start-up in case a crash came in between.

mod blobs;
mod catalog;
mod hostnames;
mod kv;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Mutex;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::seal::Sealer;
use super::{ScriptRecord, StoreError, StoreResult};
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
    /// `hostnames` in memory: what the router reads per request.
    hostname_table: hostnames::HostnameTable,
    kv: sled::Tree,
    kv_usage: sled::Tree,
    asset_owners: sled::Tree,
    /// Where `kv`'s keys lived before buckets were scoped by generation;
    /// emptied into `kv` at open ([`SledStore::migrate_kv`]).
    legacy_kv: sled::Tree,
    legacy_kv_usage: sled::Tree,
    write_lock: Mutex<()>,
    sealer: Option<Sealer>,
}

/// How long bytes a bucket overwrote or deleted keep counting against its
/// byte quota: sled keeps them on disk until its segment cleaner rewrites
/// their segment, so they are stored even though no key reaches them. A
/// bucket can thus leave at most its quota of such garbage per window,
/// however often it rewrites the same keys.
pub const KV_REWRITE_WINDOW_MS: u64 = 60_000;

/// Key of an asset-ownership mark: `ns\0sha256` — the namespace uploaded
/// that content as an asset, so its manifests may name it.
fn owner_key(namespace: &Name, sha256: &str) -> Vec<u8> {
    let mut key = namespace.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(sha256.as_bytes());
    key
}

/// The prefix of every KV bucket a script ever had: `ns/script\0`. The
/// NUL cannot occur in names, so one script's prefix never covers
/// another's keys.
fn script_kv_prefix(namespace: &Name, script: &Name) -> Vec<u8> {
    format!("{namespace}/{script}\0").into_bytes()
}

/// The prefix of one bucket's keys, and its usage key:
/// `ns/script\0<generation, 8 bytes big-endian>`.
fn bucket_prefix(bucket: &super::KvBucket) -> Vec<u8> {
    let mut prefix = script_kv_prefix(&bucket.namespace, &bucket.script);
    prefix.extend_from_slice(&bucket.generation.to_be_bytes());
    prefix
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
    /// secrets sealed by `sealer` (see the store's `seal` module).
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
        let hostnames = db.open_tree("hostnames")?;
        let store = Self {
            namespaces: db.open_tree("namespaces")?,
            scripts: db.open_tree("scripts")?,
            blobs: db.open_tree("blobs")?,
            blob_refs: db.open_tree("blob_refs")?,
            artifacts: db.open_tree("artifacts")?,
            hostname_table: hostnames::HostnameTable::load(&hostnames)?,
            hostnames,
            kv: db.open_tree("kv_buckets")?,
            kv_usage: db.open_tree("kv_bucket_usage")?,
            asset_owners: db.open_tree("asset_owners")?,
            legacy_kv: db.open_tree("kv")?,
            legacy_kv_usage: db.open_tree("kv_usage")?,
            db,
            write_lock: Mutex::new(()),
            sealer: None,
        };
        store.sweep_orphan_artifacts()?;
        store.migrate_kv()?;
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

    /// Every key under `prefix` of `tree`, read under the write lock
    /// before a transaction that deletes them.
    fn keys_under(tree: &sled::Tree, prefix: &[u8]) -> StoreResult<Vec<sled::IVec>> {
        Ok(tree.scan_prefix(prefix).keys().collect::<Result<_, _>>()?)
    }

    /// The generation of a script's current bucket, without decoding (or
    /// unsealing) the rest of its record; `None` if there is no script.
    fn generation(&self, namespace: &Name, script: &Name) -> StoreResult<Option<u64>> {
        #[derive(serde::Deserialize)]
        struct Created {
            created_ms: u64,
        }
        let key = script_key(namespace, script);
        self.scripts
            .get(key.as_bytes())?
            .map(|bytes| decode::<Created>(key.as_bytes(), &bytes).map(|c| c.created_ms))
            .transpose()
    }

    /// Moves buckets written before they were scoped by generation (keys
    /// `ns/script\0key` in the `kv` tree) to the current layout, each under
    /// its script's generation; a bucket whose script is gone is dropped.
    /// Key by key in one transaction each, so an interrupted migration
    /// resumes where it stopped at the next open.
    fn migrate_kv(&self) -> StoreResult<()> {
        let mut moved = 0usize;
        for entry in self.legacy_kv.iter() {
            let (old_key, value) = entry?;
            let Some(split) = old_key.iter().position(|b| *b == 0) else {
                self.legacy_kv.remove(&old_key)?;
                continue;
            };
            let script = String::from_utf8_lossy(&old_key[..split]).into_owned();
            let generation = match script.split_once('/') {
                Some((ns, name)) => match (Name::new(ns), Name::new(name)) {
                    (Ok(ns), Ok(name)) => self.generation(&ns, &name)?,
                    _ => None,
                },
                None => None,
            };
            let mut new_key = old_key[..=split].to_vec();
            let write = generation.map(|g| {
                new_key.extend_from_slice(&g.to_be_bytes());
                new_key.extend_from_slice(&old_key[split + 1..]);
                new_key
            });
            (&self.legacy_kv, &self.kv).transaction(|(legacy, kv)| {
                legacy.remove(&old_key)?;
                if let Some(new_key) = &write {
                    kv.insert(new_key.as_slice(), &value)?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })?;
            moved += 1;
        }
        // Usage records are recomputed from the moved keys.
        for entry in self.legacy_kv_usage.iter() {
            let (key, _) = entry?;
            self.legacy_kv_usage.remove(key)?;
        }
        if moved > 0 {
            tracing::info!(
                keys = moved,
                "moved KV buckets to the per-generation layout"
            );
            self.flush()?;
        }
        Ok(())
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
