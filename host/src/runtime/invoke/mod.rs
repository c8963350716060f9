//! The invoke pipeline: one request through one instance of one worker.
//!
//! Read top to bottom, [`Runtime::invoke`] is:
//!
//! 1. **plan** — combine host, script and call limits; fix the deadline;
//!    refuse a declared body over its cap ([`plan`]);
//! 2. **admit** — take a concurrency slot of the script, waiting in its
//!    bounded queue at most until the deadline;
//! 3. **build state** — a fresh `Store` (or a clean warm one) with the
//!    capabilities' state, limits and CPU hooks ([`instance`]);
//! 4. **call** — instantiate and call `wasi:http/incoming-handler.handle`
//!    under the deadline, then classify the outcome and account for it
//!    ([`guest`]);
//! 5. **answer** — return the response as soon as the guest sets it, its
//!    body capped while it streams ([`answer`]).
//!
//! One deadline (`tokio::time::timeout_at`) bounds the whole invocation,
//! whatever the guest is doing. Static assets are not served here but by
//! [`Runtime::handle`] in front of it.

mod answer;
mod guest;
mod instance;
mod plan;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Runtime, Worker};
use crate::base::error::WorkerError;
use crate::base::limits::CallLimits;
use crate::capabilities::dispatcher::DispatchBinding;
use crate::capabilities::{CallOptions, OutboundWorker, WorkerResponse};
use plan::Plan;

/// How one invocation runs, beyond the worker itself.
#[derive(Default)]
pub struct InvokeOptions {
    /// Per-call limits (from a dispatch worker or a `[[dispatch]]` entry);
    /// combined with the script's and the host's, the minimum winning.
    pub limits: CallLimits,
    /// An outer deadline this call may not outlive (the dispatch worker's).
    pub deadline_cap: Option<tokio::time::Instant>,
    /// For dispatch workers: the namespace their `dispatcher.get` reaches.
    pub dispatch: Option<DispatchBinding>,
    /// Outbound parameters from the dispatch worker, for the egress layer.
    pub outbound: Vec<(String, String)>,
    /// The outbound worker every subrequest goes to first, if any.
    pub outbound_worker: Option<OutboundWorker>,
    /// The id of the client request this invocation serves.
    pub request_id: Option<String>,
    /// Hops the client request already made (see `routing::HOP_HEADER`);
    /// the guest's subrequests carry one more.
    pub hops: u32,
    /// The gate to take a slot from instead of the worker's own (a
    /// `[[dispatch]]` entry's).
    pub gate: Option<std::sync::Arc<crate::limits::Admission>>,
}

impl From<CallOptions> for InvokeOptions {
    fn from(call: CallOptions) -> Self {
        Self {
            limits: call.limits,
            deadline_cap: call.deadline_cap,
            dispatch: None,
            outbound: call.outbound,
            outbound_worker: call.outbound_worker,
            request_id: call.request_id,
            hops: call.hops,
            gate: None,
        }
    }
}

impl Runtime {
    /// Serves a request for a stored script: from its static assets where
    /// they match (see [`crate::assets`]), otherwise with the worker.
    pub async fn handle<B>(
        &self,
        worker: Arc<Worker>,
        request: http::Request<B>,
        options: InvokeOptions,
    ) -> Result<WorkerResponse, WorkerError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let method = request.method().clone();
        if worker.assets.is_empty()
            || !(method == http::Method::GET || method == http::Method::HEAD)
        {
            return self.invoke(worker, request, options).await;
        }
        let hit = crate::assets::find(&worker.assets, &worker.asset_config, request.uri().path())
            .map_err(|e| WorkerError::BadRequest(e.0))?;
        let if_none_match = request.headers().get(http::header::IF_NONE_MATCH).cloned();
        let asset = |hit: crate::assets::Hit, worker: Arc<Worker>| async move {
            // Assets count against the script's concurrency like its worker.
            let _permit = match self.limits.enforce {
                true => Some(worker.admission.admit().await?),
                false => None,
            };
            let blobs: Arc<dyn crate::store::Blobs> = self.store.clone();
            crate::assets::serve(&self.assets, blobs, &hit, &method, if_none_match.as_ref()).await
        };
        if worker.asset_config.run_worker_first {
            let response = self.invoke(worker.clone(), request, options).await?;
            return match hit {
                Some(hit) if response.status() == http::StatusCode::NOT_FOUND => {
                    asset(hit, worker).await
                }
                _ => Ok(response),
            };
        }
        match hit {
            Some(hit) => asset(hit, worker).await,
            None => self.invoke(worker, request, options).await,
        }
    }

    /// Serves `request` with a fresh (or clean warm) instance of `worker`.
    pub async fn invoke<B>(
        &self,
        worker: Arc<Worker>,
        request: http::Request<B>,
        options: InvokeOptions,
    ) -> Result<WorkerResponse, WorkerError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = std::time::Instant::now();
        let labels = self
            .metrics
            .labels(worker.namespace.as_str(), worker.name.as_str());
        let (status_tx, status_rx) = tokio::sync::oneshot::channel();
        let result = self.run(worker, request, options, status_rx).await;
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.status().as_u16(),
        };
        // The tail event of this request waits for its final status.
        let _ = status_tx.send(Some(status));
        self.account(&labels, &result, started.elapsed().as_secs_f64());
        result
    }

    /// The pipeline itself: plan → admit → build state → call → answer.
    async fn run<B>(
        &self,
        worker: Arc<Worker>,
        request: http::Request<B>,
        options: InvokeOptions,
        status_rx: tokio::sync::oneshot::Receiver<Option<u16>>,
    ) -> Result<WorkerResponse, WorkerError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let plan = Plan::new(&self.limits, &worker, &options);
        plan.check_declared_body(request.headers())?;
        let permit = plan
            .admit(options.gate.as_deref().unwrap_or(&worker.admission))
            .await?;
        let (request, request_tripped) = plan.cap_request(request);
        let instance = self.instance(&worker, &plan, options);
        let call = instance.start(request, request_tripped.clone())?;
        let receiver = call.receiver;
        let guest = self.guest(worker.clone(), call.run, permit, plan, status_rx);
        let answer = answer::wait(guest, receiver, &plan, &request_tripped).await?;
        Ok(self.cap_response(&worker, &plan, answer))
    }

    /// Counts a finished invocation in the metrics and counters.
    fn account(
        &self,
        labels: &crate::observe::metrics::ScriptLabels,
        result: &Result<WorkerResponse, WorkerError>,
        elapsed: f64,
    ) {
        let error = match result {
            Ok(response) => {
                self.metrics
                    .request(labels, response.status().as_u16(), "", elapsed);
                return;
            }
            Err(error) => error,
        };
        self.metrics.request(
            labels,
            error.status().as_u16(),
            error.code().as_str(),
            elapsed,
        );
        let c = &self.counters;
        let (counter, kind) = match error {
            WorkerError::WallLimit => (Some(&c.wall_limit_hits), "wall"),
            WorkerError::CpuLimit => (Some(&c.cpu_limit_hits), "cpu"),
            WorkerError::FuelLimit => (Some(&c.fuel_limit_hits), "fuel"),
            WorkerError::MemoryLimit => (Some(&c.memory_limit_hits), "memory"),
            WorkerError::Overloaded => (Some(&c.overloaded), "concurrency"),
            WorkerError::RequestTooLarge(_) => (Some(&c.request_body_limit_hits), "request_body"),
            WorkerError::SubrequestLimit => (None, "subrequests"),
            _ => (None, ""),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if !kind.is_empty() {
            self.metrics.limit_hit(labels, kind);
        }
    }
}
