//! Running one request through one worker.
//!
//! Read top to bottom, a request is: fresh `Store` with the script's limits →
//! instantiate from the cached pre-instantiated component → call
//! `wasi:http/incoming-handler.handle` on its own task → return the response
//! as soon as the guest sets it, while the body keeps streaming from the
//! still-running guest → when the guest finishes, classify the outcome and
//! emit its captured output. One deadline (`tokio::time::timeout_at`) bounds
//! the whole invocation, whatever the guest is doing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::state::{StateParams, WorkerState};
use super::stdio::{OutputCapture, tail_lines};
use super::{Runtime, Worker};
use crate::dispatch::DispatchBinding;
use crate::egress::EgressHooks;
use crate::errors::{WorkerError, one_line};
use crate::limits::{CallLimits, CpuMeter};

/// The response a worker produced; its body may still be streaming.
pub type WorkerResponse = http::Response<HyperOutgoingBody>;

/// How one invocation runs, beyond the worker itself.
#[derive(Default)]
pub struct InvokeOptions {
    /// Limits for this call (already combined across levels); the host's
    /// `request_timeout_ms` and `max_memory_mb` still cap them.
    pub limits: CallLimits,
    /// An outer deadline this call may not outlive (the dispatch worker's).
    pub deadline_cap: Option<Instant>,
    /// For dispatch workers: the namespace their `dispatcher.get` reaches.
    pub dispatch: Option<DispatchBinding>,
    /// Outbound parameters from the dispatch worker, for the egress layer.
    pub outbound: Vec<(String, String)>,
}

impl Runtime {
    /// Serves `request` with a fresh instance of `worker`.
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
        let limits = options.limits;
        let wall = limits.wall_ms.map_or(self.request_timeout, |ms| {
            Duration::from_millis(ms).min(self.request_timeout)
        });
        let mut deadline = Instant::now() + wall;
        if let Some(cap) = options.deadline_cap {
            deadline = deadline.min(cap);
        }
        let max_memory_bytes = limits.memory_mb.map_or(self.max_memory_bytes, |mb| {
            ((mb as usize) << 20).min(self.max_memory_bytes)
        });
        let stdout = OutputCapture::new(self.stdio_capture_bytes);
        let stderr = OutputCapture::new(self.stdio_capture_bytes);
        let egress = EgressHooks::new(worker.namespace.as_str(), worker.name.as_str())
            .with_subrequest_limit(limits.subrequests)
            .with_outbound(options.outbound);
        let dispatch = options
            .dispatch
            .map(|binding| binding.with_deadline(deadline));
        let state = WorkerState::new(StateParams {
            env: &worker.env,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            max_memory_bytes,
            egress,
            cpu: CpuMeter::new(limits.cpu_ms, self.epoch_tick_ms),
            dispatch,
        });
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick the guest observes while executing: count it
        // against the CPU budget, then yield to the scheduler so a busy guest
        // cannot starve other requests on its worker thread.
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data_mut().cpu.tick() {
                Ok(UpdateDeadline::Yield(1))
            } else {
                Err(wasmtime::Error::msg("cpu time limit exceeded"))
            }
        });
        store.set_epoch_deadline(1);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, request);
            let outparam = http.new_response_outparam(sender);
            match (incoming, outparam) {
                (Ok(i), Ok(o)) => (i, o),
                (Err(e), _) | (_, Err(e)) => {
                    return Err(WorkerError::Internal(one_line(&format!("{e:#}"))));
                }
            }
        };

        let pre = worker.pre.clone();
        let task_worker = worker.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(classify(&error, store.data(), &stderr)),
                Err(_) => Err(WorkerError::WallLimit),
            };
            emit_output(&task_worker, &stdout, &stderr);
            if let Err(error) = &result {
                tracing::warn!(
                    namespace = %task_worker.namespace, script = %task_worker.name,
                    code = error.code(), %error, "worker invocation failed"
                );
            }
            result
        });

        let outcome = match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(WorkerError::Exception(format!(
                "worker answered with error code {code:?}"
            ))),
            // The guest dropped the response outparam: it finished (or
            // failed) without responding. Its task says which.
            Ok(Err(_)) => match task.await {
                Ok(Ok(())) => Err(WorkerError::NoResponse),
                Ok(Err(error)) => Err(error),
                Err(join) => Err(WorkerError::Internal(format!("worker task failed: {join}"))),
            },
            Err(_) => Err(WorkerError::WallLimit),
        };
        if let Err(error) = &outcome {
            let counter = match error {
                WorkerError::WallLimit => Some(&self.counters.wall_limit_hits),
                WorkerError::CpuLimit => Some(&self.counters.cpu_limit_hits),
                WorkerError::MemoryLimit => Some(&self.counters.memory_limit_hits),
                _ => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }
}

/// Maps a failed instantiation or call to what the client is told.
fn classify(error: &wasmtime::Error, state: &WorkerState, stderr: &OutputCapture) -> WorkerError {
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return WorkerError::Overloaded;
    }
    if state.cpu.limit_hit {
        return WorkerError::CpuLimit;
    }
    if state.limiter.memory_limit_hit || state.limiter.table_limit_hit {
        return WorkerError::MemoryLimit;
    }
    if state.egress.subrequest_limit_hit {
        return WorkerError::SubrequestLimit;
    }
    let reason = match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow".to_owned(),
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    let (stderr_text, _) = stderr.contents();
    let detail = tail_lines(&stderr_text, 2);
    if detail.is_empty() {
        WorkerError::Exception(one_line(&reason))
    } else {
        WorkerError::Exception(one_line(&format!("{reason}; stderr: {detail}")))
    }
}

/// Emits a finished invocation's captured stdout/stderr through `tracing`,
/// one event per line, attributed to the script.
fn emit_output(worker: &Worker, stdout: &OutputCapture, stderr: &OutputCapture) {
    for (stream, capture) in [("stdout", stdout), ("stderr", stderr)] {
        let (text, dropped) = capture.contents();
        for line in text.lines().filter(|l| !l.is_empty()) {
            tracing::info!(
                target: "berth::guest", namespace = %worker.namespace,
                script = %worker.name, stream, "{line}"
            );
        }
        if dropped > 0 {
            tracing::warn!(
                target: "berth::guest", namespace = %worker.namespace,
                script = %worker.name, stream, dropped, "guest output over the capture limit was dropped"
            );
        }
    }
}
