//! Guest KV (`wasi:keyvalue`) in the cluster's `<prefix>-kv` bucket,
//! shared by every host.
//!
//! Each script's bucket is a key range (`keys.rs`), scoped by the script's
//! generation so a re-created script never inherits old keys. Quotas are
//! kept in a usage record per bucket, updated by compare-and-set *before*
//! the value is written: two hosts writing at once cannot both pass the
//! quota, and a crash between the two writes can only over-count (the
//! bucket looks fuller than it is), never let a tenant past its quota. The
//! bucket keeps one revision per key, so bytes stored are bytes live.
//! Deleting a script or namespace purges its range from the stream in one
//! call.

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{CAS_ROUNDS, Inner, NatsStore, keys};
use crate::base::names::Name;
use crate::store::{Catalog, KvQuota, KvStore, StoreError, StoreResult};

/// The `max_payload` below which the servers refuse the largest guest
/// values (1 MiB plus key and headers) and big script records.
pub(super) const NEEDED_PAYLOAD: usize = 2 << 20;

/// Keys and bytes a bucket holds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Usage {
    keys: u64,
    bytes: u64,
}

impl NatsStore {
    /// The generation of a script's bucket (its `created_ms`; 0 for a
    /// script the catalog does not know).
    fn generation(&self, namespace: &Name, script: &Name) -> StoreResult<u64> {
        Ok(self
            .get_script(namespace, script)?
            .map_or(0, |record| record.created_ms))
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
    async fn usage(&self, key: &str) -> StoreResult<(Usage, Option<u64>)> {
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
            Some(e) => (Usage::default(), Some(e.revision)),
            None => (Usage::default(), None),
        })
    }

    /// The stored size of a value, if present.
    async fn value_len(&self, key: &str) -> StoreResult<Option<usize>> {
        let entry = self
            .guest_kv
            .entry(key.to_owned())
            .await
            .map_err(|e| self.failure("reading KV", e))?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| e.value.len()))
    }

    /// Writes a usage record if its revision is still `revision`; `false`
    /// when another writer came first.
    async fn set_usage(&self, key: &str, usage: Usage, revision: Option<u64>) -> StoreResult<bool> {
        let bytes = Bytes::from(serde_json::to_vec(&usage).expect("usage serializes"));
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
            Err((false, message)) => Err(self.failure("writing KV usage", message)),
        }
    }
}

impl KvStore for NatsStore {
    fn kv_get(&self, namespace: &Name, script: &Name, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let stored = keys::kv_value(namespace, script, self.generation(namespace, script)?, key);
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
        namespace: &Name,
        script: &Name,
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
        let generation = self.generation(namespace, script)?;
        let stored = keys::kv_value(namespace, script, generation, key);
        let usage_key = keys::kv_usage(namespace, script, generation);
        let inner = self.inner.clone();
        let (key_len, value) = (key.len() as u64, Bytes::copy_from_slice(value));
        self.run(async move {
            let mut reserved = false;
            for _ in 0..CAS_ROUNDS {
                let (usage, revision) = inner.usage(&usage_key).await?;
                let old = inner.value_len(&stored).await?;
                let mut next = usage;
                match old {
                    Some(old) => next.bytes = next.bytes.saturating_sub(key_len + old as u64),
                    None => next.keys += 1,
                }
                next.bytes += key_len + value.len() as u64;
                if next.keys > quota.max_keys {
                    return Err(StoreError::KvQuota(format!(
                        "the bucket may hold {} keys",
                        quota.max_keys
                    )));
                }
                if next.bytes > quota.max_bytes && next.bytes > usage.bytes {
                    return Err(StoreError::KvQuota(format!(
                        "the bucket may hold {} bytes of keys and values; this write would make it {}",
                        quota.max_bytes, next.bytes
                    )));
                }
                if inner.set_usage(&usage_key, next, revision).await? {
                    reserved = true;
                    break;
                }
            }
            if !reserved {
                return Err(StoreError::Conflict(usage_key));
            }
            inner
                .guest_kv
                .put(&stored, value)
                .await
                .map(|_| ())
                .map_err(|e| inner.failure("writing KV", e))
        })
    }

    fn kv_delete(&self, namespace: &Name, script: &Name, key: &str) -> StoreResult<bool> {
        self.writable()?;
        let generation = self.generation(namespace, script)?;
        let stored = keys::kv_value(namespace, script, generation, key);
        let usage_key = keys::kv_usage(namespace, script, generation);
        let inner = self.inner.clone();
        let key_len = key.len() as u64;
        self.run(async move {
            let Some(old) = inner.value_len(&stored).await? else {
                return Ok(false);
            };
            // The value goes first: a crash before the usage update
            // over-counts, never under-counts.
            inner
                .guest_kv
                .delete(&stored)
                .await
                .map_err(|e| inner.failure("deleting KV", e))?;
            for _ in 0..CAS_ROUNDS {
                let (usage, revision) = inner.usage(&usage_key).await?;
                let next = Usage {
                    keys: usage.keys.saturating_sub(1),
                    bytes: usage.bytes.saturating_sub(key_len + old as u64),
                };
                if inner.set_usage(&usage_key, next, revision).await? {
                    return Ok(true);
                }
            }
            Err(StoreError::Conflict(usage_key))
        })
    }

    fn kv_list(
        &self,
        namespace: &Name,
        script: &Name,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)> {
        let prefix = keys::kv_values_of(namespace, script, self.generation(namespace, script)?);
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
