//! The HTTP capability's per-instance state: [`EgressHooks`], Wasmtime's
//! `WasiHttpHooks` for one invocation — who is calling, which rules apply,
//! the subrequest count, the hop count, the dispatch worker's outbound
//! parameters and outbound worker — built for each call from its
//! [`CallContext`].

use std::sync::Arc;

use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::client::Sent;
use super::outbound::via_outbound_worker;
use super::policy::{Egress, EgressError};
use crate::base::Role;
use crate::base::egress_rules::CompiledRules;
use crate::base::platform_headers::HOP_HEADER;
use crate::base::reserved::{Target, reserved_target};
use crate::capabilities::{
    BoxFuture, CallContext, CallOptions, Capability, CapabilityHost, OutboundWorker,
};
use crate::observe::metrics::Metrics;

type HookFuture<T> = Box<dyn Future<Output = T> + Send>;

/// Requests a guest addresses to the reserved `dispatch.internal` domain
/// go here instead of the network — only for guests that have one (dispatch
/// workers); every other guest is refused. The dispatcher capability
/// implements it.
pub trait InternalRoute: Send + Sync + 'static {
    /// Serves `request` for the reserved `target`.
    fn serve(
        &self,
        target: Target,
        request: http::Request<WasiBody>,
    ) -> BoxFuture<'static, http::Response<WasiBody>>;
}

/// Per-invocation egress state: who is calling, which rules apply, how many
/// subrequests they have made and may make, and the dispatch worker's
/// outbound parameters.
pub struct EgressHooks {
    namespace: String,
    script: String,
    egress: Arc<Egress>,
    rules: Arc<Vec<CompiledRules>>,
    /// Subrequests made so far by this invocation (denied ones included).
    pub subrequests: u32,
    max_subrequests: u32,
    /// Set when a subrequest was refused because of the limit.
    pub subrequest_limit_hit: bool,
    /// Parameters the dispatch worker attached to this invocation
    /// (`options.outbound`); never visible to the guest.
    pub outbound: Vec<(String, String)>,
    outbound_worker: Option<OutboundWorker>,
    metrics: Arc<Metrics>,
    /// Set for dispatch workers: requests to `*.dispatch.internal` go to
    /// their namespace's user workers instead of the network.
    internal: Option<Arc<dyn InternalRoute>>,
    /// Hops of the request this invocation serves; subrequests carry one
    /// more in `berth-hop-count`.
    hops: u32,
    /// When the invocation must be over: the outbound worker may not
    /// outlive it.
    deadline: tokio::time::Instant,
    /// The client request this invocation serves, for the outbound
    /// worker's tail and logs.
    request_id: Option<String>,
    /// Who this invocation is (namespace, script): the outbound worker
    /// runs its subrequests under this tenant's share.
    tenant: (crate::base::names::Name, crate::base::names::Name),
    /// Header bytes the guest's maps hold in this call, charged to its
    /// budget (see `budget`).
    pub headers: super::budget::HeaderCharges,
}

impl Capability for EgressHooks {
    fn for_call(cx: &CallContext<'_>) -> Self {
        Self {
            namespace: cx.worker.namespace.to_string(),
            script: cx.worker.name.to_string(),
            egress: cx.services.egress.clone(),
            rules: cx.worker.egress_rules.clone(),
            subrequests: 0,
            max_subrequests: cx.limits.subrequests,
            subrequest_limit_hit: false,
            outbound: cx.call.outbound.clone(),
            outbound_worker: cx.call.outbound_worker.clone(),
            metrics: cx.services.metrics.clone(),
            internal: cx.internal_route(),
            hops: cx.call.hops,
            deadline: cx.deadline,
            request_id: cx.call.request_id.clone(),
            tenant: (cx.worker.namespace.clone(), cx.worker.name.clone()),
            headers: Default::default(),
        }
    }

    /// `wasi:http` (types and outgoing-handler) for every role; every
    /// outgoing request then reaches the instance's [`EgressHooks`], and
    /// what the host buffers for the guest is charged to its host-memory
    /// budget ([`super::budget`]).
    fn add_to_linker<T: CapabilityHost>(linker: &mut Linker<T>, _role: Role) -> anyhow::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
            .map_err(|e| anyhow::anyhow!("linking wasi:http: {e:#}"))?;
        super::budget::add_to_linker(linker)
    }
}

impl EgressHooks {
    /// How the outbound worker runs for one subrequest: the invocation's
    /// deadline and request id, one more hop (a request looping through
    /// the outbound worker is caught like any other loop), and this
    /// tenant's own share of the outbound worker's concurrency.
    fn outbound_call(&self) -> CallOptions {
        CallOptions {
            deadline_cap: Some(self.deadline),
            request_id: self.request_id.clone(),
            hops: self.hops.saturating_add(1),
            on_behalf_of: Some(self.tenant.clone()),
            ..CallOptions::default()
        }
    }
}

