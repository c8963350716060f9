//! Guest KV on sled: one key range per bucket (script generation), with
//! its usage record updated in the same transaction as every write.
//!
//! Writes run under the store's write lock, which deletions of scripts and
//! namespaces also take: a write checks that its bucket's generation is
//! still the script's, so once a script is deleted no instance of it can
//! add a key anywhere — not to its purged range, and not to the bucket of
//! a new script of the same name.

use sled::Transactional;
use sled::transaction::abort;

use super::{KV_REWRITE_WINDOW_MS, SledStore, bucket_prefix};
use crate::base::limits::KvQuota;
use crate::store::kv_usage::{KvUsage, Rewrites};
use crate::store::{KvBucket, KvStore, StoreError, StoreResult, now_ms};

/// Sled keeps the bytes a write replaces until it rewrites their segment.
const REWRITES: Rewrites = Rewrites::KeptFor {
    window_ms: KV_REWRITE_WINDOW_MS,
};

fn key_in(prefix: &[u8], key: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

impl SledStore {
    /// Refuses a write to a bucket that is not its script's current one.
    fn current(&self, bucket: &KvBucket) -> StoreResult<()> {
        match self.generation(&bucket.namespace, &bucket.script)? {
            Some(generation) if generation == bucket.generation => Ok(()),
            _ => Err(StoreError::BucketGone {
                namespace: bucket.namespace.clone(),
                script: bucket.script.clone(),
            }),
        }
    }

    /// A bucket's usage record.
    pub(super) fn kv_usage_of(&self, prefix: &[u8]) -> StoreResult<KvUsage> {
        Ok(self
            .kv_usage
            .get(prefix)?
            .map_or_else(KvUsage::default, |bytes| KvUsage::decode(&bytes)))
    }
}

impl KvStore for SledStore {
    fn kv_get(&self, bucket: &KvBucket, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = key_in(&bucket_prefix(bucket), key);
        Ok(self.kv.get(k)?.map(|v| v.to_vec()))
    }

    fn kv_set(
        &self,
        bucket: &KvBucket,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> StoreResult<()> {
        let _guard = self.lock();
        self.current(bucket)?;
        let prefix = bucket_prefix(bucket);
        let usage = self.kv_usage_of(&prefix)?;
        let k = key_in(&prefix, key);
        let now = now_ms();
        (&self.kv, &self.kv_usage).transaction(|(kv, usage_tree)| {
            let old = kv.get(&k)?;
            let next = usage.after_set(
                key.len(),
                old.as_ref().map(|o| o.len()),
                value.len(),
                now,
                REWRITES,
            );
            if let Err(refusal) = next.check(&usage, quota) {
                return abort(refusal);
            }
            kv.insert(k.as_slice(), value)?;
            usage_tree.insert(prefix.as_slice(), next.encode().as_slice())?;
            Ok(())
        })?;
        self.flush()
    }

    fn kv_delete(&self, bucket: &KvBucket, key: &str) -> StoreResult<bool> {
        let _guard = self.lock();
        let prefix = bucket_prefix(bucket);
        let usage = self.kv_usage_of(&prefix)?;
        let k = key_in(&prefix, key);
        let now = now_ms();
        let removed = (&self.kv, &self.kv_usage).transaction(|(kv, usage_tree)| {
            let Some(old) = kv.remove(k.as_slice())? else {
                return Ok(false);
            };
            let next = usage.after_delete(key.len(), old.len(), now, REWRITES);
            usage_tree.insert(prefix.as_slice(), next.encode().as_slice())?;
            Ok(true)
        })?;
        if removed {
            self.flush()?;
        }
        Ok(removed)
    }

    fn kv_list(
        &self,
        bucket: &KvBucket,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)> {
        let prefix = bucket_prefix(bucket);
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
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok((keys, more))
    }
}
