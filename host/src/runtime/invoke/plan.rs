//! Step 1 and 2 of an invocation: the limits it runs under, its deadline,
//! the request body cap, and admission.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

use super::InvokeOptions;
use crate::base::error::WorkerError;
use crate::limits::Admission;
use crate::limits::admission::Permit;
use crate::limits::body::{Direction, LimitedBody};
use crate::limits::{Effective, HostLimits};
use crate::runtime::Worker;

/// What one invocation may use, fixed before it starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// All limit levels combined.
    pub limits: Effective,
    /// When the whole invocation must be over.
    pub deadline: Instant,
    /// Whether CPU accounting, body caps and admission apply.
    pub enforce: bool,
    /// Poll the guest on the caller's task until it answers (user
    /// workers), or on a task of its own from the start (dispatch workers).
    pub inline: bool,
}

impl Plan {
    /// The plan for `worker` called with `options` on a host with `host`
    /// limits.
    pub fn new(host: &HostLimits, worker: &Worker, options: &InvokeOptions) -> Self {
        let limits = host.effective(&worker.limits, &options.call.limits);
        let mut deadline = Instant::now() + limits.wall;
        if let Some(cap) = options.call.deadline_cap {
            deadline = deadline.min(cap);
        }
        Self {
            limits,
            deadline,
            enforce: host.enforce,
            inline: options.dispatch.is_none(),
        }
    }

    /// Refuses a request whose declared length is over the body cap before
    /// anything else happens.
    pub fn check_declared_body(&self, headers: &http::HeaderMap) -> Result<(), WorkerError> {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limits.max_request_body) {
            return Err(WorkerError::RequestTooLarge(self.limits.max_request_body));
        }
        Ok(())
    }

    /// Takes a concurrency slot of `gate` (the script's, or a dispatch
    /// entry's), waiting in its queue at most until the deadline; `None`
    /// when limits are not enforced.
    pub async fn admit(&self, gate: &Admission) -> Result<Option<Permit>, WorkerError> {
        if !self.enforce {
            return Ok(None);
        }
        tokio::time::timeout_at(self.deadline, gate.admit())
            .await
            .map_err(|_| WorkerError::WallLimit)?
            .map(Some)
    }

    /// The request with its body capped while it streams, and the flag
    /// raised if the cap is hit.
    pub fn cap_request<B>(
        &self,
        request: http::Request<B>,
    ) -> (http::Request<WasiBody>, Arc<AtomicBool>)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let tripped = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            let body = body.map_err(Into::into).boxed_unsync();
            if self.enforce {
                LimitedBody::new(
                    body,
                    self.limits.max_request_body,
                    Direction::Request,
                    tripped.clone(),
                )
                .boxed_unsync()
            } else {
                body
            }
        });
        (request, tripped)
    }
}
