//! Step 3 of an invocation: the `Store` a request runs in — fresh, or a
//! clean warm one of the same worker with its per-request state reset —
//! holding each capability's state for this request, the memory limiter and
//! the CPU meter with its hooks; then the request and response-outparam
//! resources the guest is called with.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;
use wasmtime::{CallHook, Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::InvokeOptions;
use super::plan::Plan;
use crate::base::error::{WorkerError, one_line};
use crate::capabilities::dispatcher::DispatcherState;
use crate::capabilities::http::EgressHooks;
use crate::capabilities::kv::{KvScope, KvState};
use crate::capabilities::{WorkerRequest, WorkerResponse};
use crate::limits::host_memory::HostBudget;
use crate::limits::{CpuMeter, HostMemory};
use crate::runtime::reuse::Idle;
use crate::runtime::state::{StateParams, WorkerState};
use crate::runtime::stdio::OutputCapture;
use crate::runtime::{Runtime, Worker};

/// What the guest answers through its response outparam.
pub(super) type Answer = Result<WorkerResponse, ErrorCode>;

/// A store ready for one request.
pub(super) struct Instance {
    store: Store<WorkerState>,
    warm: Option<Proxy>,
    stdout: OutputCapture,
    stderr: OutputCapture,
    served: u32,
    request_id: Option<String>,
    dispatched: Option<Arc<Mutex<Vec<String>>>>,
}

/// Everything the guest's run needs, once the request is in its table.
pub(super) struct GuestCall {
    pub store: Store<WorkerState>,
    /// A warm instance's component, already instantiated.
    pub warm: Option<Proxy>,
    pub stdout: OutputCapture,
    pub stderr: OutputCapture,
    /// Requests the (warm) instance served before this one.
    pub served: u32,
    /// Handed to the guest by the call (taken once).
    pub incoming: Option<Resource<HostIncomingRequest>>,
    /// Handed to the guest by the call (taken once).
    pub outparam: Option<Resource<HostResponseOutparam>>,
    /// Raised when the request body went over its cap.
    pub request_tripped: Arc<AtomicBool>,
    /// For the tail event.
    pub method: String,
    pub path: String,
    pub request_id: Option<String>,
    pub dispatched: Option<Arc<Mutex<Vec<String>>>>,
}

/// A started call: the guest's run and where its answer arrives.
pub(super) struct Started {
    pub run: GuestCall,
    pub receiver: tokio::sync::oneshot::Receiver<Answer>,
}

impl Runtime {
    /// The store for one request of `worker`: a clean warm instance when
    /// the worker reuses them and one is idle, else a fresh store.
    pub(super) fn instance(
        &self,
        worker: &Worker,
        plan: &Plan,
        options: InvokeOptions,
    ) -> Instance {
        let dispatch = options
            .dispatch
            .map(|binding| binding.with_deadline(plan.deadline));
        let dispatched = dispatch.as_ref().map(|b| b.dispatched());
        let egress = EgressHooks::new(
            worker.namespace.as_str(),
            worker.name.as_str(),
            self.egress.clone(),
            worker.egress_rules.clone(),
        )
        .with_subrequest_limit(Some(plan.limits.subrequests))
        .with_outbound(options.outbound)
        .with_outbound_worker(options.outbound_worker)
        .with_hops(options.hops)
        .with_internal_route(dispatch.as_ref().map(|b| b.internal_route()))
        .with_metrics(self.metrics.clone());
        let dispatch = DispatcherState { binding: dispatch };
        let cpu = CpuMeter::new(plan.limits.cpu)
            .with_lane(Some(self.heavy_lane.clone()))
            .with_yield_after(worker.admission.cpu_history.yield_after());
        let budget = HostBudget::split(plan.limits.host_memory_bytes);
        let warm = if worker.isolation.reuse() {
            worker.pool.take(&worker.isolation)
        } else {
            None
        };
        let (store, warm, stdout, stderr, served) = match warm {
            Some(idle) => reset_warm(idle, egress, dispatch, cpu, budget, plan.limits.fuel),
            None => {
                let host_memory =
                    HostMemory::new(budget.buffered_bytes, self.host_memory_total.clone());
                let (stdout, stderr) = (
                    OutputCapture::new(self.stdio_capture_bytes, &host_memory),
                    OutputCapture::new(self.stdio_capture_bytes, &host_memory),
                );
                let kv = KvState {
                    memory: host_memory.clone(),
                    scope: worker.kv_enabled.then(|| {
                        KvScope::new(
                            self.store.clone(),
                            worker.namespace.clone(),
                            worker.name.clone(),
                            self.limits.kv_quota(&worker.limits),
                        )
                    }),
                };
                let state = WorkerState::new(StateParams {
                    env: &worker.env,
                    stdout: stdout.clone(),
                    stderr: stderr.clone(),
                    max_memory_bytes: plan.limits.memory_bytes,
                    host_memory,
                    table_slots: budget.table_slots,
                    cpu,
                    egress,
                    dispatch,
                    kv,
                });
                let store = self.fresh_store(state, plan);
                (store, None, stdout, stderr, 0)
            }
        };
        Instance {
            store,
            warm,
            stdout,
            stderr,
            served,
            request_id: options.request_id,
            dispatched,
        }
    }

    /// A new store with the memory limiter and the CPU/yield hooks.
    fn fresh_store(&self, state: WorkerState, plan: &Plan) -> Store<WorkerState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if plan.enforce {
            meter_cpu(&mut store);
        } else {
            yield_by_ticks(&mut store);
        }
        store.set_epoch_deadline(1);
        fill_fuel(&mut store, plan.limits.fuel);
        store
    }
}

