//! The dispatcher capability: platform dispatch workers calling tenant
//! workers.
//!
//! A dispatch worker is a component of the `berth:platform/dispatch-worker`
//! world bound to one namespace ([`DispatchBinding`]). The host side of its
//! `dispatcher` import lives in `host`: `get` resolves a script of the bound
//! namespace only, `worker.fetch` runs it through the [`Invoker`] seam under
//! its own limits and hands the (streaming) response back as a
//! `wasi:http/types.incoming-response`, and every failure of the user
//! worker becomes a typed `dispatch-error`; 0.3.0's pass-through
//! ([`passthrough`]) forwards the dispatch worker's own request and answers
//! with a user worker's response without the guest copying either. Guests
//! that cannot pass `wasi:http` resources to that import (JavaScript) reach
//! the same machinery with `fetch("http://<script>.dispatch.internal/…")`
//! ([`fetch`]), which the HTTP capability routes here through its
//! [`InternalRoute`] hook.
//!
//! It never imports the runtime or routing: the binding holds the invoker
//! weakly, so a cached dispatch worker never keeps the runtime alive.
//!
//! [`Invoker`]: super::Invoker

mod bindings;
pub mod fetch;
mod host;
mod passthrough;
mod resources;

use wasmtime::component::{HasData, Linker};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtxView};

pub use host::DispatchBinding;
pub use resources::FutureResponse;

use super::http::InternalRoute;
use super::{BoxFuture, CallContext, Capability, CapabilityHost, HostParts};
use crate::base::Role;
use crate::base::reserved::Target;

/// The capability's per-instance state: set for dispatch workers only.
#[derive(Clone, Default)]
pub struct DispatcherState {
    /// Which namespace `dispatcher.get` reaches, and how.
    pub binding: Option<DispatchBinding>,
}

/// What the host functions see: this capability's state and the
/// instance's `wasi:http` view (resource table, header hooks).
pub struct DispatcherView<'a> {
    /// This capability's state.
    pub state: &'a mut DispatcherState,
    /// The instance's HTTP view.
    pub http: WasiHttpCtxView<'a>,
}

struct Dispatcher;

impl HasData for Dispatcher {
    type Data<'a> = DispatcherView<'a>;
}

impl Capability for DispatcherState {
    fn for_call(cx: &CallContext<'_>) -> Self {
        Self {
            binding: cx
                .dispatch
                .map(|binding| binding.clone().with_deadline(cx.deadline)),
        }
    }

    /// `berth:platform/dispatcher`, every package version (a dispatch
    /// worker built against 0.1.0 keeps working next to ones built against
    /// 0.2.0 and 0.3.0); user workers get none.
    fn add_to_linker<T: CapabilityHost>(linker: &mut Linker<T>, role: Role) -> anyhow::Result<()> {
        if role != Role::Dispatch {
            return Ok(());
        }
        let view: fn(&mut T) -> DispatcherView<'_> = view::<T>;
        bindings::v0_1::berth::platform::dispatcher::add_to_linker::<T, Dispatcher>(linker, view)
            .map_err(|e| anyhow::anyhow!("linking berth:platform/dispatcher@0.1.0: {e:#}"))?;
        bindings::v0_2::berth::platform::dispatcher::add_to_linker::<T, Dispatcher>(linker, view)
            .map_err(|e| anyhow::anyhow!("linking berth:platform/dispatcher@0.2.0: {e:#}"))?;
        bindings::v0_3::berth::platform::dispatcher::add_to_linker::<T, Dispatcher>(linker, view)
            .map_err(|e| anyhow::anyhow!("linking berth:platform/dispatcher@0.3.0: {e:#}"))
    }
}

/// The dispatcher's view of an instance: its own state and the instance's
/// `wasi:http` parts.
fn view<T: CapabilityHost>(host: &mut T) -> DispatcherView<'_> {
    let HostParts {
        capabilities,
        table,
        http,
        ..
    } = host.parts();
    DispatcherView {
        state: &mut capabilities.dispatcher,
        http: WasiHttpCtxView {
            ctx: http,
            table,
            hooks: &mut capabilities.http,
        },
    }
}

impl InternalRoute for DispatchBinding {
    fn serve(
        &self,
        target: Target,
        request: http::Request<WasiBody>,
    ) -> BoxFuture<'static, http::Response<WasiBody>> {
        let binding = self.clone();
        Box::pin(fetch::serve(binding, target, request))
    }
}
