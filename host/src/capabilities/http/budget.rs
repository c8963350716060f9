//! What `wasi:http` holds for a guest, charged to its host-memory budget
//! ([`crate::limits::host_memory`]).
//!
//! Wasmtime's implementation buffers what a guest writes into an outgoing
//! body (up to two chunks of 1 MiB per body) until the body is sent or
//! dropped, and lets a guest open any number of bodies: the buffered bytes
//! are host memory the guest's `memory_mb` never sees. This module replaces
//! two groups of `wasi:http/types` functions in the linker (Wasmtime's own
//! implementation still does the work):
//!
//! - `outgoing-body.write` hands the guest a [`ChargedStream`]: each chunk
//!   written is charged before it enters the body's buffer, and the charge
//!   travels *inside* the chunk (`Bytes::from_owner`), so it is given back
//!   exactly when the host drops the bytes — sent on a socket, read by
//!   another worker, or dropped with the guest's handles. A write past the
//!   budget traps, and the invocation reports `memory-limit`.
//! - `outgoing-request.set-method`, `set-path-with-query` and
//!   `set-authority` refuse values longer than their caps (the guest sees
//!   the call fail), so no table entry holds more than a table slot stands
//!   for;
//! - `fields.append`, `set`, `from-list` and `clone` charge the header
//!   bytes a guest adds (or copies) to the budget before Wasmtime stores
//!   them; each map is capped at [`FIELDS_MAX_BYTES`] through the
//!   `WasiHttpCtx`.

use bytes::Bytes;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable, WasmStr};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::bindings::http::types::{
    HeaderError, Host as TypesHost, HostFields, HostOutgoingRequest as _, Method,
};
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

use crate::base::BoxFuture;
use crate::capabilities::{CapabilityHost, HostParts};
use crate::limits::host_memory::{
    AUTHORITY_MAX_BYTES, Charge, HostMemory, METHOD_MAX_BYTES, PATH_MAX_BYTES,
};

#[cfg(doc)]
use crate::limits::host_memory::FIELDS_MAX_BYTES;

/// The `wasi:http/types` instance these functions replace (Wasmtime 48's;
/// guests importing any `0.2.x` resolve to it).
const TYPES: &str = "wasi:http/types@0.2.12";

/// Replaces the functions named in the module docs; call after
/// `wasmtime_wasi_http`'s own `add_to_linker`.
pub fn add_to_linker<T: CapabilityHost>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let result = shadow(linker);
    linker.allow_shadowing(false);
    result.map_err(|e| anyhow::anyhow!("linking charged wasi:http functions: {e:#}"))
}

fn shadow<T: CapabilityHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]outgoing-body.write",
        |mut store: StoreContextMut<'_, T>, (body,): (Resource<HostOutgoingBody>,)| {
            let meter = store.data_mut().parts().host_memory.clone();
            let table: &mut ResourceTable = store.data_mut().http().table;
            let stream = table.get_mut(&body)?.take_output_stream();
            let result = match stream {
                Some(inner) => {
                    let charged: DynOutputStream = Box::new(ChargedStream::new(inner, meter));
                    Ok(table.push_child(charged, &body)?)
                }
                None => Err(()),
            };
            Ok((result,))
        },
    )?;
    shadow_fields(&mut types)?;
    types.func_wrap(
        "[method]outgoing-request.set-method",
        |mut store: StoreContextMut<'_, T>,
         (request, method): (Resource<HostOutgoingRequest>, Method)| {
            if matches!(&method, Method::Other(m) if m.len() > METHOD_MAX_BYTES) {
                return Ok((Err(()),));
            }
            Ok((store.data_mut().http().set_method(request, method)?,))
        },
    )?;
    // Path and authority are looked at in the guest's memory and refused
    // past their caps before the host copies anything: a 64 MiB path costs
    // the host no 64 MiB string.
    types.func_wrap(
        "[method]outgoing-request.set-path-with-query",
        |mut store: StoreContextMut<'_, T>,
         (request, path): (Resource<HostOutgoingRequest>, Option<WasmStr>)| {
            let Ok(path) = bounded(&store, path, PATH_MAX_BYTES) else {
                return Ok((Err(()),));
            };
            Ok((store.data_mut().http().set_path_with_query(request, path)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-authority",
        |mut store: StoreContextMut<'_, T>,
         (request, authority): (Resource<HostOutgoingRequest>, Option<WasmStr>)| {
            let Ok(authority) = bounded(&store, authority, AUTHORITY_MAX_BYTES) else {
                return Ok((Err(()),));
            };
            Ok((store.data_mut().http().set_authority(request, authority)?,))
        },
    )?;
    Ok(())
}

/// A string argument read in place from the guest's memory and copied
/// only if it is at most `max` bytes; `Err` past that (or not UTF-8).
fn bounded<T: 'static>(
    store: &StoreContextMut<'_, T>,
    text: Option<WasmStr>,
    max: usize,
) -> Result<Option<String>, ()> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.to_str(store) {
        Ok(text) if text.len() <= max => Ok(Some(text.into_owned())),
        _ => Err(()),
    }
}

