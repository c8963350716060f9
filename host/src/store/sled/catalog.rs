//! The catalog on sled: namespaces and scripts, each change one transaction
//! over every tree it touches (a script's blob references, its KV buckets).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, abort};

use super::{SledStore, decode, encode, release_blob, retain_blob, script_key, script_kv_prefix};
use crate::base::Invalid;
use crate::base::names::Name;
use crate::store::{
    Catalog, NamespaceRecord, NewScript, ScriptRecord, StoreError, StoreResult, next_script_record,
    now_ms,
};

impl Catalog for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

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
        let kv_keys = Self::keys_under(&self.kv, format!("{name}/").as_bytes())?;
        let usage_keys = Self::keys_under(&self.kv_usage, format!("{name}/").as_bytes())?;
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
            self.hostnames.remove(&key)?;
            if let Some((_, hostname)) = String::from_utf8_lossy(&key).split_once('/') {
                self.hostname_table.remove(name.as_str(), hostname);
            }
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
        // Every generation's bucket: none can be written any more (writes
        // check the generation under this lock).
        let prefix = script_kv_prefix(namespace, name);
        let kv_keys = Self::keys_under(&self.kv, &prefix)?;
        let usage_keys = Self::keys_under(&self.kv_usage, &prefix)?;
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
                for key in &usage_keys {
                    kv_usage.remove(key)?;
                }
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
