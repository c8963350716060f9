//! `hello-handler`: the `hello` greeting as a tenant component that can run
//! behind a platform middleware (`berth:platform/inner-worker`, see
//! `wit/middleware.wit`).
//!
//! It exports `berth:platform/handler`, which a middleware such as
//! `examples/security-headers` imports; `wac plug` joins the two into one
//! `wasi:http/proxy` component. It also exports `wasi:http/incoming-handler`
//! with the same logic, so the same file serves on its own as well.
//!
//! Like `hello`, it greets with the `GREETING` var (default
//! `Hello from Berth!`) and the path that was requested.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "berth:platform/handler-server",
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

use bindings::exports::berth::platform::handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
    StatusCode,
};

/// A response whose body is written when the caller asks for it.
struct Response {
    status: StatusCode,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// The application: the same greeting `examples/hello` answers.
fn greet(request: &IncomingRequest) -> Response {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello from Berth!".to_string());
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    Response {
        status: 200,
        headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())],
        body: format!("{greeting} You requested {path}\n").into_bytes(),
    }
}

impl Response {
    fn fields(&self) -> Fields {
        Fields::from_list(&self.headers).expect("valid header names and values")
    }

    /// Streams the body into `body` (in pieces the stream accepts) and
    /// finishes it.
    fn write_into(&self, body: OutgoingBody) {
        let stream = body.write().expect("first call to write()");
        for chunk in self.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The client went away; nothing left to do.
                return;
            }
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

struct Hello;

// Behind a middleware: `berth:platform/handler`.
impl handler::Guest for Hello {
    type Response = Response;

    fn handle(request: IncomingRequest) -> Result<handler::Response, ErrorCode> {
        Ok(handler::Response::new(greet(&request)))
    }
}

impl handler::GuestResponse for Response {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn headers(&self) -> Fields {
        self.fields()
    }

    fn write_body(&self, body: OutgoingBody) {
        self.write_into(body)
    }
}

bindings::export!(Hello with_types_in bindings);

// On its own: `wasi:http/incoming-handler`.
impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let answer = greet(&request);
        let response = OutgoingResponse::new(answer.fields());
        let _ = response.set_status_code(answer.status);
        let body = response.body().expect("first call to body()");
        ResponseOutparam::set(out, Ok(response));
        answer.write_into(body);
    }
}

wasip2::http::proxy::export!(Hello);
