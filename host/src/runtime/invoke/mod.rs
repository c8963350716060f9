//! The invoke pipeline: one request through one instance of one worker.
//!
//! Read top to bottom, [`Runtime::invoke`] is:
//!
//! 1. **plan** — combine host, script and call limits; fix the deadline;
//!    refuse a declared body over its cap ([`plan`]);
//! 2. **admit** — take a concurrency slot of the script, waiting in its
//!    bounded queue at most until the deadline;
//! 3. **build state** — a fresh `Store` (or a clean warm one) with the
//!    capabilities' state, limits and the CPU meter ([`instance`]);
//! 4. **call** — instantiate and call `wasi:http/incoming-handler.handle`
//!    under the deadline, then classify the outcome and account for it
//!    ([`guest`]);
//! 5. **answer** — return the response as soon as the guest sets it, its
//!    body capped while it streams ([`answer`]).
//!
//! One deadline (`tokio::time::timeout_at`) bounds the whole invocation,
//! whatever the guest is doing. [`Runtime::handle`] in front of it answers
//! from a script's static assets where [`assets::route`] says so.

mod answer;
mod guest;
mod instance;
mod plan;

use std::sync::Arc;

use bytes::Bytes;

use super::{Runtime, Worker};
use crate::assets;
use crate::base::error::{WorkerError, limit_kind};
use crate::capabilities::dispatcher::DispatchBinding;
use crate::capabilities::{CallOptions, WorkerResponse};
use crate::observe::history::RecentError;
use plan::Plan;

/// How one invocation runs, beyond the worker itself: what a capability's
/// call says ([`CallOptions`]), plus what only the data plane gives.
#[derive(Default)]
pub struct InvokeOptions {
    /// Limits, deadline cap, outbound parameters and worker, request id,
    /// hops.
    pub call: CallOptions,
    /// For dispatch workers: the namespace their `dispatcher.get` reaches.
    pub dispatch: Option<DispatchBinding>,
    /// The gate to take a slot from instead of the worker's own (a
    /// `[[dispatch]]` entry's).
    pub gate: Option<Arc<crate::limits::Admission>>,
}

impl From<CallOptions> for InvokeOptions {
    fn from(call: CallOptions) -> Self {
        Self {
            call,
            ..Self::default()
        }
    }
}

impl Runtime {
    /// Serves a request for a stored script: from its static assets where
    /// [`assets::route`] says so, otherwise with the worker.
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
        let route = assets::route(
            &worker.assets,
            &worker.asset_config,
            &method,
            request.uri().path(),
        )
        .map_err(|e| WorkerError::BadRequest(e.0))?;
        let if_none_match = request.headers().get(http::header::IF_NONE_MATCH).cloned();
        let asset = |hit: assets::Hit, worker: Arc<Worker>| async move {
            // Assets count against the script's concurrency like its worker.
            let _permit = match self.limits.enforce {
                true => Some(worker.admission.admit().await?),
                false => None,
            };
            let blobs: Arc<dyn crate::store::Blobs> = self.store.clone();
            assets::serve(&self.assets, blobs, &hit, &method, if_none_match.as_ref()).await
        };
        match route {
            assets::Route::Worker => self.invoke(worker, request, options).await,
            assets::Route::Asset(hit) => asset(hit, worker).await,
            assets::Route::WorkerThenAsset(hit) => {
                let response = self.invoke(worker.clone(), request, options).await?;
                match response.status() {
                    http::StatusCode::NOT_FOUND => asset(hit, worker).await,
                    _ => Ok(response),
                }
            }
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
        // For the dashboard's last errors (a reference count, not a copy).
        let uri = request.uri().clone();
        let (status_tx, status_rx) = tokio::sync::oneshot::channel();
        let result = self.run(worker.clone(), request, &options, status_rx).await;
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.status().as_u16(),
        };
        // The tail event of this request waits for its final status.
        let _ = status_tx.send(Some(status));
        let series = worker.series(&self.services.metrics);
        self.account(series, &result, started.elapsed().as_secs_f64());
        if result.is_err() || status >= 500 {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(error) => error.code().as_str(),
            };
            let request_id = options.call.request_id;
            self.remember_failure(
                series.labels(),
                &worker,
                request_id,
                status,
                outcome,
                uri.path(),
            );
        }
        result
    }

    /// Keeps a failed request (a host error, or a 5xx the guest chose)
    /// among its script's last errors, for the dashboard.
    fn remember_failure(
        &self,
        labels: &crate::observe::metrics::ScriptLabels,
        worker: &Worker,
        request_id: Option<String>,
        status: u16,
        outcome: &'static str,
        path: &str,
    ) {
        let error = RecentError::new(
            worker.name().as_str(),
            request_id,
            status,
            outcome,
            path,
            crate::store::now_ms(),
        );
        self.services.metrics.history().error(labels, error);
    }

    /// The pipeline itself: plan → admit → build state → call → answer.
    async fn run<B>(
        &self,
        worker: Arc<Worker>,
        request: http::Request<B>,
        options: &InvokeOptions,
        status_rx: tokio::sync::oneshot::Receiver<Option<u16>>,
    ) -> Result<WorkerResponse, WorkerError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let plan = Plan::new(&self.limits, &worker, options);
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

    /// Counts a finished invocation in the metrics and counters: its
    /// status and code, and for a limit, which one (both derived from the
    /// one error map).
    fn account(
        &self,
        series: &crate::observe::metrics::ScriptSeries,
        result: &Result<WorkerResponse, WorkerError>,
        elapsed: f64,
    ) {
        let metrics = &self.services.metrics;
        let error = match result {
            Ok(response) => {
                metrics.request_of(series, response.status().as_u16(), "", elapsed);
                return;
            }
            Err(error) => error,
        };
        let code = error.code();
        metrics.request_of(series, error.status().as_u16(), code.as_str(), elapsed);
        self.counters.count_failure(code);
        if let Some(kind) = limit_kind(code) {
            metrics.limit_hit(series.labels(), kind);
        }
    }
}
