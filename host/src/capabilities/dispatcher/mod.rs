//! Dynamic dispatch: platform dispatch workers in front of tenant workers.
//!
//! A `[[dispatch]]` entry binds hostname patterns to a dispatch worker and
//! one namespace ([`table`]). The dispatch worker is a component of the
//! `berth:platform/dispatch-worker` world; the host side of its
//! `dispatcher` import lives in [`host`]: `get` resolves a script of the
//! bound namespace only, `worker.fetch` runs it in its own store under its
//! own limits and hands the (streaming) response back as a
//! `wasi:http/types.incoming-response`, and every failure of the user
//! worker becomes a typed `dispatch-error`. Guests that cannot pass
//! `wasi:http` resources to that import (JavaScript) reach the same
//! machinery with `fetch("http://<script>.dispatch.internal/…")` ([`fetch`]).

mod bindings;
pub mod fetch;
mod host;
pub mod hostnames;
pub mod table;

pub use bindings::berth::platform::dispatcher::DispatchError;
pub use host::{DispatchBinding, FutureResponse, WorkerHandle, add_to_linker};
pub use table::{DispatchEntry, DispatchTable};
