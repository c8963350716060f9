//! Dispatch-worker API: reach the user workers of your namespace.
//!
//! [`get`] selects a user worker; [`Worker::forward`] sends it the incoming
//! request (method, path, headers and a streamed body) and waits for its
//! response; [`send_response`] streams a response back to the client,
//! optionally dropping headers. For fan-out, [`Worker::start`] several
//! requests and [`wait_all`] for them. All failures of a user worker arrive
//! as a typed [`DispatchError`].
//!
//! The bindings are `berth:platform@0.1.0`'s. The `platform-0-3` feature
//! builds against 0.3.0 instead (a host of 0.3.0 or later is needed):
//! [`DispatchError`] gains `FuelLimitExceeded`, and [`Worker::forward`],
//! [`Worker::start`] and [`send_response`] hand the request and the
//! response to the host (`worker.forward-incoming`, `send-response`)
//! instead of copying them through `wasi:http` resources — about 50 fewer
//! host calls for a forwarded request.

#[cfg(not(feature = "platform-0-3"))]
use wasip2::http::types::Scheme;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam,
};
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// The `dispatch-client` bindings of the WIT folder `$path`, over the
/// `wasip2` crate's `wasi:*` types.
macro_rules! dispatch_client {
    ($path:literal) => {
        wit_bindgen::generate!({
            path: $path,
            world: "berth:platform/dispatch-client",
            with: {
                "wasi:http/types@0.2.12": wasip2::http::types,
                "wasi:io/poll@0.2.12": wasip2::io::poll,
                "wasi:io/streams@0.2.12": wasip2::io::streams,
                "wasi:io/error@0.2.12": wasip2::io::error,
                "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            },
        });
    };
}

/// `berth:platform@0.1.0` (`wit/`), unless the `platform-0-3` feature asks
/// for 0.3.0 (`wit/v0.3/`): the same API, with `fuel-limit-exceeded` told
/// apart and the request and response moved on the host side.
#[cfg(not(feature = "platform-0-3"))]
mod bindings {
    dispatch_client!("../wit");
}

#[cfg(feature = "platform-0-3")]
mod bindings {
    dispatch_client!("../wit/v0.3");
}

pub use crate::routing::{bearer_token, constant_time_eq, first_label, strip_port, subdomain};
use bindings::berth::platform::dispatcher;
pub use bindings::berth::platform::dispatcher::{
    DispatchError, FutureResponse, Limits, Options, Worker,
};

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_ms: None,
            wall_ms: None,
            memory_mb: None,
            subrequests: None,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            outbound: Vec::new(),
        }
    }
}

impl DispatchError {
    /// A stable kebab-case name of the variant (e.g. `cpu-limit-exceeded`),
    /// handy for logs and JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DispatchError::WorkerNotFound => "worker-not-found",
            DispatchError::CpuLimitExceeded => "cpu-limit-exceeded",
            #[cfg(feature = "platform-0-3")]
            DispatchError::FuelLimitExceeded => "fuel-limit-exceeded",
            DispatchError::WallLimitExceeded => "wall-limit-exceeded",
            DispatchError::MemoryLimitExceeded => "memory-limit-exceeded",
            DispatchError::SubrequestLimitExceeded => "subrequest-limit-exceeded",
            DispatchError::RequestBodyTooLarge(_) => "request-body-too-large",
            DispatchError::Exception(_) => "exception",
            DispatchError::NoResponse => "no-response",
            DispatchError::Overloaded => "overloaded",
            DispatchError::Internal(_) => "internal",
        }
    }

    /// Whether a limit of the user worker caused the failure.
    pub fn is_limit(&self) -> bool {
        #[cfg(feature = "platform-0-3")]
        if matches!(self, DispatchError::FuelLimitExceeded) {
            return true;
        }
        matches!(
            self,
            DispatchError::CpuLimitExceeded
                | DispatchError::WallLimitExceeded
                | DispatchError::MemoryLimitExceeded
                | DispatchError::SubrequestLimitExceeded
        )
    }
}

/// Selects user worker `name` of this dispatch worker's namespace.
pub fn get(name: &str, options: &Options) -> Result<Worker, DispatchError> {
    dispatcher::get(name, options)
}

