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
//!   for; header maps are capped by [`FIELDS_MAX_BYTES`] through the
//!   `WasiHttpCtx`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{HostOutgoingRequest as _, Method};
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

use crate::limits::host_memory::{
    AUTHORITY_MAX_BYTES, Charge, HostMemory, METHOD_MAX_BYTES, PATH_MAX_BYTES,
};

pub use crate::limits::host_memory::FIELDS_MAX_BYTES;

/// The `wasi:http/types` instance these functions replace (Wasmtime 48's;
/// guests importing any `0.2.x` resolve to it).
const TYPES: &str = "wasi:http/types@0.2.12";

/// Store data that can say which host-memory meter its instance charges.
pub trait HostMemoryView: WasiHttpView {
    /// The instance's meter.
    fn host_memory(&self) -> &HostMemory;
}

/// Replaces the functions named in the module docs; call after
/// `wasmtime_wasi_http`'s own `add_to_linker`.
pub fn add_to_linker<T: HostMemoryView + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let result = shadow(linker);
    linker.allow_shadowing(false);
    result.map_err(|e| anyhow::anyhow!("linking charged wasi:http functions: {e:#}"))
}

fn shadow<T: HostMemoryView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]outgoing-body.write",
        |mut store: StoreContextMut<'_, T>, (body,): (Resource<HostOutgoingBody>,)| {
            let meter = store.data().host_memory().clone();
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
    types.func_wrap(
        "[method]outgoing-request.set-path-with-query",
        |mut store: StoreContextMut<'_, T>,
         (request, path): (Resource<HostOutgoingRequest>, Option<String>)| {
            if path.as_ref().is_some_and(|p| p.len() > PATH_MAX_BYTES) {
                return Ok((Err(()),));
            }
            Ok((store.data_mut().http().set_path_with_query(request, path)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-authority",
        |mut store: StoreContextMut<'_, T>,
         (request, authority): (Resource<HostOutgoingRequest>, Option<String>)| {
            if authority
                .as_ref()
                .is_some_and(|a| a.len() > AUTHORITY_MAX_BYTES)
            {
                return Ok((Err(()),));
            }
            Ok((store.data_mut().http().set_authority(request, authority)?,))
        },
    )?;
    Ok(())
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

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