/// Header maps: every byte a guest puts into one (`append`, `set`,
/// `from-list`, and a whole map it `clone`s) is charged to its host-memory
/// budget before Wasmtime stores it. A map the guest drops gives its bytes
/// back; one it hands over (into a request, a response, trailers) stays
/// charged until the call ends. So a map may be as large as Wasmtime's
/// per-map ceiling ([`FIELDS_MAX_BYTES`], 128 KiB: a proxy forwarding 100 KB
/// of cookies and adding a header), while however many maps a guest keeps
/// stay within its budget.
fn shadow_fields<T: CapabilityHost>(
    types: &mut wasmtime::component::LinkerInstance<'_, T>,
) -> wasmtime::Result<()> {
    types.resource(
        "fields",
        wasmtime::component::ResourceType::host::<FieldMap>(),
        |mut store: StoreContextMut<'_, T>, rep: u32| {
            store
                .data_mut()
                .parts()
                .capabilities
                .http
                .headers
                .dropped(rep);
            HostFields::drop(&mut store.data_mut().http(), Resource::new_own(rep))
        },
    )?;
    types.func_wrap(
        "[constructor]fields",
        |mut store: StoreContextMut<'_, T>, (): ()| {
            let fields = HostFields::new(&mut store.data_mut().http())?;
            store
                .data_mut()
                .parts()
                .capabilities
                .http
                .headers
                .created(fields.rep());
            Ok((fields,))
        },
    )?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: StoreContextMut<'_, T>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let bytes = entries.iter().map(|(n, v)| n.len() + v.len()).sum();
            let mut http = store.data_mut().http();
            let result = HostFields::from_list(&mut http, entries);
            let result = header_result(&mut http, result)?;
            if let Ok(fields) = &result {
                charge_new(&mut store, fields.rep(), bytes)?;
            }
            Ok((result,))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store: StoreContextMut<'_, T>, (fields,): (Resource<FieldMap>,)| {
            let bytes: usize = {
                let map = store.data_mut().http().table.get(&fields)?;
                map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum()
            };
            let copy = HostFields::clone(&mut store.data_mut().http(), fields)?;
            charge_new(&mut store, copy.rep(), bytes)?;
            Ok((copy,))
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: StoreContextMut<'_, T>,
         (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            charge(&mut store, fields.rep(), name.len() + value.len())?;
            let mut http = store.data_mut().http();
            let result = HostFields::append(&mut http, fields, name, value);
            Ok((header_result(&mut http, result)?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.set",
        |mut store: StoreContextMut<'_, T>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            let bytes = name.len() + values.iter().map(Vec::len).sum::<usize>();
            charge(&mut store, fields.rep(), bytes)?;
            let mut http = store.data_mut().http();
            let result = HostFields::set(&mut http, fields, name, values);
            Ok((header_result(&mut http, result)?,))
        },
    )?;
    Ok(())
}

/// A new map (handle `rep`) holding `bytes` of header content.
fn charge_new<T: CapabilityHost>(
    store: &mut StoreContextMut<'_, T>,
    rep: u32,
    bytes: usize,
) -> wasmtime::Result<()> {
    store
        .data_mut()
        .parts()
        .capabilities
        .http
        .headers
        .created(rep);
    charge(store, rep, bytes)
}

/// Charges `bytes` of header content to the map `rep`; past the budget the
/// guest traps (`memory-limit`).
fn charge<T: CapabilityHost>(
    store: &mut StoreContextMut<'_, T>,
    rep: u32,
    bytes: usize,
) -> wasmtime::Result<()> {
    let HostParts {
        capabilities,
        host_memory,
        ..
    } = store.data_mut().parts();
    if capabilities
        .http
        .headers
        .charge(rep, bytes, host_memory)
        .is_err()
    {
        // Refused again, this time marking the instance over its budget.
        host_memory.charge(bytes)?;
    }
    Ok(())
}

