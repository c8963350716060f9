//! Step 4 of an invocation: the guest's run. Instantiate (unless warm),
//! call `wasi:http/incoming-handler.handle` under the deadline, classify
//! how it ended, then account for it: captured output to the log, CPU to
//! the metrics, an event to the tail, and a clean warm instance back to its
//! pool. The concurrency slot is held until all of that is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::limits::admission::Permit;
use crate::limits::cpu::Polled;
use wasmtime::component::Resource;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostResponseOutparam};

use crate::capabilities::dispatcher::FutureResponse;

use super::instance::GuestCall;
use super::plan::Plan;
use crate::base::error::{WorkerError, one_line};
use crate::observe::metrics::Metrics;
use crate::observe::tail::{LogLine, TailEvent, TailHub};
use crate::runtime::reuse::Idle;
use crate::runtime::state::WorkerState;
use crate::runtime::stdio::{OutputCapture, tail_lines};
use crate::runtime::{Runtime, Worker};

/// The guest's whole run, as one future bounded by the deadline.
pub(super) type GuestRun = Pin<Box<dyn Future<Output = Result<(), WorkerError>> + Send>>;

impl Runtime {
    /// The guest's run for `call`, holding `permit` until it is over.
    pub(super) fn guest(
        &self,
        worker: Arc<Worker>,
        call: GuestCall,
        permit: Option<Permit>,
        plan: Plan,
        status_rx: tokio::sync::oneshot::Receiver<Option<u16>>,
    ) -> GuestRun {
        let metrics = self.services.metrics.clone();
        let counters = self.counters.clone();
        let tail = self.tail.clone();
        let span = tracing::Span::current();
        Box::pin(tracing::Instrument::instrument(
            async move {
                let _permit = permit;
                let invoked_at = std::time::Instant::now();
                let mut call = call;
                let outparam_rep = call.outparam.as_ref().map_or(0, |o| o.rep());
                let (result, proxy) = call_guest(&worker, &mut call, &plan, &metrics).await;
                counters.count_yields(call.store.data().cpu.yields());
                report(&worker, &call, &result, &metrics);
                if tail.is_tailed(&worker.spec.namespace, &worker.spec.name) {
                    publish(&tail, &worker, &call, &result, invoked_at, status_rx);
                }
                if let Some(proxy) = proxy {
                    return_to_pool(&worker, call, proxy, outparam_rep, &result);
                }
                result
            },
            span,
        ))
    }
}

/// Instantiates (unless warm) and calls the handler under the deadline.
/// The proxy comes back when the call returned normally.
async fn call_guest(
    worker: &Worker,
    call: &mut GuestCall,
    plan: &Plan,
    metrics: &Metrics,
) -> (Result<(), WorkerError>, Option<Proxy>) {
    let store = &mut call.store;
    let (Some(incoming), Some(outparam)) = (call.incoming.take(), call.outparam.take()) else {
        return (
            Err(WorkerError::Internal(
                "the request was already handed over".into(),
            )),
            None,
        );
    };
    let warm = call.warm.take();
    let link = store.data().cpu.link();
    let run = async {
        let proxy = match warm {
            Some(proxy) => proxy,
            None => {
                let instantiating = std::time::Instant::now();
                let proxy = worker.pre.instantiate_async(&mut *store).await?;
                metrics.instantiated(instantiating.elapsed().as_secs_f64());
                proxy
            }
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, incoming, outparam)
            .await?;
        Ok::<_, wasmtime::Error>(proxy)
    };
    // The CPU meter charges the run's polls (instantiation included), not
    // the waits between them; a heavy guest polls only in the lane.
    // Pinned in place: the run (with Wasmtime's instantiation inside) is
    // several KiB, not worth a heap copy per invocation.
    let finished = {
        let run = std::pin::pin!(run);
        tokio::time::timeout_at(plan.deadline, Polled::new(run, link)).await
    };
    match finished {
        Ok(Ok(proxy)) => (Ok(()), Some(proxy)),
        Ok(Err(_)) if call.request_tripped.load(Ordering::Relaxed) => (
            Err(WorkerError::RequestTooLarge(plan.limits.max_request_body)),
            None,
        ),
        Ok(Err(error)) => {
            let state = call.store.data_mut();
            // Out of table slots: the guest's share of its host-memory budget.
            let table_full = state.table_full();
            let error = classify(&error, state, table_full, &call.stderr);
            (Err(error), None)
        }
        Err(_) => (Err(WorkerError::WallLimit), None),
    }
}