/// One subrequest as the logs and metrics name it.
#[derive(Clone)]
struct Subrequest {
    namespace: String,
    script: String,
    method: http::Method,
    /// `scheme://authority` (never the path or query).
    target: String,
    metrics: Arc<Metrics>,
}

impl Subrequest {
    fn count(&self, outcome: &str) {
        self.metrics
            .subrequest(&self.namespace, &self.script, outcome);
    }

    /// Refuses it inside the guest, logging the rule.
    fn deny(&self, rule: &str) -> HookFuture<SendResult> {
        self.count("denied");
        let Self {
            namespace,
            script,
            method,
            target,
            ..
        } = self;
        tracing::warn!(
            target: "berth::egress", %namespace, %script, %method, %target, %rule,
            "subrequest denied"
        );
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }

    /// Logs and counts how it ended.
    fn finish(&self, started: Instant, result: Result<Sent, HttpError>, via: &str) -> SendResult {
        log_outcome(self, started, &result, via);
        self.count(if result.is_ok() { "ok" } else { "error" });
        result.map(unpin_io)
    }
}

/// What `send_request` hands back.
type SendResult = Result<(http::Response<WasiBody>, HookFuture<Result<(), HttpError>>), HttpError>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: HookFuture<Result<(), HttpError>>,
    ) -> HookFuture<SendResult> {
        drop(fut);
        let reserved = request.uri().host().and_then(reserved_target);
        // A dispatch worker calling a user worker: not a subrequest, and
        // never the network.
        if let (Some(target), Some(route)) = (reserved.clone(), self.internal.clone()) {
            return Box::new(async move {
                let response = route.serve(target, request).await;
                Ok((response, Box::new(async { Ok(()) }) as HookFuture<_>))
            });
        }
        self.subrequests += 1;
        let sub = Subrequest {
            namespace: self.namespace.clone(),
            script: self.script.clone(),
            method: request.method().clone(),
            target: format!(
                "{}://{}",
                request.uri().scheme_str().unwrap_or("http"),
                request.uri().authority().map(|a| a.as_str()).unwrap_or("")
            ),
            metrics: self.metrics.clone(),
        };
        if reserved.is_some() {
            return sub.deny("reserved domain *.dispatch.internal (dispatch workers only)");
        }
        if self.subrequests > self.max_subrequests {
            self.subrequest_limit_hit = true;
            return sub.deny(&format!("subrequest limit ({})", self.max_subrequests));
        }
        // A subrequest that comes back into a Berth host (a worker fetching
        // its own public hostname) carries one more hop; the data plane
        // refuses it past `egress.max_hops`.
        request.headers_mut().insert(
            HOP_HEADER,
            http::HeaderValue::from(self.hops.saturating_add(1)),
        );
        if let Some(outbound) = self.outbound_worker.clone() {
            let (params, call) = (self.outbound.clone(), self.outbound_call());
            return Box::new(async move {
                let started = Instant::now();
                let result = via_outbound_worker(outbound, params, call, request).await;
                sub.finish(started, result, "outbound worker")
            });
        }
        let (egress, rules) = (self.egress.clone(), self.rules.clone());
        Box::new(async move {
            let started = Instant::now();
            match egress.send(&rules, request, options).await {
                Err(EgressError::Denied(rule)) => {
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    Box::into_pin(sub.deny(&format!("{rule} (after {elapsed_ms} ms)"))).await
                }
                Err(EgressError::Failed(error)) => sub.finish(started, Err(error), "network"),
                Ok(sent) => sub.finish(started, Ok(sent), "network"),
            }
        })
    }
}

/// The hook wants the connection future as a plain box.
fn unpin_io((response, io): Sent) -> (http::Response<WasiBody>, HookFuture<Result<(), HttpError>>) {
    (response, Box::new(io))
}

fn log_outcome(sub: &Subrequest, started: Instant, result: &Result<Sent, HttpError>, via: &str) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let Subrequest {
        namespace,
        script,
        method,
        target,
        ..
    } = sub;
    match result {
        Ok((response, _)) => tracing::info!(
            target: "berth::egress", %namespace, %script, %method, %target, via,
            status = response.status().as_u16(), elapsed_ms, "subrequest"
        ),
        Err(error) => tracing::warn!(
            target: "berth::egress", %namespace, %script, %method, %target, via,
            error = %error, elapsed_ms, "subrequest failed"
        ),
    }
}