/// A header operation's result as the guest sees it: its error converted
/// to the WIT `header-error`, or a trap.
fn header_result<R>(
    http: &mut wasmtime_wasi_http::WasiHttpCtxView<'_>,
    result: Result<R, wasmtime_wasi_http::p2::HeaderError>,
) -> wasmtime::Result<Result<R, HeaderError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(TypesHost::convert_header_error(http, error)?)),
    }
}

/// What one call's header maps hold, by handle.
#[derive(Debug, Default)]
pub struct HeaderCharges {
    by_map: std::collections::HashMap<u32, Charge>,
    /// Maps handed over into requests, responses and trailers (their
    /// handles are gone without a drop): charged until the call ends.
    handed_over: Option<Charge>,
}

impl HeaderCharges {
    /// A map was created under handle `rep`: whatever a map that had the
    /// handle before still holds was handed over.
    fn created(&mut self, rep: u32) {
        if let Some(stale) = self.by_map.remove(&rep) {
            match &mut self.handed_over {
                Some(held) => held.absorb(stale),
                None => self.handed_over = Some(stale),
            }
        }
    }

    fn charge(
        &mut self,
        rep: u32,
        bytes: usize,
        meter: &HostMemory,
    ) -> Result<(), crate::limits::host_memory::HostMemoryExceeded> {
        self.by_map
            .entry(rep)
            .or_insert_with(|| meter.empty_charge())
            .try_grow(bytes)
    }

    /// The guest dropped map `rep`: its bytes come back.
    fn dropped(&mut self, rep: u32) {
        self.by_map.remove(&rep);
    }
}

/// Bytes that carry their charge: the budget gets them back when the last
/// reference to the chunk is dropped.
struct ChargedBytes {
    bytes: Bytes,
    _charge: Charge,
}

impl AsRef<[u8]> for ChargedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// An outgoing body's stream whose chunks are charged to the instance.
pub struct ChargedStream {
    inner: DynOutputStream,
    meter: HostMemory,
}

impl ChargedStream {
    /// Wraps `inner`, charging `meter`.
    pub fn new(inner: DynOutputStream, meter: HostMemory) -> Self {
        Self { inner, meter }
    }
}

impl Pollable for ChargedStream {
    fn ready<'a, 'b>(&'a mut self) -> BoxFuture<'b, ()>
    where
        'a: 'b,
        Self: 'b,
    {
        self.inner.ready()
    }
}

impl OutputStream for ChargedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return self.inner.write(bytes);
        }
        let charge = self
            .meter
            .charge(bytes.len())
            .map_err(|exceeded| StreamError::Trap(exceeded.into()))?;
        self.inner.write(Bytes::from_owner(ChargedBytes {
            bytes,
            _charge: charge,
        }))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    fn cancel<'a, 'b>(&'a mut self) -> BoxFuture<'b, ()>
    where
        'a: 'b,
        Self: 'b,
    {
        self.inner.cancel()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A stream that keeps what is written, like a body's buffer; the test
    /// holds the other end.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<Bytes>>>);

    impl Pollable for Buffer {
        fn ready<'a, 'b>(&'a mut self) -> BoxFuture<'b, ()>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(async {})
        }
    }

    impl OutputStream for Buffer {
        fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
            self.0.lock().unwrap().push(bytes);
            Ok(())
        }
        fn flush(&mut self) -> StreamResult<()> {
            Ok(())
        }
        fn check_write(&mut self) -> StreamResult<usize> {
            Ok(usize::MAX)
        }
    }

    #[test]
    fn chunks_stay_charged_while_the_host_holds_them() {
        let total = Arc::new(AtomicU64::new(0));
        let meter = HostMemory::new(100, total.clone());
        let buffer = Buffer::default();
        let mut stream = ChargedStream::new(Box::new(buffer.clone()), meter.clone());
        stream.write(Bytes::from(vec![1u8; 60])).unwrap();
        assert_eq!(meter.used(), 60);
        let err = stream.write(Bytes::from(vec![2u8; 41])).unwrap_err();
        assert!(matches!(err, StreamError::Trap(_)), "{err:?}");
        assert!(meter.limit_hit());
        // The guest's handle is gone, the buffered chunk is not: still
        // charged, and still the bytes written.
        drop(stream);
        assert_eq!(meter.used(), 60);
        let chunk = buffer.0.lock().unwrap().pop().unwrap();
        assert_eq!(&chunk[..], &[1u8; 60][..]);
        // A clone (hyper splitting a frame) keeps it charged until the
        // last piece goes.
        let piece = chunk.slice(0..10);
        drop(chunk);
        assert_eq!(meter.used(), 60);
        drop(piece);
        assert_eq!(meter.used(), 0);
        assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