/// Maps a failed instantiation or call to what the client is told.
fn classify(
    error: &wasmtime::Error,
    state: &WorkerState,
    table_full: bool,
    stderr: &OutputCapture,
) -> WorkerError {
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return WorkerError::Overloaded;
    }
    if matches!(error.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) {
        return WorkerError::FuelLimit;
    }
    if state.cpu.limit_hit {
        return WorkerError::CpuLimit;
    }
    if state.limiter.memory_limit_hit
        || state.limiter.table_limit_hit
        || state.host_memory.limit_hit()
        || table_full
    {
        return WorkerError::MemoryLimit;
    }
    if state.capabilities.http.subrequest_limit_hit {
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

/// Logs the guest's output and failure, and meters its CPU time, fuel
/// and the most memory it held.
fn report(worker: &Worker, call: &GuestCall, result: &Result<(), WorkerError>, metrics: &Metrics) {
    emit_output(worker, &call.stdout, &call.stderr);
    if let Err(error) = result {
        tracing::warn!(
            namespace = %worker.spec.namespace, script = %worker.spec.name,
            code = error.code().as_str(), %error, "worker invocation failed"
        );
    }
    let series = worker.series(metrics);
    let used = call.store.data().cpu.used();
    worker.admission.cpu_history.record(used);
    metrics.cpu_of(series, used.as_secs_f64());
    if let Some(fuel) = fuel_used(&call.store) {
        metrics.fuel_of(series, fuel);
    }
    let state = call.store.data();
    let memory = state.limiter.memory_bytes() + state.host_memory.peak();
    metrics.memory_of(series, memory as u64);
}

/// Fuel the request consumed, on hosts that meter fuel.
fn fuel_used(store: &Store<WorkerState>) -> Option<u64> {
    let budget = store.data().fuel_budget?;
    let left = store.get_fuel().ok()?;
    Some(budget.saturating_sub(left))
}

/// Emits a finished invocation's captured stdout/stderr through `tracing`,
/// one event per line, attributed to the script.
fn emit_output(worker: &Worker, stdout: &OutputCapture, stderr: &OutputCapture) {
    for (stream, capture) in [("stdout", stdout), ("stderr", stderr)] {
        let (text, dropped) = capture.contents();
        for line in text.lines().filter(|l| !l.is_empty()) {
            tracing::info!(
                target: "berth::guest", namespace = %worker.spec.namespace,
                script = %worker.spec.name, stream, "{line}"
            );
        }
        if dropped > 0 {
            tracing::warn!(
                target: "berth::guest", namespace = %worker.spec.namespace,
                script = %worker.spec.name, stream, dropped, "guest output over the capture limit was dropped"
            );
        }
    }
}

/// Publishes the tail event of this invocation once the caller knows the
/// status it answered with; publishing never holds up the invocation.
fn publish(
    tail: &Arc<TailHub>,
    worker: &Arc<Worker>,
    call: &GuestCall,
    result: &Result<(), WorkerError>,
    invoked_at: std::time::Instant,
    status_rx: tokio::sync::oneshot::Receiver<Option<u16>>,
) {
    let mut logs = Vec::new();
    for (stream, capture) in [("stdout", &call.stdout), ("stderr", &call.stderr)] {
        let (text, _) = capture.contents();
        logs.extend(text.lines().filter(|l| !l.is_empty()).map(|line| LogLine {
            stream,
            line: line.to_owned(),
        }));
    }
    let data = call.store.data();
    let mut event = TailEvent {
        timestamp_ms: crate::store::now_ms(),
        namespace: worker.spec.namespace.to_string(),
        script: worker.spec.name.to_string(),
        request_id: call.request_id.clone(),
        method: call.method.to_string(),
        path: call.uri.path().to_owned(),
        status: None,
        outcome: match result {
            Ok(()) => "ok".into(),
            Err(e) => e.code().as_str().into(),
        },
        duration_ms: invoked_at.elapsed().as_millis() as u64,
        cpu_ms: data.cpu.used().as_secs_f64() * 1000.0,
        fuel: fuel_used(&call.store),
        subrequests: data.capabilities.http.subrequests,
        dispatched_to: call
            .dispatched
            .as_ref()
            .map(|d| d.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default(),
        logs,
    };
    let (tail, worker) = (tail.clone(), worker.clone());
    tokio::spawn(async move {
        event.status = status_rx.await.ok().flatten();
        if event.status.is_none() && event.outcome == "ok" {
            event.outcome = "no-response".into();
        }
        tail.publish(&worker.spec.namespace, &worker.spec.name, event);
    });
}

/// Returns a clean instance to its worker's pool (warm reuse only). Never
/// one that failed, hit any limit, or still holds its response outparam.
fn return_to_pool(
    worker: &Worker,
    call: GuestCall,
    proxy: Proxy,
    outparam_rep: u32,
    result: &Result<(), WorkerError>,
) {
    if !worker.isolation.reuse() {
        return;
    }
    let GuestCall {
        mut store,
        stdout,
        stderr,
        served,
        request_tripped,
        ..
    } = call;
    // A guest that returned without responding may still hold the
    // outparam: reusing it would keep the client waiting on a response that
    // can never come.
    let responded = store
        .data_mut()
        .table()
        .get(&Resource::<HostResponseOutparam>::new_own(outparam_rep))
        .is_err();
    // Nothing the request started may outlive it: an instance still waiting
    // on a subrequest (or a dispatched call) is dropped, which cancels them.
    // Nor is an instance reused that ends a request holding more than a
    // quarter of its table (handles it never dropped): those would add up
    // request after request until one failed with `memory-limit`.
    let idle = table_allows_reuse(store.data_mut().table());
    if result.is_ok()
        && responded
        && idle
        && is_clean(&store)
        && !request_tripped.load(Ordering::Relaxed)
    {
        let idle = Idle::new(store, proxy, stdout, stderr, served + 1);
        worker.pool.put(idle, &worker.isolation);
    }
}

/// Whether the instance's table, after a request, lets it serve another:
/// no pending subrequest or dispatched call, and at most a quarter of the
/// table's capacity still held.
fn table_allows_reuse(table: &mut wasmtime::component::ResourceTable) -> bool {
    let most = table.max_capacity() / 4;
    let mut held = 0;
    for entry in table.iter_mut() {
        let entry: &dyn std::any::Any = entry;
        let pending = matches!(
            entry.downcast_ref::<HostFutureIncomingResponse>(),
            Some(HostFutureIncomingResponse::Pending(_))
        ) || matches!(
            entry.downcast_ref::<FutureResponse>(),
            Some(FutureResponse::Pending(_))
        );
        held += 1;
        if pending || held > most {
            return false;
        }
    }
    true
}

/// Whether the instance hit no limit during the request.
fn is_clean(store: &Store<WorkerState>) -> bool {
    let data = store.data();
    !data.cpu.limit_hit
        && !data.limiter.memory_limit_hit
        && !data.limiter.table_limit_hit
        && !data.host_memory.limit_hit()
        && !data.capabilities.http.subrequest_limit_hit
}
