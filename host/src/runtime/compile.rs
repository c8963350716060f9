//! Turning component bytes into something ready to instantiate.
//!
//! Uploads are compiled (on a blocking thread, by the caller) and checked
//! against Berth's linker before anything is stored: a core module, a
//! malformed binary, a component importing what we do not provide, or one
//! that does not export `wasi:http/incoming-handler` is rejected with
//! Wasmtime's own explanation. Loading for serving prefers the host's own
//! precompiled artifact; tenant bytes are only ever *compiled*, never
//! deserialized.

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::state::WorkerState;

/// Why an upload is not a servable component.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompileError {
    /// Not a valid component (garbage, a core module, unsupported features).
    #[error("invalid component: {0}")]
    Invalid(String),
    /// Valid, but imports something Berth does not provide.
    #[error("component cannot be linked: {0}")]
    Link(String),
    /// Valid, but not a `wasi:http/proxy` component.
    #[error(
        "component does not export wasi:http/incoming-handler (it must target the wasi:http/proxy world): {0}"
    )]
    WrongWorld(String),
}

fn text(e: &wasmtime::Error) -> String {
    crate::base::error::one_line(&format!("{e:#}"))
}

/// Compiles `bytes` (check it can serve with [`prepare`]).
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, CompileError> {
    Component::new(engine, bytes).map_err(|e| CompileError::Invalid(text(&e)))
}

/// Links an already compiled component and locates its HTTP handler.
pub fn prepare(
    linker: &Linker<WorkerState>,
    component: &Component,
) -> Result<ProxyPre<WorkerState>, CompileError> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| CompileError::Link(text(&e)))?;
    ProxyPre::new(pre).map_err(|e| CompileError::WrongWorld(text(&e)))
}

/// Builds `component`'s copy-on-write memory image (on Linux a memfd
/// holding its data segments: 12 MiB for a componentize-js snapshot) now,
/// while it is being loaded to serve, instead of inside the first request's
/// instantiation. Runs no guest code; on failure (logged, naming `subject`)
/// Wasmtime builds the image lazily as before.
pub fn build_memory_image(component: &Component, subject: &dyn std::fmt::Display) {
    if let Err(e) = component.initialize_copy_on_write_image() {
        tracing::warn!(%subject, error = %e,
            "memory image not prepared ahead; the first instance builds it");
    }
}

/// Loads a precompiled artifact produced by [`Component::serialize`] on an
/// engine with the same compatibility hash.
///
/// Only ever called with bytes this host wrote to its own store.
pub fn load_artifact(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` comes from the `artifacts` tree of the store, which
    // only the host writes, from its own `Component::serialize` output for an
    // engine with the same compatibility hash (part of the key). Tenant
    // uploads are never passed here.
    unsafe { Component::deserialize(engine, artifact) }
}
