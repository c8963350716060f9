//! The host types behind the `dispatcher` interface's resources: a
//! selected user worker (`worker`) and a pending call (`future-response`).
//! Plain data; the interface's functions live in `host`.

use wasmtime_wasi::p2::Pollable;
use wasmtime_wasi::runtime::AbortOnDropJoinHandle;

use crate::base::error::WorkerError;
use crate::base::limits::CallLimits;
use crate::capabilities::{WorkerRef, WorkerResponse};

/// The host side of a `worker` resource.
pub struct WorkerHandle {
    pub(super) worker: WorkerRef,
    pub(super) limits: CallLimits,
    pub(super) outbound: Vec<(String, String)>,
}

/// The host side of a `future-response` resource.
pub enum FutureResponse {
    /// The user worker has not answered yet.
    Pending(AbortOnDropJoinHandle<Result<WorkerResponse, WorkerError>>),
    /// The outcome, not yet taken.
    Ready(Result<WorkerResponse, WorkerError>),
    /// Taken by `get`.
    Consumed,
}

#[wasmtime_wasi::async_trait]
impl Pollable for FutureResponse {
    async fn ready(&mut self) {
        if let Self::Pending(handle) = self {
            *self = Self::Ready(handle.await);
        }
    }
}
