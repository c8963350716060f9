//! A script's KV bucket from the outside (the operator's view): list,
//! read, write and delete keys under the same quota as the guest.

use super::{Ops, OpsError, OpsResult};
use crate::base::Invalid;
use crate::base::listing::MAX_PAGE;
use crate::base::names::Name;
use crate::capabilities::kv::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

impl Ops {
    /// Up to `limit` keys after `cursor`, and whether more follow.
    pub async fn kv_keys(
        &self,
        ns: &Name,
        name: &Name,
        cursor: Option<String>,
        limit: usize,
    ) -> OpsResult<(Vec<String>, bool)> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}, got {limit}"
            ))
            .into());
        }
        let bucket = self.script(ns, name).await?.kv_bucket();
        self.with_store(move |store| Ok(store.kv_list(&bucket, cursor.as_deref(), limit)?))
            .await
    }

    /// A key's value.
    pub async fn kv_value(&self, ns: &Name, name: &Name, key: String) -> OpsResult<Vec<u8>> {
        let bucket = self.script(ns, name).await?.kv_bucket();
        self.with_store(move |store| {
            store.kv_get(&bucket, &key)?.ok_or(OpsError::NotFound {
                what: "key",
                name: key,
            })
        })
        .await
    }

    /// Sets a key, under the script's quota.
    pub async fn kv_put(
        &self,
        ns: &Name,
        name: &Name,
        key: String,
        value: Vec<u8>,
    ) -> OpsResult<()> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Invalid(format!("a key is 1 to {MAX_KEY_BYTES} bytes")).into());
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(Invalid(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            ))
            .into());
        }
        let record = self.script(ns, name).await?;
        let quota = self.runtime.kv_quota(&record.limits);
        let bucket = record.kv_bucket();
        self.with_store(move |store| Ok(store.kv_set(&bucket, &key, &value, quota)?))
            .await
    }

    /// Deletes a key.
    pub async fn kv_delete(&self, ns: &Name, name: &Name, key: String) -> OpsResult<()> {
        let bucket = self.script(ns, name).await?.kv_bucket();
        self.with_store(move |store| match store.kv_delete(&bucket, &key)? {
            true => Ok(()),
            false => Err(OpsError::NotFound {
                what: "key",
                name: key,
            }),
        })
        .await
    }
}
