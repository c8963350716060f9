//! The single choke point for guests' outbound HTTP.
//!
//! Every `wasi:http/outgoing-handler.handle` call of every guest — user
//! workers, dispatch workers, outbound workers — reaches
//! [`EgressHooks`]'s `send_request`; guests get no sockets, so there is no
//! other way out. In order, a request is:
//!
//! 1. counted against the invocation's `subrequests` limit;
//! 2. handed to the namespace's **outbound worker**, if one is configured
//!    (it answers itself or forwards with its own request, which comes back
//!    through this module under the platform's policy);
//! 3. checked against the namespace's and the script's `egress.allow` /
//!    `egress.deny` patterns ([`crate::base::egress_rules`]);
//! 4. resolved (IP literals in any spelling are normalized, [`addr`]) and
//!    every resolved address checked against the denied ranges, unless
//!    `[egress] allow_private` opens it;
//! 5. sent to the vetted address itself — no second lookup, so DNS
//!    rebinding cannot swap it — with `Host` set to the checked authority
//!    ([`client`]).
//!
//! Each subrequest is logged (target `berth::egress`) with namespace,
//! script, method, scheme+authority (never the path or query), outcome and
//! duration; a denial names the rule. A denied request fails inside the
//! guest with `HttpRequestDenied`.
//!
//! Requests for the reserved `dispatch.internal` domain never reach the
//! network: a dispatch worker's go to its [`InternalRoute`] (the dispatcher
//! capability's fetch form); anyone else's are denied.
//!
//! This module never imports the runtime or the dispatcher: the outbound
//! worker runs through the [`super::Invoker`] seam.

pub mod addr;
pub mod budget;
pub mod client;
pub mod config;
mod hooks;
mod outbound;
pub mod policy;
pub mod resolve;

pub use config::EgressConfig;
pub use hooks::{EgressHooks, InternalRoute};
pub use outbound::outbound_header_name;
pub use policy::{Egress, EgressError};
