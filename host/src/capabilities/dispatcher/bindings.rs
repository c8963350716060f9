//! Host bindings for `berth:platform/dispatcher`, generated from `wit/`.
//!
//! Only the `dispatch-client` world (the `dispatcher` import alone) is
//! generated here; `wasi:*` types map to the bindings of wasmtime-wasi and
//! wasmtime-wasi-http, so an `outgoing-request` made through `wasi:http` is
//! the very resource `worker.fetch` receives.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "berth:platform/dispatch-client",
    imports: {
        "berth:platform/dispatcher.get": async | trappable,
        "berth:platform/dispatcher.lookup-hostname": async | trappable,
        default: trappable,
    },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "berth:platform/dispatcher.worker": super::host::WorkerHandle,
        "berth:platform/dispatcher.future-response": super::host::FutureResponse,
    },
});