/// The script the namespace's hostname table maps `hostname` to (custom
/// hostnames and wildcards, most specific first), if any.
pub fn lookup_hostname(hostname: &str) -> Option<String> {
    dispatcher::lookup_hostname(hostname)
}

/// A request sent to a user worker whose response has not been taken yet.
pub struct Pending {
    future: FutureResponse,
    pump: Option<BodyPump>,
}

/// Copies the client's request body into the user worker's request body
/// without blocking, so waiting for the response and sending the body make
/// progress together. (With `platform-0-3` the host moves the body.)
#[cfg_attr(feature = "platform-0-3", allow(dead_code))]
struct BodyPump {
    from: InputStream,
    _from_body: IncomingBody,
    to: Option<OutputStream>,
    to_body: Option<OutgoingBody>,
}

#[cfg_attr(feature = "platform-0-3", allow(dead_code))]
impl BodyPump {
    /// Moves what can move now. `None` when done, else what to wait for.
    fn step(&mut self) -> Option<Pollable> {
        loop {
            let to = self.to.as_ref()?;
            match to.check_write() {
                Ok(0) => return Some(to.subscribe()),
                Ok(room) => match to.splice(&self.from, room.min(64 * 1024)) {
                    Ok(0) => return Some(self.from.subscribe()),
                    Ok(_) => {
                        let _ = to.flush();
                    }
                    Err(StreamError::Closed) => {
                        self.finish();
                        return None;
                    }
                    Err(StreamError::LastOperationFailed(_)) => {
                        self.abandon();
                        return None;
                    }
                },
                Err(_) => {
                    self.abandon();
                    return None;
                }
            }
        }
    }

    fn finish(&mut self) {
        self.to = None;
        if let Some(body) = self.to_body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }

    /// Drops the body without finishing it: the user worker sees an error,
    /// not a silently truncated body.
    fn abandon(&mut self) {
        self.to = None;
        self.to_body = None;
    }
}

impl Worker {
    /// Starts sending `request` (as received from the client) to this user
    /// worker; its body streams as the worker reads it.
    #[cfg(feature = "platform-0-3")]
    pub fn start(&self, request: IncomingRequest) -> Pending {
        Pending {
            future: self.forward_incoming(request),
            pump: None,
        }
    }

    /// Starts sending `request` (as received from the client) to this user
    /// worker; its body streams as the worker reads it.
    #[cfg(not(feature = "platform-0-3"))]
    pub fn start(&self, request: IncomingRequest) -> Pending {
        let headers = request.headers().clone();
        let outgoing = OutgoingRequest::new(headers);
        let _ = outgoing.set_method(&request.method());
        let _ = outgoing.set_path_with_query(request.path_with_query().as_deref());
        let _ = outgoing.set_scheme(Some(&request.scheme().unwrap_or(Scheme::Http)));
        let _ = outgoing.set_authority(request.authority().as_deref());
        let to_body = outgoing.body().ok();
        let future = self.fetch(outgoing);
        let pump = match (request.consume(), to_body) {
            (Ok(from_body), Some(to_body)) => match (from_body.stream(), to_body.write()) {
                (Ok(from), Ok(to)) => Some(BodyPump {
                    from,
                    _from_body: from_body,
                    to: Some(to),
                    to_body: Some(to_body),
                }),
                _ => None,
            },
            (_, Some(to_body)) => {
                let _ = OutgoingBody::finish(to_body, None);
                None
            }
            _ => None,
        };
        Pending { future, pump }
    }

    /// Sends `request` to this user worker and waits for its response.
    pub fn forward(&self, request: IncomingRequest) -> Result<IncomingResponse, DispatchError> {
        self.start(request).wait()
    }

    /// Sends a bodiless request (e.g. for fan-out probes) and returns at once.
    pub fn start_get(&self, authority: &str, path_with_query: &str) -> Pending {
        let outgoing = OutgoingRequest::new(Fields::new());
        let _ = outgoing.set_method(&Method::Get);
        let _ = outgoing.set_path_with_query(Some(path_with_query));
        let _ = outgoing.set_authority(Some(authority));
        if let Ok(body) = outgoing.body() {
            let future = self.fetch(outgoing);
            let _ = OutgoingBody::finish(body, None);
            return Pending { future, pump: None };
        }
        Pending {
            future: self.fetch(outgoing),
            pump: None,
        }
    }
}

