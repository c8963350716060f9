//! The **invoker seam**: how a capability runs another worker (the
//! dispatcher, its fetch form, the outbound worker) without importing the
//! runtime. The runtime implements [`Invoker`]; capabilities hold it only
//! weakly ([`InvokerRef`]), so a cached instance never keeps its own
//! runtime alive.

use std::any::Any;
use std::sync::{Arc, Weak};

use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

use crate::base::BoxFuture;
use crate::base::error::WorkerError;
use crate::base::limits::CallLimits;
use crate::base::names::Name;
use crate::store::Hostnames;

/// A request handed to a worker (its body may still be streaming).
pub type WorkerRequest = ::http::Request<WasiBody>;

/// The response a worker produced; its body may still be streaming.
pub type WorkerResponse = ::http::Response<WasiBody>;

/// A loaded worker, opaque above the runtime: capabilities can name it and
/// hand it back to the [`Invoker`], nothing else.
#[derive(Clone)]
pub struct WorkerRef {
    name: Name,
    inner: Arc<dyn Any + Send + Sync>,
}

impl WorkerRef {
    /// Wraps the runtime's own worker type.
    pub fn new<W: Any + Send + Sync>(name: Name, worker: Arc<W>) -> Self {
        Self {
            name,
            inner: worker,
        }
    }

    /// The script's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The runtime's worker, if this reference holds one of type `W`.
    pub fn downcast<W: Any + Send + Sync>(&self) -> Option<Arc<W>> {
        self.inner.clone().downcast::<W>().ok()
    }
}

/// How a worker called by a capability runs, beyond the worker itself.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Per-call limits; combined with the script's and the host's, the
    /// minimum winning.
    pub limits: CallLimits,
    /// An outer deadline this call may not outlive (the caller's).
    pub deadline_cap: Option<Instant>,
    /// Outbound parameters from the dispatch worker, for the egress layer.
    pub outbound: Vec<(String, String)>,
    /// The outbound worker every subrequest goes to first, if any.
    pub outbound_worker: Option<OutboundWorker>,
    /// The id of the client request this call serves.
    pub request_id: Option<String>,
    /// Hops the client request already made; subrequests carry one more.
    pub hops: u32,
    /// The tenant on whose behalf this call runs (an outbound worker
    /// serving a user worker's subrequest): it takes a slot of that
    /// tenant's own share of the worker's concurrency, so one tenant with
    /// slow upstreams cannot take every slot of a worker all tenants share.
    pub on_behalf_of: Option<(Name, Name)>,
}

/// Runs workers on behalf of capabilities. Implemented by the runtime.
pub trait Invoker: Send + Sync + 'static {
    /// The loaded user worker `script` of `namespace` (loading it on first
    /// use); `worker-not-found` if there is none.
    fn user_worker(
        self: Arc<Self>,
        namespace: Name,
        script: Name,
    ) -> BoxFuture<'static, Result<WorkerRef, WorkerError>>;

    /// Serves `request` with `worker`: its static assets where they match,
    /// otherwise a fresh (or clean warm) instance of the guest.
    fn serve(
        self: Arc<Self>,
        worker: WorkerRef,
        request: WorkerRequest,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<WorkerResponse, WorkerError>>;

    /// The store's hostname tables (for `lookup-hostname`).
    fn hostnames(&self) -> Arc<dyn Hostnames>;
}

/// A weak handle on the [`Invoker`]: what capabilities keep in instance
/// state. Upgrading fails only while the host shuts down.
#[derive(Clone)]
pub struct InvokerRef(Weak<dyn Invoker>);

impl InvokerRef {
    /// A weak reference to `invoker`.
    pub fn new(invoker: &Arc<dyn Invoker>) -> Self {
        Self(Arc::downgrade(invoker))
    }

    /// The invoker, or `internal` if the host is shutting down.
    pub fn get(&self) -> Result<Arc<dyn Invoker>, WorkerError> {
        self.0
            .upgrade()
            .ok_or_else(|| WorkerError::Internal("the host is shutting down".into()))
    }
}

/// The outbound worker of a namespace, with the invoker to run it on.
#[derive(Clone)]
pub struct OutboundWorker {
    /// Where to run it.
    pub invoker: InvokerRef,
    /// The worker.
    pub worker: WorkerRef,
}
