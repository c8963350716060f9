//! Guest KV (`wasi:keyvalue`) in the cluster's `<prefix>-kv` bucket,
//! shared by every host.
//!
//! Each script's bucket is a key range (`keys.rs`), scoped by the script's
//! generation so a re-created script never inherits old keys, and a write
//! to a generation that is no longer the script's is refused. Quotas
//! follow the one rule of [`crate::store::kv_usage`], kept in a usage record
//! per bucket, updated by compare-and-set *before* the value is written;
//! the value is then written only if it is still the revision the usage
//! counted (else the reservation is given back and the write retried), and
//! a delete removes only the revision it read. So two hosts writing or
//! deleting at once cannot both pass the quota nor both subtract, and a
//! crash between the two writes can only over-count (the bucket looks
//! fuller than it is), never let a tenant past its quota. The bucket keeps
//! one revision per key, so bytes stored are bytes live.
//! Deleting a script or namespace purges its range from the stream in one
//! call.

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt;

use super::{CAS_ROUNDS, Inner, NatsStore, keys};
use crate::base::limits::KvQuota;
use crate::store::kv_usage::{KvUsage, Rewrites};
use crate::store::{Catalog, KvBucket, KvStore, StoreError, StoreResult, now_ms};

/// The `max_payload` below which the servers refuse the largest guest
/// values (1 MiB plus key and headers) and big script records.
pub(super) const NEEDED_PAYLOAD: usize = 2 << 20;

/// NATS keeps one revision per key: a replaced value is gone at once.
const REWRITES: Rewrites = Rewrites::Dropped;

/// A value's size and revision, as read before a revision-checked write.
struct Stored {
    len: usize,
    revision: u64,
}

impl NatsStore {
    /// Refuses a write to a bucket that is not its script's current one
    /// (as this host's mirror of the catalog knows it).
    fn current(&self, bucket: &KvBucket) -> StoreResult<()> {
        match self.get_script(&bucket.namespace, &bucket.script)? {
            Some(record) if record.created_ms == bucket.generation => Ok(()),
            _ => Err(StoreError::BucketGone {
                namespace: bucket.namespace.clone(),
                script: bucket.script.clone(),
            }),
        }
    }

    /// Purges every guest KV message matching `filter` (a subject pattern
    /// inside the bucket).
    pub(super) fn purge_guest_kv(&self, filter: String) -> StoreResult<()> {
        let inner = self.inner.clone();
        self.run(async move {
            let subject = format!("{}{filter}", inner.guest_kv.prefix);
            inner
                .guest_kv
                .stream
                .purge()
                .filter(subject)
                .await
                .map(|_| ())
                .map_err(|e| inner.failure("purging guest KV", e))
        })
    }
}

impl Inner {
    /// A bucket's usage and the revision to compare-and-set against.
    async fn usage(&self, key: &str) -> StoreResult<(KvUsage, Option<u64>)> {
        let entry = self
            .guest_kv
            .entry(key.to_owned())
            .await
            .map_err(|e| self.failure("reading KV usage", e))?;
        Ok(match entry {
            Some(e) if e.operation == Operation::Put => (
                serde_json::from_slice(&e.value).map_err(|err| StoreError::Corrupt {
                    key: key.to_owned(),
                    message: err.to_string(),
                })?,
                Some(e.revision),
            ),
            Some(e) => (KvUsage::default(), Some(e.revision)),
            None => (KvUsage::default(), None),
        })
    }

    /// A value's size and revision, if it is present.
    async fn stored(&self, key: &str) -> StoreResult<Option<Stored>> {
        let entry = self
            .guest_kv
            .entry(key.to_owned())
            .await
            .map_err(|e| self.failure("reading KV", e))?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| Stored {
                len: e.value.len(),
                revision: e.revision,
            }))
    }

    /// Writes `bytes` under `key` if its revision is still `revision`
    /// (`None`: if it has none); `false` when another writer came first.
    async fn put_if(&self, key: &str, bytes: Bytes, revision: Option<u64>) -> StoreResult<bool> {
        let result = match revision {
            Some(revision) => self
                .guest_kv
                .update(key, bytes, revision)
                .await
                .map_err(|e| {
                    (
                        e.kind() == UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
            None => self.guest_kv.create(key, bytes).await.map_err(|e| {
                (
                    e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists,
                    e.to_string(),
                )
            }),
        };
        match result {
            Ok(_) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, message)) => Err(self.failure("writing KV", message)),
        }
    }

    /// Changes a bucket's usage with `change` by compare-and-set, retrying
    /// while other writers come first; `change` may refuse.
    async fn adjust_usage(
        &self,
        usage_key: &str,
        change: impl Fn(KvUsage) -> StoreResult<KvUsage>,
    ) -> StoreResult<()> {
        for _ in 0..CAS_ROUNDS {
            let (usage, revision) = self.usage(usage_key).await?;
            let next = change(usage)?;
            let bytes = Bytes::from(serde_json::to_vec(&next).expect("usage serializes"));
            if self.put_if(usage_key, bytes, revision).await? {
                return Ok(());
            }
        }
        Err(StoreError::Conflict(usage_key.to_owned()))
    }

    /// One attempt at a quota-checked write: reserve the usage, then write
    /// the value only if it is still the one the reservation counted;
    /// `false` (with the reservation given back) when it changed meanwhile.
    async fn try_set(
        &self,
        (stored, usage_key): (&str, &str),
        key_len: usize,
        value: &Bytes,
        quota: KvQuota,
    ) -> StoreResult<bool> {
        let old = self.stored(stored).await?;
        let old_len = old.as_ref().map(|o| o.len);
        let now = now_ms();
        let reserved = self
            .adjust_usage(usage_key, |usage| {
                let next = usage.after_set(key_len, old_len, value.len(), now, REWRITES);
                next.check(&usage, quota).map(|()| next)
            })
            .await;
        match reserved {
            // Refused as a new key, but another writer has created it
            // meanwhile (its reservation was what filled the bucket): try
            // again as the overwrite this now is.
            Err(StoreError::KvQuota(_))
                if old.is_none() && self.stored(stored).await?.is_some() =>
            {
                return Ok(false);
            }
            other => other?,
        }
        if self
            .put_if(stored, value.clone(), old.as_ref().map(|o| o.revision))
            .await?
        {
            return Ok(true);
        }
        // Another write of this key came first: give back what this one
        // counted (a crash here over-counts, never under-counts).
        self.adjust_usage(usage_key, |usage| {
            let mut back = usage;
            back.bytes = back.bytes.saturating_sub((key_len + value.len()) as u64);
            match old_len {
                Some(old) => back.bytes += (key_len + old) as u64,
                None => back.keys = back.keys.saturating_sub(1),
            }
            Ok(back)
        })
        .await?;
        Ok(false)
    }
}

