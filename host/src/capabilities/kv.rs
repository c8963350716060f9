//! Key-value storage for guests: `wasi:keyvalue/store`, one bucket per
//! script, persisted in the namespace store.
//!
//! A guest opens its bucket with `store.open("default")`; any other
//! identifier is `no-such-store`, so a script can name no bucket but its
//! own. Keys are at most [`MAX_KEY_BYTES`] and values at most
//! [`MAX_VALUE_BYTES`]; a bigger write fails with an `other` error naming
//! the limit. `set` is durable when it returns. A bucket holds at most
//! `limits.kv_max_keys` keys and `limits.kv_max_mb` of keys and values; a
//! write past either fails inside the guest with `other("kv-limit: …")`. The admin API lists, reads
//! and deletes keys (`…/scripts/{name}/kv`); deleting a script deletes its
//! bucket, and an instance of a deleted script can no longer write (the
//! bucket is scoped by the script's generation). A value in flight (read from the store for the guest, or taken
//! from the guest to be stored) is charged to the instance's host-memory
//! budget while the host holds it; past the budget the guest traps with
//! `memory-limit`.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable, WasmList, WasmStr};

use super::{CallContext, Capability, CapabilityHost, HostParts};
use crate::base::Role;
use crate::base::limits::KvQuota;
use crate::base::records::KvBucket;
use crate::limits::HostMemory;
use crate::store::{KvStore, StoreError};

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
        imports: { default: async | trappable },
        require_store_data_send: true,
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wasi::keyvalue::store::{self, Error, KeyResponse};

/// Which bucket an invocation may open, and what it may hold.
#[derive(Clone)]
pub struct KvScope {
    store: Arc<dyn KvStore>,
    quota: KvQuota,
    bucket: KvBucket,
}

/// The host side of a `bucket` resource.
pub struct Bucket {
    scope: KvScope,
    /// Where the last `list-keys` page ended: (cursor, last key).
    last_page: Option<(u64, String)>,
}

/// The capability's per-instance state: the bucket this invocation may
/// open, if any (platform components have none).
#[derive(Clone, Default)]
pub struct KvState {
    /// The script's bucket.
    pub scope: Option<KvScope>,
    /// The instance's host-memory meter, charged for values in flight.
    pub memory: HostMemory,
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

impl Capability for KvState {
    fn for_call(cx: &CallContext<'_>) -> Self {
        Self {
            memory: cx.host_memory.clone(),
            scope: cx.worker.kv.clone().map(|bucket| KvScope {
                store: cx.services.kv.clone(),
                quota: cx.limits.kv,
                bucket,
            }),
        }
    }

    /// `wasi:keyvalue/store` for every role: a platform component links
    /// it too (so one built against it instantiates), but has no bucket.
    fn add_to_linker<T: CapabilityHost>(linker: &mut Linker<T>, _role: Role) -> anyhow::Result<()> {
        let view: fn(&mut T) -> KvView<'_> = view::<T>;
        store::add_to_linker::<T, Kv>(linker, view)
            .map_err(|e| anyhow::anyhow!("linking wasi:keyvalue: {e:#}"))?;
        linker.allow_shadowing(true);
        let shadowed = checked_set(linker);
        linker.allow_shadowing(false);
        shadowed.map_err(|e| anyhow::anyhow!("linking wasi:keyvalue set: {e:#}"))
    }
}

/// `bucket.set`, with its key and value looked at in the guest's memory
/// and refused past their limits before the host copies them: a 64 MiB
/// value costs the host no 64 MiB buffer, nor the guest's budget.
fn checked_set<T: CapabilityHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut store_interface = linker.instance(STORE)?;
    store_interface.func_wrap_async(
        "[method]bucket.set",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this, key, value): (Resource<Bucket>, WasmStr, WasmList<u8>)| {
            Box::new(async move {
                if value.len() > MAX_VALUE_BYTES {
                    let too_big = format!(
                        "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                        value.len()
                    );
                    return Ok((Err(Error::Other(too_big)),));
                }
                let key = match key.to_str(&store) {
                    Ok(key) if key.len() <= MAX_KEY_BYTES => key.into_owned(),
                    Ok(key) => return Ok((check_key(&key).map(drop),)),
                    Err(e) => return Ok((Err(other(e)),)),
                };
                let bytes = value.as_le_slice(&store).to_vec();
                let mut view = view::<T>(store.data_mut());
                Ok((store::HostBucket::set(&mut view, this, key, bytes).await?,))
            })
        },
    )
}

