//! Host bindings for `berth:platform/dispatcher`, generated from `wit/`.
//!
//! Only the `dispatch-client` world (the `dispatcher` import alone) is
//! generated here, once per package version the host links (`v0_1`,
//! `v0_2`, `v0_3`); `wasi:*` types map to the bindings of wasmtime-wasi and
//! wasmtime-wasi-http, so an `outgoing-request` made through `wasi:http` is
//! the very resource `worker.fetch` receives.

#![allow(missing_docs)]

/// One package version's `dispatch-client` bindings, with the same options
/// for every version (only the WIT folder differs).
macro_rules! dispatch_client {
    ($path:literal) => {
        wasmtime::component::bindgen!({
            path: $path,
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
                "berth:platform/dispatcher.worker": crate::capabilities::dispatcher::resources::WorkerHandle,
                "berth:platform/dispatcher.future-response": crate::capabilities::dispatcher::resources::FutureResponse,
            },
        });
    };
}

/// `berth:platform@0.1.0` (`wit/`).
pub mod v0_1 {
    dispatch_client!("../wit");
}

/// `berth:platform@0.2.0` (`wit/v0.2/`): 0.1.0 plus `fuel-limit-exceeded`.
pub mod v0_2 {
    dispatch_client!("../wit/v0.2");
}

/// `berth:platform@0.3.0` (`wit/v0.3/`): 0.2.0 plus the pass-through
/// (`worker.forward-incoming`, `send-response`).
pub mod v0_3 {
    dispatch_client!("../wit/v0.3");
}

use crate::base::error::WorkerError;

/// Maps a failure to one version's `dispatch-error`; `$fuel` is the variant
/// that version has for `fuel-limit`.
macro_rules! dispatch_error_from {
    ($error:ty, $fuel:expr) => {
        /// The typed error a dispatch worker sees for a failed user worker:
        /// the WIT view of the one error map in [`crate::base::error`].
        impl From<WorkerError> for $error {
            fn from(error: WorkerError) -> Self {
                type E = $error;
                match error {
                    WorkerError::NotFound(_) => E::WorkerNotFound,
                    WorkerError::Exception(message) => E::Exception(message),
                    WorkerError::NoResponse => E::NoResponse,
                    WorkerError::Overloaded => E::Overloaded,
                    WorkerError::WallLimit => E::WallLimitExceeded,
                    WorkerError::MemoryLimit => E::MemoryLimitExceeded,
                    WorkerError::CpuLimit => E::CpuLimitExceeded,
                    WorkerError::FuelLimit => $fuel,
                    WorkerError::SubrequestLimit => E::SubrequestLimitExceeded,
                    WorkerError::RequestTooLarge(limit) => E::RequestBodyTooLarge(limit),
                    // A loop is a failed subrequest chain: the platform sees why.
                    WorkerError::LoopDetected(hops) => {
                        E::Internal(format!("loop detected after {hops} hops"))
                    }
                    // Only the fetch form produces it, and it answers with a response.
                    WorkerError::BadDispatchRequest(message)
                    | WorkerError::BadRequest(message)
                    | WorkerError::Internal(message) => E::Internal(message),
                    WorkerError::Host(failure) => E::Internal(failure.to_string()),
                }
            }
        }
    };
}

// 0.1.0 has no fuel variant: running out of fuel is running out of compute,
// which 0.1.0 calls `cpu-limit-exceeded` (same status, 503).
dispatch_error_from!(
    v0_1::berth::platform::dispatcher::DispatchError,
    v0_1::berth::platform::dispatcher::DispatchError::CpuLimitExceeded
);
dispatch_error_from!(
    v0_2::berth::platform::dispatcher::DispatchError,
    v0_2::berth::platform::dispatcher::DispatchError::FuelLimitExceeded
);
dispatch_error_from!(
    v0_3::berth::platform::dispatcher::DispatchError,
    v0_3::berth::platform::dispatcher::DispatchError::FuelLimitExceeded
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::tests::every_variant;
    use v0_1::berth::platform::dispatcher::DispatchError;

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
                // 0.1.0's closest variant.
                WorkerError::FuelLimit => "cpu-limit",
                _ => code,
            };
            assert_eq!(variant, expected, "{error:?}");
        }
    }

    /// 0.2.0 and later name every failure 0.1.0 does, and fuel as itself.
    macro_rules! variants_follow_the_error_codes {
        ($test:ident, $E:ty) => {
            #[test]
            fn $test() {
                type E = $E;
                for error in every_variant() {
                    let code = error.code().as_str();
                    let variant = match E::from(error.clone()) {
                        E::WorkerNotFound => "worker-not-found",
                        E::Exception(_) => "exception",
                        E::NoResponse => "no-response",
                        E::Overloaded => "overloaded",
                        E::WallLimitExceeded => "wall-limit",
                        E::MemoryLimitExceeded => "memory-limit",
                        E::CpuLimitExceeded => "cpu-limit",
                        E::FuelLimitExceeded => "fuel-limit",
                        E::SubrequestLimitExceeded => "subrequest-limit",
                        E::RequestBodyTooLarge(_) => "request-too-large",
                        E::Internal(_) => "internal",
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
        };
    }
    variants_follow_the_error_codes!(
        v0_2_variants_follow_the_error_codes,
        v0_2::berth::platform::dispatcher::DispatchError
    );
    variants_follow_the_error_codes!(
        v0_3_variants_follow_the_error_codes,
        v0_3::berth::platform::dispatcher::DispatchError
    );
}