impl KvStore for NatsStore {
    fn kv_get(&self, bucket: &KvBucket, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let stored = keys::kv_value(bucket, key);
        let inner = self.inner.clone();
        self.run(async move {
            inner
                .guest_kv
                .get(stored)
                .await
                .map(|v| v.map(|b| b.to_vec()))
                .map_err(|e| inner.failure("reading KV", e))
        })
    }

    fn kv_set(
        &self,
        bucket: &KvBucket,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> StoreResult<()> {
        self.writable()?;
        if value.len() + key.len() * 2 + 4096 > self.inner.max_payload {
            return Err(StoreError::KvQuota(format!(
                "a value of {} bytes is more than this cluster's NATS max_payload ({}) allows",
                value.len(),
                self.inner.max_payload
            )));
        }
        self.current(bucket)?;
        let stored = keys::kv_value(bucket, key);
        let usage_key = keys::kv_usage(bucket);
        let inner = self.inner.clone();
        let (key_len, value) = (key.len(), Bytes::copy_from_slice(value));
        self.run(async move {
            for _ in 0..CAS_ROUNDS {
                if inner
                    .try_set((&stored, &usage_key), key_len, &value, quota)
                    .await?
                {
                    return Ok(());
                }
            }
            Err(StoreError::Conflict(stored))
        })
    }

    fn kv_delete(&self, bucket: &KvBucket, key: &str) -> StoreResult<bool> {
        self.writable()?;
        let stored = keys::kv_value(bucket, key);
        let usage_key = keys::kv_usage(bucket);
        let inner = self.inner.clone();
        let key_len = key.len();
        self.run(async move {
            for _ in 0..CAS_ROUNDS {
                let Some(old) = inner.stored(&stored).await? else {
                    return Ok(false);
                };
                // Only the delete that removes this very revision gives its
                // bytes back: two deletes of one key cannot both subtract.
                // The value goes first, so a crash before the usage update
                // over-counts, never under-counts.
                match inner
                    .guest_kv
                    .delete_expect_revision(&stored, Some(old.revision))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(inner.failure("deleting KV", e)),
                }
                let now = now_ms();
                inner
                    .adjust_usage(&usage_key, |usage| {
                        Ok(usage.after_delete(key_len, old.len, now, REWRITES))
                    })
                    .await?;
                return Ok(true);
            }
            Err(StoreError::Conflict(stored))
        })
    }

    fn kv_list(
        &self,
        bucket: &KvBucket,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)> {
        let prefix = keys::kv_values_of(bucket);
        let inner = self.inner.clone();
        let after = after.map(str::to_owned);
        self.run(async move {
            let filter = format!("{}{prefix}>", inner.guest_kv.prefix);
            let consumer = inner
                .guest_kv
                .stream
                .create_consumer(OrderedConfig {
                    deliver_subject: inner.client.new_inbox(),
                    filter_subject: filter,
                    headers_only: true,
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    ..Default::default()
                })
                .await
                .map_err(|e| inner.failure("listing KV", e))?;
            let mut names = Vec::new();
            if consumer.cached_info().num_pending > 0 {
                let mut messages = consumer
                    .messages()
                    .await
                    .map_err(|e| inner.failure("listing KV", e))?;
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| inner.failure("listing KV", e))?;
                    let deleted = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("KV-Operation"))
                        .is_some();
                    let subject = message.subject.as_str();
                    let stored = subject
                        .strip_prefix(inner.guest_kv.prefix.as_str())
                        .unwrap_or("");
                    if !deleted && let Some(name) = keys::kv_key_from(&prefix, stored) {
                        names.push(name);
                    }
                    let pending = message.info().map(|i| i.pending).unwrap_or(0);
                    if pending == 0 {
                        break;
                    }
                }
            }
            names.sort();
            let start = match &after {
                Some(after) => names.partition_point(|n| n <= after),
                None => 0,
            };
            let page: Vec<String> = names[start..].iter().take(limit).cloned().collect();
            let more = names.len() - start > page.len();
            Ok((page, more))
        })
    }
}
