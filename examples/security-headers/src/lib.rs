//! `security-headers`: an example *platform middleware* for a composition
//! pipeline (`berth:platform/middleware`, see `wit/middleware.wit`).
//!
//! It exports `wasi:http/incoming-handler` and imports
//! `berth:platform/handler`, which the tenant's component exports. The
//! platform composes the two into one component before deploying it:
//!
//! ```sh
//! wac plug security_headers.wasm --plug tenant.wasm -o app.wasm
//! berth deploy app app.wasm
//! ```
//!
//! For each request it hands the incoming request to the tenant, takes the
//! tenant's response head (status and a mutable copy of its headers), sets
//! the platform's security headers on it — the platform's values win over
//! the tenant's — sends that head, and lets the tenant stream its body (and
//! trailers) straight to the client. The body bytes never pass through the
//! middleware.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "berth:platform/handler-client",
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

use bindings::berth::platform::handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The headers the platform puts on every response, replacing any value the
/// tenant set.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("strict-transport-security", "max-age=63072000"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-middleware", "security-headers"),
];

struct SecurityHeaders;
wasip2::http::proxy::export!(SecurityHeaders);

impl wasip2::exports::http::incoming_handler::Guest for SecurityHeaders {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        // A middleware may also answer by itself here (auth, redirects,
        // maintenance pages …) without calling the tenant at all.
        let inner = match handler::handle(request) {
            Ok(inner) => inner,
            Err(e) => return ResponseOutparam::set(out, Err(e)),
        };
        let headers = inner.headers();
        if let Err(e) = secure(&headers) {
            return ResponseOutparam::set(out, Err(e));
        }
        let response = OutgoingResponse::new(headers);
        if response.set_status_code(inner.status()).is_err() {
            let e = ErrorCode::InternalError(Some("tenant sent an invalid status".into()));
            return ResponseOutparam::set(out, Err(e));
        }
        let body: OutgoingBody = response.body().expect("first call to body()");
        // Send the head first: the tenant's body then streams to the client
        // while the tenant writes it.
        ResponseOutparam::set(out, Ok(response));
        inner.write_body(body);
    }
}

/// Sets the platform's security headers on `headers`.
fn secure(headers: &Fields) -> Result<(), ErrorCode> {
    for (name, value) in SECURITY_HEADERS {
        headers
            .set(name, &[value.as_bytes().to_vec()])
            .map_err(|e| ErrorCode::InternalError(Some(format!("setting {name}: {e:?}"))))?;
    }
    Ok(())
}
