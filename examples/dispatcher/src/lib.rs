//! An example platform dispatch worker (`berth:platform/dispatch-worker`).
//!
//! - Routes `<customer>.<PLATFORM_DOMAIN>` to the customer's script.
//! - Requires `Authorization: Bearer <ADMIN_TOKEN>` for paths under `/admin`.
//! - Runs each customer under the limits in `CPU_MS`, `WALL_MS`,
//!   `MEMORY_MB`, `SUBREQUESTS` and tells the egress layer who the customer
//!   is (outbound parameter `customer`).
//! - Strips response headers starting with `x-internal-`.
//! - Answers JSON errors: 404 for unknown customers, 429 when a customer hits
//!   a limit, 503 when the host is overloaded, 502 when the worker fails.
//!
//! Its settings come from the `vars` of its `[[dispatch]]` entry.

use berth_sdk::dispatch::{self, DispatchError, Limits, Options};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Dispatcher;
wasip2::http::proxy::export!(Dispatcher);

fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

fn json_error(out: ResponseOutparam, status: u16, error: &str, customer: &str) {
    let body = format!("{{\"error\":\"{error}\",\"customer\":\"{customer}\"}}\n");
    dispatch::respond(out, status, "application/json", body.as_bytes());
}

impl wasip2::exports::http::incoming_handler::Guest for Dispatcher {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let domain = std::env::var("PLATFORM_DOMAIN").unwrap_or_else(|_| "localhost".into());
        let host = dispatch::host(&request).unwrap_or_default();
        let Some(customer) = dispatch::subdomain(&host, &domain).map(str::to_ascii_lowercase)
        else {
            return json_error(out, 404, "unknown-host", "");
        };
        let path = request.path_with_query().unwrap_or_default();
        if path == "/admin" || path.starts_with("/admin/") || path.starts_with("/admin?") {
            let expected = std::env::var("ADMIN_TOKEN").unwrap_or_default();
            let given = dispatch::header(&request, "authorization");
            let given = given
                .as_deref()
                .and_then(dispatch::bearer_token)
                .unwrap_or("");
            if expected.is_empty()
                || !dispatch::constant_time_eq(given.as_bytes(), expected.as_bytes())
            {
                return json_error(out, 401, "unauthorized", &customer);
            }
        }
        let options = Options {
            limits: Limits {
                cpu_ms: var("CPU_MS"),
                wall_ms: var("WALL_MS"),
                memory_mb: var("MEMORY_MB"),
                subrequests: var("SUBREQUESTS"),
            },
            outbound: vec![("customer".into(), customer.clone())],
        };
        match dispatch::get(&customer, &options).and_then(|worker| worker.forward(request)) {
            Ok(response) => {
                dispatch::send_response(out, response, |name| !name.starts_with("x-internal-"))
            }
            Err(DispatchError::WorkerNotFound) => {
                json_error(out, 404, "worker-not-found", &customer)
            }
            Err(DispatchError::Overloaded) => json_error(out, 503, "overloaded", &customer),
            Err(e) if e.is_limit() => json_error(out, 429, e.code(), &customer),
            Err(e) => json_error(out, 502, e.code(), &customer),
        }
    }
}