/// A warm instance with this request's per-request state.
fn reset_warm(
    idle: Idle,
    egress: EgressHooks,
    dispatch: DispatcherState,
    cpu: CpuMeter,
    budget: HostBudget,
    fuel: Option<u64>,
) -> (
    Store<WorkerState>,
    Option<Proxy>,
    OutputCapture,
    OutputCapture,
    u32,
) {
    let Idle {
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
    data.dispatch = dispatch;
    data.cpu = cpu;
    data.limiter.reset_flags();
    data.reset_host_memory(budget.buffered_bytes, budget.table_slots);
    store.set_epoch_deadline(1);
    fill_fuel(&mut store, fuel);
    (store, Some(proxy), stdout, stderr, served)
}

/// Gives the store this request's fuel (only engines that meter fuel have
/// a budget: the host's `[limits] fuel` turns both on).
fn fill_fuel(store: &mut Store<WorkerState>, fuel: Option<u64>) {
    store.data_mut().fuel_budget = fuel;
    if let Some(fuel) = fuel
        && let Err(error) = store.set_fuel(fuel)
    {
        // An engine without fuel metering: nothing to count or enforce.
        tracing::error!(%error, "fuel budget on an engine without fuel metering");
        store.data_mut().fuel_budget = None;
    }
}

/// CPU accounting: execution segments run from entering wasm to leaving it
/// (host call, return) or yielding at an epoch tick. At every tick the
/// guest observes while executing, check the budget, then yield so a busy
/// guest cannot starve other requests on its worker thread.
fn meter_cpu(store: &mut Store<WorkerState>) {
    store.call_hook(|mut ctx, hook| {
        let now = std::time::Instant::now();
        let cpu = &mut ctx.data_mut().cpu;
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => cpu.start(now),
            CallHook::CallingHost | CallHook::ReturningFromWasm => {
                cpu.leave_lane();
                cpu.stop(now)
            }
        }
        Ok(())
    });
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
}

/// Without CPU accounting: the same yielding policy, by tick count (see
/// `CpuMeter::should_yield`).
fn yield_by_ticks(store: &mut Store<WorkerState>) {
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

impl Instance {
    /// Puts the request and a response outparam into the instance's table.
    pub(super) fn start(
        mut self,
        request: WorkerRequest,
        request_tripped: Arc<AtomicBool>,
    ) -> Result<Started, WorkerError> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = self.store.data_mut().http();
        let incoming = http.new_incoming_request(Scheme::Http, request);
        let outparam = http.new_response_outparam(sender);
        let (incoming, outparam) = match (incoming, outparam) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => {
                return Err(WorkerError::Internal(one_line(&format!("{e:#}"))));
            }
        };
        Ok(Started {
            run: GuestCall {
                store: self.store,
                warm: self.warm,
                stdout: self.stdout,
                stderr: self.stderr,
                served: self.served,
                incoming: Some(incoming),
                outparam: Some(outparam),
                request_tripped,
                method,
                path,
                request_id: self.request_id,
                dispatched: self.dispatched,
            },
            receiver,
        })
    }
}