/// The `wasi:keyvalue/store` instance Berth links.
const STORE: &str = "wasi:keyvalue/store@0.2.0-draft";

/// The KV capability's view of an instance.
fn view<T: CapabilityHost>(host: &mut T) -> KvView<'_> {
    let HostParts {
        capabilities,
        table,
        ..
    } = host.parts();
    KvView {
        state: &mut capabilities.kv,
        table,
    }
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

/// Runs store work on a blocking thread (a `set` flushes to disk), its
/// failure becoming the guest's `other` error.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> wasmtime::Result<Result<T, Error>> {
    Ok(crate::store::blocking(work).await.map_err(other))
}

impl store::Host for KvView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        let Some(scope) = self.state.scope.clone() else {
            return Ok(Err(Error::AccessDenied));
        };
        if identifier != "default" && !identifier.is_empty() {
            return Ok(Err(Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket {
            scope,
            last_page: None,
        })?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let s = self.table.get(&this)?.scope.clone();
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let value = blocking(move || s.store.kv_get(&s.bucket, &key)).await?;
        // Held until it is copied into the guest's memory.
        if let Ok(Some(value)) = &value {
            let _in_flight = self.state.memory.charge(value.len())?;
        }
        Ok(value)
    }

    async fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let s = self.table.get(&this)?.scope.clone();
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(Error::Other(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            ))));
        }
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let in_flight = self.state.memory.charge(key.len() + value.len())?;
        let stored = blocking(move || s.store.kv_set(&s.bucket, &key, &value, s.quota)).await;
        drop(in_flight);
        stored
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let s = self.table.get(&this)?.scope.clone();
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        blocking(move || s.store.kv_delete(&s.bucket, &key).map(|_| ())).await
    }

    async fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let s = self.table.get(&this)?.scope.clone();
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        blocking(move || s.store.kv_get(&s.bucket, &key).map(|v| v.is_some())).await
    }

    async fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let bucket = self.table.get(&this)?;
        let s = bucket.scope.clone();
        // The cursor is the number of keys already returned. The bucket
        // remembers where its last page ended, so following the cursor
        // resumes after that key instead of rescanning from the start.
        let skip = cursor.unwrap_or(0);
        let resume = match (&bucket.last_page, cursor) {
            (_, None) => Some(None),
            (Some((position, last)), Some(c)) if *position == c => Some(Some(last.clone())),
            _ => None,
        };
        let listed = match resume {
            Some(after) => {
                blocking(move || s.store.kv_list(&s.bucket, after.as_deref(), PAGE)).await?
            }
            // A cursor this bucket did not hand out: bounded by the key
            // quota, but a rescan.
            None => {
                let skip = skip as usize;
                blocking(move || {
                    s.store
                        .kv_list(&s.bucket, None, skip + PAGE)
                        .map(|(keys, more)| (keys.into_iter().skip(skip).collect(), more))
                })
                .await?
            }
        };
        let (page, more): (Vec<String>, bool) = match listed {
            Ok(listed) => listed,
            Err(e) => return Ok(Err(e)),
        };
        let position = skip + page.len() as u64;
        let bucket = self.table.get_mut(&this)?;
        bucket.last_page = page.last().map(|last| (position, last.clone()));
        let cursor = more.then_some(position);
        Ok(Ok(KeyResponse { keys: page, cursor }))
    }

    async fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
