//! Key-value storage for guests: `wasi:keyvalue/store`, one bucket per
//! script, persisted in the namespace store.
//!
//! A guest opens its bucket with `store.open("default")`; any other
//! identifier is `no-such-store`, so a script can name no bucket but its
//! own. Keys are at most [`MAX_KEY_BYTES`] and values at most
//! [`MAX_VALUE_BYTES`]; a bigger write fails with an `other` error naming
//! the limit. `set` is durable when it returns. The admin API lists, reads
//! and deletes keys (`…/scripts/{name}/kv`); deleting a script deletes its
//! bucket.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::base::names::Name;
use crate::store::KvStore;

/// Longest key, bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Keys per `list-keys` page.
const PAGE: usize = 1000;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "berth:platform/kv-client",
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wasi::keyvalue::store::{self, Error, KeyResponse};

/// Which bucket an invocation may open.
#[derive(Clone)]
pub struct KvScope {
    store: Arc<dyn KvStore>,
    namespace: Name,
    script: Name,
}

impl KvScope {
    /// The bucket of `namespace/script`.
    pub fn new(store: Arc<dyn KvStore>, namespace: Name, script: Name) -> Self {
        Self {
            store,
            namespace,
            script,
        }
    }
}

/// The host side of a `bucket` resource.
pub struct Bucket {
    scope: KvScope,
}

/// The capability's per-instance state: the bucket this invocation may
/// open, if any (platform components have none).
#[derive(Clone, Default)]
pub struct KvState {
    /// The script's bucket.
    pub scope: Option<KvScope>,
}

/// What the host functions see: the capability's state and the instance's
/// resource table.
pub struct KvView<'a> {
    /// This capability's state.
    pub state: &'a mut KvState,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
}

struct Kv;

impl HasData for Kv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue/store` to a linker whose store data hands out a
/// [`KvView`] through `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> anyhow::Result<()> {
    store::add_to_linker::<T, Kv>(linker, view)
        .map_err(|e| anyhow::anyhow!("linking wasi:keyvalue: {e:#}"))
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Other(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

impl store::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        let Some(scope) = self.state.scope.clone() else {
            return Ok(Err(Error::AccessDenied));
        };
        if identifier != "default" && !identifier.is_empty() {
            return Ok(Err(Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket { scope })?))
    }
}

impl store::HostBucket for KvView<'_> {
    fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let s = &self.table.get(&this)?.scope;
        Ok(check_key(&key)
            .and_then(|()| s.store.kv_get(&s.namespace, &s.script, &key).map_err(other)))
    }

    fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let s = &self.table.get(&this)?.scope;
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(Error::Other(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            ))));
        }
        Ok(check_key(&key).and_then(|()| {
            s.store
                .kv_set(&s.namespace, &s.script, &key, &value)
                .map_err(other)
        }))
    }

    fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let s = &self.table.get(&this)?.scope;
        Ok(check_key(&key).and_then(|()| {
            s.store
                .kv_delete(&s.namespace, &s.script, &key)
                .map(|_| ())
                .map_err(other)
        }))
    }

    fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let s = &self.table.get(&this)?.scope;
        Ok(check_key(&key).and_then(|()| {
            s.store
                .kv_get(&s.namespace, &s.script, &key)
                .map(|v| v.is_some())
                .map_err(other)
        }))
    }

    fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let s = &self.table.get(&this)?.scope;
        // The cursor is the number of keys already returned.
        let skip = cursor.unwrap_or(0) as usize;
        let listed = s
            .store
            .kv_list(&s.namespace, &s.script, None, skip + PAGE)
            .map_err(other);
        Ok(listed.map(|(keys, more)| {
            let page: Vec<String> = keys.into_iter().skip(skip).collect();
            let cursor = more.then(|| (skip + page.len()) as u64);
            KeyResponse { keys: page, cursor }
        }))
    }

    fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
