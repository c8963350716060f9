//! Step 3 of an invocation: the `Store` a request runs in — fresh, or a
//! clean warm one of the same worker with its per-request state reset —
//! holding what the capabilities built for this call
//! ([`Capabilities::for_call`] / [`Capabilities::reset`]), the memory
//! limiter and the CPU meter with its epoch callback; then the request and
//! response-outparam resources the guest is called with. It never names a
//! capability.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::InvokeOptions;
use super::plan::Plan;
use crate::base::error::{WorkerError, one_line};
use crate::capabilities::{CallContext, Capabilities, WorkerRequest, WorkerResponse};
use crate::limits::cpu::Tick;
use crate::limits::host_memory::HostBudget;
use crate::limits::{CpuMeter, HostMemory};
use crate::runtime::reuse::Idle;
use crate::runtime::state::{Sandbox, WorkerState};
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
    /// For the tail event (cheap clones: made into text only when the
    /// script is tailed).
    pub method: http::Method,
    pub uri: http::Uri,
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
        options: &InvokeOptions,
    ) -> Instance {
        let cpu = CpuMeter::new(plan.limits.cpu, Some(self.heavy_lane.clone()))
            .with_yield_after(worker.admission.cpu_history.yield_after());
        let budget = HostBudget::split(plan.limits.host_memory_bytes);
        let warm = if worker.isolation.reuse() {
            worker.pool.take(&worker.isolation)
        } else {
            None
        };
        let (store, warm, stdout, stderr, served) = match warm {
            Some(idle) => self.reset_warm(idle, worker, plan, options, cpu, budget),
            None => {
                let (store, stdout, stderr) = self.fresh(worker, plan, options, cpu, budget);
                (store, None, stdout, stderr, 0)
            }
        };
        let dispatched = store
            .data()
            .capabilities
            .dispatcher
            .binding
            .as_ref()
            .map(|b| b.dispatched());
        Instance {
            store,
            warm,
            stdout,
            stderr,
            served,
            request_id: options.call.request_id.clone(),
            dispatched,
        }
    }

    /// What the capabilities build this call's state from.
    fn call_context<'a>(
        &'a self,
        worker: &'a Worker,
        plan: &'a Plan,
        options: &'a InvokeOptions,
        host_memory: &'a HostMemory,
    ) -> CallContext<'a> {
        CallContext {
            worker: &worker.spec,
            services: &self.services,
            call: &options.call,
            dispatch: options.dispatch.as_ref(),
            limits: &plan.limits,
            deadline: plan.deadline,
            host_memory,
        }
    }

    /// A new store: the sandbox, every capability's state for this call,
    /// the memory limiter and the CPU meter's epoch callback.
    fn fresh(
        &self,
        worker: &Worker,
        plan: &Plan,
        options: &InvokeOptions,
        cpu: CpuMeter,
        budget: HostBudget,
    ) -> (Store<WorkerState>, OutputCapture, OutputCapture) {
        let host_memory = HostMemory::new(budget.buffered_bytes, self.host_memory_total.clone());
        let (stdout, stderr) = (
            OutputCapture::new(self.stdio_capture_bytes, &host_memory),
            OutputCapture::new(self.stdio_capture_bytes, &host_memory),
        );
        let capabilities =
            Capabilities::for_call(&self.call_context(worker, plan, options, &host_memory));
        let sandbox = Sandbox {
            env: &worker.env,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            max_memory_bytes: plan.limits.memory_bytes,
            host_memory,
            table_slots: budget.table_slots,
            cpu,
        };
        let mut store = Store::new(&self.engine, WorkerState::new(sandbox, capabilities));
        store.limiter(|s| &mut s.limiter);
        if plan.enforce {
            meter_cpu(&mut store);
        } else {
            yield_by_ticks(&mut store);
        }
        store.set_epoch_deadline(1);
        fill_fuel(&mut store, plan.limits.fuel);
        (store, stdout, stderr)
    }

    /// A warm instance readied for this request: its captures cleared, its
    /// limits' state and every capability's state reset for this call.
    fn reset_warm(
        &self,
        idle: Idle,
        worker: &Worker,
        plan: &Plan,
        options: &InvokeOptions,
        cpu: CpuMeter,
        budget: HostBudget,
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
        data.cpu = cpu;
        data.limiter.reset_flags();
        data.reset_host_memory(budget.buffered_bytes, budget.table_slots);
        let host_memory = data.host_memory.clone();
        data.capabilities
            .reset(&self.call_context(worker, plan, options, &host_memory));
        store.set_epoch_deadline(1);
        fill_fuel(&mut store, plan.limits.fuel);
        (store, Some(proxy), stdout, stderr, served)
    }
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

/// CPU accounting: the invocation's [`Polled`](crate::limits::cpu::Polled)
/// future charges the time inside each of its polls; at every tick the
/// guest observes while executing, check the budget, then yield once past
/// the guest's slice, so a busy guest cannot starve other requests on its
/// worker thread.
fn meter_cpu(store: &mut Store<WorkerState>) {
    store.epoch_deadline_callback(|mut ctx| {
        let cpu = &mut ctx.data_mut().cpu;
        match cpu.tick(crate::limits::cpu::now()) {
            Tick::Continue => Ok(UpdateDeadline::Continue(1)),
            Tick::Yield => Ok(UpdateDeadline::YieldCustom(1, cpu.yield_now())),
            Tick::Exceeded => Err(wasmtime::Error::msg("cpu time limit exceeded")),
        }
    });
}

/// Without CPU accounting: the same yielding policy, by tick count (see
/// `CpuMeter::tick`).
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
        let method = request.method().clone();
        let uri = request.uri().clone();
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
                uri,
                request_id: self.request_id,
                dispatched: self.dispatched,
            },
            receiver,
        })
    }
}
