//! `berth-sdk`: write Berth workers in Rust.
//!
//! User workers are ordinary `wasi:http/proxy` components — build them with
//! `wstd` or the `wasip2` crate; they need nothing from this crate. A
//! platform's **dispatch worker** additionally imports
//! `berth:platform/dispatcher` (see `wit/platform.wit`); this crate wraps
//! that import in a small API on top of the `wasip2` crate's `wasi:http`
//! types, so the platform's routing logic stays a few lines:
//!
//! ```ignore
//! use berth_sdk::dispatch::{self, Options};
//! use wasip2::http::types::{IncomingRequest, ResponseOutparam};
//!
//! struct Dispatcher;
//! wasip2::http::proxy::export!(Dispatcher);
//!
//! impl wasip2::exports::http::incoming_handler::Guest for Dispatcher {
//!     fn handle(request: IncomingRequest, out: ResponseOutparam) {
//!         let host = dispatch::host(&request).unwrap_or_default();
//!         let Some(customer) = dispatch::subdomain(&host, "example.com") else {
//!             return dispatch::respond(out, 404, "text/plain", b"unknown host\n");
//!         };
//!         let result = dispatch::get(customer, &Options::default())
//!             .and_then(|worker| worker.forward(request));
//!         match result {
//!             Ok(response) => dispatch::send_response(out, response, |_| true),
//!             Err(error) => dispatch::respond(out, 502, "text/plain", error.code().as_bytes()),
//!         }
//!     }
//! }
//! ```
//!
//! Build for `wasm32-wasip2`; the result targets the
//! `berth:platform/dispatch-worker` world.
//!
//! User workers can also use the `kv` module (wasm32 only): the script's own
//! key-value bucket.
//!
//! On every target the crate also carries the host's error contract:
//! [`ErrorCode`] and [`ERROR_HEADER`].

#![deny(missing_docs)]

mod error_code;
pub mod routing;

#[cfg(target_arch = "wasm32")]
pub mod dispatch;
#[cfg(target_arch = "wasm32")]
pub mod kv;

pub use error_code::{ERROR_HEADER, ErrorCode, UnknownErrorCode};
