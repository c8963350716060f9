//! Running one request through one worker.
//!
//! Read top to bottom, a request is: fresh `Store` with the script's limits →
//! instantiate from the cached pre-instantiated component → call
//! `wasi:http/incoming-handler.handle`, polled inline on the caller's task →
//! return the response as soon as the guest sets it; a guest still running
//! then (streaming its body) continues on a task of its own → when the guest
//! finishes, classify the outcome and emit its captured output. One deadline
//! (`tokio::time::timeout_at`) bounds the whole invocation, whatever the
//! guest is doing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;
use wasmtime::component::Resource;
use wasmtime::{CallHook, PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::HostResponseOutparam;

use super::body_limit::{Direction, LimitedBody};
use super::state::{StateParams, WorkerState};
use super::stdio::{OutputCapture, tail_lines};
use super::{Runtime, Worker, reuse};
use crate::dispatch::DispatchBinding;
use crate::egress::EgressHooks;
use crate::errors::{WorkerError, one_line};
use crate::limits::{CallLimits, CpuMeter};

/// The response a worker produced; its body may still be streaming.
pub type WorkerResponse = http::Response<HyperOutgoingBody>;

/// How one invocation runs, beyond the worker itself.
#[derive(Default)]
pub struct InvokeOptions {
    /// Per-call limits (from a dispatch worker or a `[[dispatch]]` entry);
    /// combined with the script's and the host's, the minimum winning.
    pub limits: CallLimits,
    /// An outer deadline this call may not outlive (the dispatch worker's).
    pub deadline_cap: Option<Instant>,
    /// For dispatch workers: the namespace their `dispatcher.get` reaches.
    pub dispatch: Option<DispatchBinding>,
    /// Outbound parameters from the dispatch worker, for the egress layer.
    pub outbound: Vec<(String, String)>,
    /// The outbound worker every subrequest goes to first, if any.
    pub outbound_worker: Option<crate::egress::OutboundWorker>,
    /// The id of the client request this invocation serves.
    pub request_id: Option<String>,
}

impl Runtime {
    /// Serves a request for a stored script: from its static assets where
    /// they match (see [`super::assets`]), otherwise with the worker.
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
        let hit = super::assets::find(&worker.assets, &worker.asset_config, request.uri().path());
        let if_none_match = request.headers().get(http::header::IF_NONE_MATCH).cloned();
        if worker.asset_config.run_worker_first {
            let response = self.invoke(worker, request, options).await?;
            return match hit {
                Some(hit) if response.status() == http::StatusCode::NOT_FOUND => {
                    self.asset_response(&hit, &method, if_none_match.as_ref())
                }
                _ => Ok(response),
            };
        }
        match hit {
            Some(hit) => self.asset_response(&hit, &method, if_none_match.as_ref()),
            None => self.invoke(worker, request, options).await,
        }
    }

    fn asset_response(
        &self,
        hit: &super::assets::Hit,
        method: &http::Method,
        if_none_match: Option<&http::HeaderValue>,
    ) -> Result<WorkerResponse, WorkerError> {
        let content = self
            .store
            .blob(&hit.entry.sha256)
            .map_err(|e| WorkerError::Internal(e.to_string()))?
            .ok_or_else(|| {
                WorkerError::Internal(format!("asset {} content is missing", hit.path))
            })?;
        Ok(super::assets::respond(
            hit,
            method,
            if_none_match,
            Bytes::from(content),
        ))
    }

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
        let started = std::time::Instant::now();
        let labels = self
            .metrics
            .labels(worker.namespace.as_str(), worker.name.as_str());
        let (status_tx, status_rx) = tokio::sync::oneshot::channel();
        let result = self.invoke_inner(worker, request, options, status_rx).await;
        let elapsed = started.elapsed().as_secs_f64();
        match &result {
            Ok(response) => {
                let _ = status_tx.send(Some(response.status().as_u16()));
                self.metrics
                    .request(&labels, response.status().as_u16(), "", elapsed);
            }
            Err(error) => {
                let _ = status_tx.send(Some(error.status().as_u16()));
                self.metrics
                    .request(&labels, error.status().as_u16(), error.code(), elapsed);
                let c = &self.counters;
                let (counter, kind) = match error {
                    WorkerError::WallLimit => (Some(&c.wall_limit_hits), "wall"),
                    WorkerError::CpuLimit => (Some(&c.cpu_limit_hits), "cpu"),
                    WorkerError::MemoryLimit => (Some(&c.memory_limit_hits), "memory"),
                    WorkerError::Overloaded => (Some(&c.overloaded), "concurrency"),
                    WorkerError::RequestTooLarge(_) => {
                        (Some(&c.request_body_limit_hits), "request_body")
                    }
                    WorkerError::SubrequestLimit => (None, "subrequests"),
                    _ => (None, ""),
                };
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if !kind.is_empty() {
                    self.metrics.limit_hit(&labels, kind);
                }
            }
        }
        result
    }

    async fn invoke_inner<B>(
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
        let limits = self.limits.effective(&worker.limits, &options.limits);
        let mut deadline = Instant::now() + limits.wall;
        if let Some(cap) = options.deadline_cap {
            deadline = deadline.min(cap);
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.max_request_body) {
            return Err(WorkerError::RequestTooLarge(limits.max_request_body));
        }
        let enforce = self.limits.enforce;
        let permit = if enforce {
            let admitted = tokio::time::timeout_at(deadline, worker.admission.admit())
                .await
                .map_err(|_| WorkerError::WallLimit)??;
            Some(admitted)
        } else {
            None
        };

        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let request_id = options.request_id.clone();
        let dispatched = options.dispatch.as_ref().map(|b| b.dispatched());
        let request_tripped = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            let body = body.map_err(Into::into).boxed_unsync();
            if enforce {
                LimitedBody::new(
                    body,
                    limits.max_request_body,
                    Direction::Request,
                    request_tripped.clone(),
                )
                .boxed_unsync()
            } else {
                body
            }
        });
        let inline = options.dispatch.is_none();
        let dispatch = options
            .dispatch
            .map(|binding| binding.with_deadline(deadline));
        let egress = EgressHooks::new(
            worker.namespace.as_str(),
            worker.name.as_str(),
            self.egress.clone(),
            worker.egress_rules.clone(),
        )
        .with_subrequest_limit(Some(limits.subrequests))
        .with_outbound(options.outbound)
        .with_outbound_worker(options.outbound_worker)
        .with_dispatch(dispatch.clone())
        .with_metrics(self.metrics.clone());
        // Warm reuse (opt-in): a clean instance from an earlier request of
        // this script (or dispatch worker), with its per-request state reset.
        let reuse = worker.isolation.reuse();
        let warm = if reuse {
            worker.pool.take(&worker.isolation)
        } else {
            None
        };
        let (mut store, warm_proxy, stdout, stderr, served) = match warm {
            Some(idle) => {
                let reuse::Idle {
                    mut store,
                    proxy,
                    stdout,
                    stderr,
                    served,
                    ..
                } = idle;
                stdout.clear();
                stderr.clear();
                let data = store.data_mut();
                data.egress = egress;
                data.dispatch = dispatch.clone();
                data.cpu = CpuMeter::new(limits.cpu);
                data.limiter.reset_flags();
                store.set_epoch_deadline(1);
                (store, Some(proxy), stdout, stderr, served)
            }
            None => {
                let stdout = OutputCapture::new(self.stdio_capture_bytes);
                let stderr = OutputCapture::new(self.stdio_capture_bytes);
                let state = WorkerState::new(StateParams {
                    env: &worker.env,
                    stdout: stdout.clone(),
                    stderr: stderr.clone(),
                    max_memory_bytes: limits.memory_bytes,
                    egress,
                    cpu: CpuMeter::new(limits.cpu),
                    dispatch,
                    kv: worker.kv_enabled.then(|| {
                        crate::kv::KvScope::new(
                            self.store.clone(),
                            worker.namespace.clone(),
                            worker.name.clone(),
                        )
                    }),
                });
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limiter);
                if enforce {
                    // CPU accounting: execution segments run from entering wasm to
                    // leaving it (host call, return) or yielding at an epoch tick.
                    store.call_hook(|mut ctx, hook| {
                        let now = std::time::Instant::now();
                        let cpu = &mut ctx.data_mut().cpu;
                        match hook {
                            CallHook::CallingWasm | CallHook::ReturningFromHost => cpu.start(now),
                            CallHook::CallingHost | CallHook::ReturningFromWasm => cpu.stop(now),
                        }
                        Ok(())
                    });
                    // At every epoch tick the guest observes while executing: check
                    // the CPU budget, then yield so a busy guest cannot starve other
                    // requests on its worker thread.
                    store.epoch_deadline_callback(|mut ctx| {
                        let cpu = &mut ctx.data_mut().cpu;
                        let now = std::time::Instant::now();
                        if !cpu.tick(now) {
                            Err(wasmtime::Error::msg("cpu time limit exceeded"))
                        } else if cpu.should_yield() {
                            Ok(UpdateDeadline::YieldCustom(1, cpu.yield_now()))
                        } else {
                            cpu.resume(now);
                            Ok(UpdateDeadline::Continue(1))
                        }
                    });
                } else {
                    // Without CPU accounting: the same yielding policy, by
                    // tick count (see CpuMeter::should_yield).
                    let mut ticks = 0u32;
                    store.epoch_deadline_callback(move |_| {
                        ticks += 1;
                        if ticks > 2 {
                            Ok(UpdateDeadline::YieldCustom(
                                1,
                                Box::pin(tokio::task::yield_now()),
                            ))
                        } else {
                            Ok(UpdateDeadline::Continue(1))
                        }
                    });
                }
                store.set_epoch_deadline(1);
                (store, None, stdout, stderr, 0)
            }
        };

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

        // Consumed from the table when the guest sets its response.
        let outparam_rep = outparam.rep();
        let pre = worker.pre.clone();
        let task_worker = worker.clone();
        let task_tripped = request_tripped.clone();
        let metrics = self.metrics.clone();
        let tail = self.tail.clone();
        let invoked_at = std::time::Instant::now();
        let span = tracing::Span::current();
        // A user worker runs inline on this task until the guest has set
        // its response; only if the guest is still running then (streaming
        // its body, or working after responding) is the rest handed to a
        // task of its own. Most requests finish within that first stretch,
        // so they cost no spawn and no cross-thread wake-up (warm reuse:
        // +25-50 % req/s). A dispatch worker keeps a task of its own from
        // the start: it waits on its user workers' tasks and streams their
        // bodies, and inline it measured ~12 % slower end to end.
        let task = Box::pin(tracing::Instrument::instrument(
            async move {
                // The concurrency slot is held until the guest is done.
                let _permit = permit;
                let run = async {
                    let proxy = match warm_proxy {
                        Some(proxy) => proxy,
                        None => {
                            let instantiating = std::time::Instant::now();
                            let proxy = pre.instantiate_async(&mut store).await?;
                            metrics.instantiated(instantiating.elapsed().as_secs_f64());
                            proxy
                        }
                    };
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, incoming, outparam)
                        .await?;
                    Ok::<_, wasmtime::Error>(proxy)
                };
                let mut finished_proxy = None;
                let result = match tokio::time::timeout_at(deadline, run).await {
                    Ok(Ok(proxy)) => {
                        finished_proxy = Some(proxy);
                        Ok(())
                    }
                    Ok(Err(error)) if task_tripped.load(Ordering::Relaxed) => {
                        let _ = error;
                        Err(WorkerError::RequestTooLarge(limits.max_request_body))
                    }
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
                let cpu = store.data().cpu.used();
                let labels =
                    metrics.labels(task_worker.namespace.as_str(), task_worker.name.as_str());
                metrics.cpu(&labels, cpu.as_secs_f64());
                if tail.is_tailed(&task_worker.namespace, &task_worker.name) {
                    let mut logs = Vec::new();
                    for (stream, capture) in [("stdout", &stdout), ("stderr", &stderr)] {
                        let (text, _) = capture.contents();
                        logs.extend(text.lines().filter(|l| !l.is_empty()).map(|line| {
                            crate::tail::LogLine {
                                stream,
                                line: line.to_owned(),
                            }
                        }));
                    }
                    let event = crate::tail::TailEvent {
                        timestamp_ms: crate::store::now_ms(),
                        namespace: task_worker.namespace.to_string(),
                        script: task_worker.name.to_string(),
                        request_id,
                        method,
                        path,
                        status: None,
                        outcome: match &result {
                            Ok(()) => "ok".into(),
                            Err(e) => e.code().into(),
                        },
                        duration_ms: invoked_at.elapsed().as_millis() as u64,
                        cpu_ms: cpu.as_secs_f64() * 1000.0,
                        subrequests: store.data().egress.subrequests,
                        dispatched_to: dispatched
                            .map(|d| d.lock().map(|v| v.clone()).unwrap_or_default())
                            .unwrap_or_default(),
                        logs,
                    };
                    let worker = task_worker.clone();
                    // The status comes from the caller's side once it knows it;
                    // publishing must not hold up the invocation.
                    tokio::spawn(async move {
                        let mut event = event;
                        event.status = status_rx.await.ok().flatten();
                        if event.status.is_none() && event.outcome == "ok" {
                            event.outcome = "no-response".into();
                        }
                        tail.publish(&worker.namespace, &worker.name, event);
                    });
                }
                // A clean, warm-reusable instance goes back to its pool.
                if let (Some(proxy), true) = (finished_proxy, reuse) {
                    // A guest that returned without responding may still
                    // hold the outparam: reusing it would keep the client
                    // waiting on a response that can never come.
                    let responded = store
                        .data_mut()
                        .table()
                        .get(&Resource::<HostResponseOutparam>::new_own(outparam_rep))
                        .is_err();
                    let data = store.data();
                    let clean = result.is_ok()
                        && responded
                        && !data.cpu.limit_hit
                        && !data.limiter.memory_limit_hit
                        && !data.limiter.table_limit_hit
                        && !data.egress.subrequest_limit_hit
                        && !task_tripped.load(Ordering::Relaxed);
                    if clean {
                        let idle = reuse::Idle::new(
                            store,
                            proxy,
                            stdout.clone(),
                            stderr.clone(),
                            served + 1,
                        );
                        task_worker.pool.put(idle, &task_worker.isolation);
                    }
                }
                result
            },
            span,
        ));

        // The invocation bounds itself by `deadline`, so this wait ends by
        // then too: either the guest answers, or the invocation finishes
        // (having answered, failed, or timed out).
        let no_answer = |finished: Result<(), WorkerError>| match finished {
            // It ended without answering (the outparam was dropped): its
            // result says why.
            Ok(()) if request_tripped.load(Ordering::Relaxed) => {
                Err(WorkerError::RequestTooLarge(limits.max_request_body))
            }
            Ok(()) => Err(WorkerError::NoResponse),
            Err(error) => Err(error),
        };
        let mut run: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), WorkerError>> + Send>,
        > = if inline {
            task
        } else {
            let handle = tokio::spawn(task);
            Box::pin(async move {
                handle.await.unwrap_or_else(|join| {
                    Err(WorkerError::Internal(format!("worker task failed: {join}")))
                })
            })
        };
        let mut receiver = receiver;
        let answer = tokio::select! {
            biased;
            answer = &mut receiver => match answer {
                Ok(answer) => {
                    // Answered and still running: let it finish on its own
                    // (a spawned invocation already does; dropping its
                    // handle detaches it).
                    if inline {
                        tokio::spawn(run);
                    }
                    answer
                }
                Err(_) => return no_answer(run.await),
            },
            finished = &mut run => match receiver.await {
                Ok(answer) => answer,
                Err(_) => return no_answer(finished),
            },
        };
        let response = match answer {
            Ok(response) => response,
            Err(code) => {
                return Err(WorkerError::Exception(format!(
                    "worker answered with error code {code:?}"
                )));
            }
        };
        // The guest answered without having seen the whole request body: the
        // body was refused, so the client gets 413, not a partial answer.
        if request_tripped.load(Ordering::Relaxed) {
            return Err(WorkerError::RequestTooLarge(limits.max_request_body));
        }
        if !enforce {
            return Ok(response);
        }
        // Cap the response body while it streams.
        let response_tripped = Arc::new(AtomicBool::new(false));
        let tripped = response_tripped.clone();
        let (namespace, script) = (worker.namespace.clone(), worker.name.clone());
        let limit = limits.max_response_body;
        let counter = self.counters.response_body_limit_hits_handle();
        Ok(response.map(move |body| {
            let limited = LimitedBody::new(body, limit, Direction::Response, tripped);
            let guard = ResponseBodyGuard {
                tripped: response_tripped,
                namespace,
                script,
                limit,
                counter,
            };
            BodyExt::boxed_unsync(GuardedBody {
                inner: limited,
                guard,
            })
        }))
    }
}

/// Reports a response cut off by its size cap once, when the body is done.
struct ResponseBodyGuard {
    tripped: Arc<AtomicBool>,
    namespace: crate::names::Name,
    script: crate::names::Name,
    limit: u64,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for ResponseBodyGuard {
    fn drop(&mut self) {
        if self.tripped.load(Ordering::Relaxed) {
            self.counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                namespace = %self.namespace, script = %self.script, limit_bytes = self.limit,
                code = "response-too-large", "response body exceeded its limit; response cut off"
            );
        }
    }
}

/// A body carrying a guard that lives as long as the body.
struct GuardedBody<B> {
    inner: B,
    #[allow(dead_code)]
    guard: ResponseBodyGuard,
}

impl<B: http_body::Body + Unpin> http_body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
