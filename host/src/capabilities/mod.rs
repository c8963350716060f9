//! Capabilities: what a guest can reach beyond its own sandbox, each as a
//! module with its own per-instance state, its own constructor and its
//! own `add_to_linker`, in the shape of Wasmtime's wasi-http and Spin's
//! factors.
//!
//! - [`http`]: outbound HTTP through one egress choke point (policy,
//!   resolver/connector seams, client, outbound worker hand-off).
//! - [`dispatcher`]: `berth:platform/dispatcher` for dispatch workers, and
//!   its fetch form (`*.dispatch.internal`).
//! - [`kv`]: `wasi:keyvalue/store`, one bucket per script generation.
//!
//! Every capability implements [`Capability`]: `for_call` builds its state
//! for one invocation from a [`CallContext`] (the worker, the host's
//! services, the call's options and limits), `reset` readies a warm
//! instance's state for its next call, `add_to_linker` links its
//! interfaces for a [`Role`]. The runtime never names a capability: it
//! builds [`Capabilities`] — the one list below — and links them all.
//! Adding a capability is a folder here plus one line in that list.
//!
//! A capability that must run another worker does so through the
//! [`Invoker`] seam ([`invoker`]), never by importing the runtime.

pub mod dispatcher;
pub mod http;
mod invoker;
pub mod kv;

use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

pub use crate::base::BoxFuture;
pub use invoker::{
    CallOptions, Invoker, InvokerRef, OutboundWorker, WorkerRef, WorkerRequest, WorkerResponse,
};

use crate::base::Role;
use crate::base::egress_rules::CompiledRules;
use crate::base::limits::Effective;
use crate::base::names::Name;
use crate::base::records::KvBucket;
use crate::limits::HostMemory;
use crate::observe::metrics::Metrics;
use crate::store::KvStore;

/// What the host gives every capability, built once with the runtime.
#[derive(Clone)]
pub struct HostServices {
    /// The egress choke point.
    pub egress: Arc<http::Egress>,
    /// Where scripts' KV buckets live.
    pub kv: Arc<dyn KvStore>,
    /// Metrics (bounded labels).
    pub metrics: Arc<Metrics>,
}

/// What capabilities know of a loaded worker: fixed when it is loaded.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Namespace of the script (for a platform component from a file, the
    /// namespace it serves).
    pub namespace: Name,
    /// Script name.
    pub name: Name,
    /// The script's KV bucket (none for platform components).
    pub kv: Option<KvBucket>,
    /// Namespace and script egress rules, compiled.
    pub egress_rules: Arc<Vec<CompiledRules>>,
}

/// Everything one invocation's capability state is built from.
pub struct CallContext<'a> {
    /// The worker the instance runs.
    pub worker: &'a WorkerSpec,
    /// The host's services.
    pub services: &'a HostServices,
    /// How the call runs: outbound parameters and worker, hops, request id.
    pub call: &'a CallOptions,
    /// For dispatch workers: the namespace their dispatcher reaches.
    pub dispatch: Option<&'a dispatcher::DispatchBinding>,
    /// Every limit level combined.
    pub limits: &'a Effective,
    /// When the invocation must be over.
    pub deadline: Instant,
    /// The instance's host-memory meter.
    pub host_memory: &'a HostMemory,
}

impl CallContext<'_> {
    /// Where the instance's requests to `*.dispatch.internal` go: its
    /// dispatcher, if it is a dispatch worker (the HTTP capability asks,
    /// so it never imports the dispatcher).
    pub fn internal_route(&self) -> Option<Arc<dyn http::InternalRoute>> {
        self.dispatch
            .map(|binding| Arc::new(binding.clone().with_deadline(self.deadline)) as _)
    }
}

/// The instance state a capability's host functions reach, handed out by
/// the store data ([`CapabilityHost::parts`]).
pub struct HostParts<'a> {
    /// Every capability's state.
    pub capabilities: &'a mut Capabilities,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// Wasmtime's `wasi:http` context.
    pub http: &'a mut WasiHttpCtx,
    /// The instance's host-memory meter.
    pub host_memory: &'a HostMemory,
}

/// Store data that holds [`Capabilities`]: what capabilities are linked
/// against.
pub trait CapabilityHost: WasiHttpView + Send + 'static {
    /// The parts the capabilities' host functions use.
    fn parts(&mut self) -> HostParts<'_>;
}

/// One capability: its per-instance state, how it is built and linked.
pub trait Capability: Sized + Send + 'static {
    /// The state for one invocation.
    fn for_call(cx: &CallContext<'_>) -> Self;

    /// Readies a warm instance's state for its next invocation; by default
    /// the state is built afresh.
    fn reset(&mut self, cx: &CallContext<'_>) {
        *self = Self::for_call(cx);
    }

    /// Links the capability's interfaces for components serving as `role`.
    fn add_to_linker<T: CapabilityHost>(linker: &mut Linker<T>, role: Role) -> anyhow::Result<()>;
}

/// Declares the capabilities every instance gets: the struct holding
/// their states and the three operations over all of them.
macro_rules! capabilities {
    ($($(#[doc = $doc:literal])* $field:ident: $ty:ty,)*) => {
        /// Every capability's state for one instance.
        pub struct Capabilities {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl Capabilities {
            /// Each capability's state for one invocation.
            pub fn for_call(cx: &CallContext<'_>) -> Self {
                Self { $($field: <$ty as Capability>::for_call(cx),)* }
            }

            /// Readies a warm instance for its next invocation.
            pub fn reset(&mut self, cx: &CallContext<'_>) {
                $(<$ty as Capability>::reset(&mut self.$field, cx);)*
            }

            /// Links every capability for components serving as `role`.
            pub fn add_to_linker<T: CapabilityHost>(
                linker: &mut Linker<T>,
                role: Role,
            ) -> anyhow::Result<()> {
                $(<$ty as Capability>::add_to_linker(linker, role)?;)*
                Ok(())
            }
        }
    };
}

capabilities! {
    /// Outbound HTTP.
    http: http::EgressHooks,
    /// The dispatcher (dispatch workers only).
    dispatcher: dispatcher::DispatcherState,
    /// The script's KV bucket.
    kv: kv::KvState,
}
