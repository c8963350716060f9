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
        "berth:platform/dispatcher.worker": super::resources::WorkerHandle,
        "berth:platform/dispatcher.future-response": super::resources::FutureResponse,
    },
});

use crate::base::error::WorkerError;
use berth::platform::dispatcher::DispatchError;

/// The typed error a dispatch worker sees for a failed user worker: the
/// WIT view of the one error map in [`crate::base::error`].
impl From<WorkerError> for DispatchError {
    fn from(error: WorkerError) -> Self {
        match error {
            WorkerError::NotFound(_) => DispatchError::WorkerNotFound,
            WorkerError::Exception(message) => DispatchError::Exception(message),
            WorkerError::NoResponse => DispatchError::NoResponse,
            WorkerError::Overloaded => DispatchError::Overloaded,
            WorkerError::WallLimit => DispatchError::WallLimitExceeded,
            WorkerError::MemoryLimit => DispatchError::MemoryLimitExceeded,
            WorkerError::CpuLimit => DispatchError::CpuLimitExceeded,
            WorkerError::SubrequestLimit => DispatchError::SubrequestLimitExceeded,
            WorkerError::RequestTooLarge(limit) => DispatchError::RequestBodyTooLarge(limit),
            // A loop is a failed subrequest chain: the platform sees why.
            WorkerError::LoopDetected(hops) => {
                DispatchError::Internal(format!("loop detected after {hops} hops"))
            }
            // Only the fetch form produces it, and it answers with a response.
            WorkerError::BadDispatchRequest(message)
            | WorkerError::BadRequest(message)
            | WorkerError::Internal(message) => DispatchError::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::tests::every_variant;

    /// The WIT variant of every failure names the same failure as its
    /// `x-berth-error` code (the WIT spells limits `…-limit-exceeded` and
    /// the body cap `request-body-too-large`).
    #[test]
    fn wit_variants_follow_the_error_codes() {
        for error in every_variant() {
            let code = error.code().as_str();
            let variant = match DispatchError::from(error.clone()) {
                DispatchError::WorkerNotFound => "worker-not-found",
                DispatchError::Exception(_) => "exception",
                DispatchError::NoResponse => "no-response",
                DispatchError::Overloaded => "overloaded",
                DispatchError::WallLimitExceeded => "wall-limit",
                DispatchError::MemoryLimitExceeded => "memory-limit",
                DispatchError::CpuLimitExceeded => "cpu-limit",
                DispatchError::SubrequestLimitExceeded => "subrequest-limit",
                DispatchError::RequestBodyTooLarge(_) => "request-too-large",
                DispatchError::Internal(_) => "internal",
            };
            let expected = match error {
                WorkerError::BadDispatchRequest(_)
                | WorkerError::BadRequest(_)
                | WorkerError::LoopDetected(_) => "internal",
                _ => code,
            };
            assert_eq!(variant, expected, "{error:?}");
        }
    }
}