impl Pending {
    /// Whether the response (or the failure) is available now.
    fn try_take(&self) -> Option<Result<IncomingResponse, DispatchError>> {
        self.future.get()
    }

    /// Waits for the user worker's response, sending the request body
    /// meanwhile. The response body is still streaming when this returns.
    pub fn wait(mut self) -> Result<IncomingResponse, DispatchError> {
        loop {
            if let Some(result) = self.try_take() {
                return result;
            }
            let mut waits = vec![self.future.subscribe()];
            if let Some(pump) = &mut self.pump {
                match pump.step() {
                    Some(p) => waits.push(p),
                    None => self.pump = None,
                }
            }
            let refs: Vec<&Pollable> = waits.iter().collect();
            poll(&refs);
        }
    }
}

/// Waits for several in-flight requests at once; results come back in the
/// order of `pending`.
pub fn wait_all(pending: Vec<Pending>) -> Vec<Result<IncomingResponse, DispatchError>> {
    let mut slots: Vec<Option<Result<IncomingResponse, DispatchError>>> =
        pending.iter().map(|_| None).collect();
    let mut pending: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
    loop {
        let mut waits = Vec::new();
        for (i, entry) in pending.iter_mut().enumerate() {
            let Some(p) = entry else { continue };
            if let Some(result) = p.try_take() {
                slots[i] = Some(result);
                *entry = None;
                continue;
            }
            waits.push(p.future.subscribe());
            if let Some(pump) = &mut p.pump {
                match pump.step() {
                    Some(wait) => waits.push(wait),
                    None => p.pump = None,
                }
            }
        }
        if waits.is_empty() {
            break;
        }
        let refs: Vec<&Pollable> = waits.iter().collect();
        poll(&refs);
    }
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or(Err(DispatchError::Internal("lost response".into()))))
        .collect()
}

/// The request's host: its authority, else its `host` header.
pub fn host(request: &IncomingRequest) -> Option<String> {
    request
        .authority()
        .filter(|a| !a.is_empty())
        .or_else(|| header(request, "host"))
}

/// The first value of a request header, as text.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// Streams a user worker's `response` to the client, keeping only headers
/// for which `keep_header(name)` is true (names are lowercase).
///
/// If the user worker's body fails midway, the client's response is
/// aborted rather than ended cleanly, so a truncated body never looks
/// complete.
pub fn send_response(
    out: ResponseOutparam,
    response: IncomingResponse,
    keep_header: impl Fn(&str) -> bool,
) {
    #[cfg(feature = "platform-0-3")]
    {
        let mut drop: Vec<String> = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .filter(|name| !keep_header(name))
            .collect();
        drop.dedup();
        dispatcher::send_response(out, response, &drop);
    }
    #[cfg(not(feature = "platform-0-3"))]
    copy_response(out, response, keep_header);
}

/// `send_response` by copying, for hosts of 0.1.0: headers listed,
/// filtered and rebuilt, the body spliced across.
#[cfg(not(feature = "platform-0-3"))]
fn copy_response(
    out: ResponseOutparam,
    response: IncomingResponse,
    keep_header: impl Fn(&str) -> bool,
) {
    let entries: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| keep_header(&name.to_ascii_lowercase()))
        .collect();
    let headers = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status());
    let Ok(to_body) = outgoing.body() else { return };
    ResponseOutparam::set(out, Ok(outgoing));
    let Ok(from_body) = response.consume() else {
        return;
    };
    let (Ok(from), Ok(to)) = (from_body.stream(), to_body.write()) else {
        return;
    };
    loop {
        match to.blocking_splice(&from, 64 * 1024) {
            Ok(_) => {}
            Err(StreamError::Closed) => break,
            // Abort: drop the body unfinished.
            Err(StreamError::LastOperationFailed(_)) => return,
        }
    }
    let _ = to.blocking_flush();
    drop(to);
    drop(from);
    let _ = OutgoingBody::finish(to_body, None);
}

/// Answers the client directly with a complete response.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers =
        Fields::from_list(&[("content-type".to_string(), content_type.as_bytes().to_vec())])
            .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(to_body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(to) = to_body.write() {
        for chunk in body.chunks(4096) {
            if to.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(to_body, None);
}
