//! The pass-through of `berth:platform@0.3.0`: `worker.forward-incoming`
//! hands the dispatch worker's own `incoming-request` to a user worker, and
//! `send-response` answers the client with an `incoming-response`, both
//! moved on the host side — head and streaming body — instead of the guest
//! copying them through `wasi:http` resources (a request head, a body pump,
//! response headers listed, filtered and rebuilt, a body spliced across:
//! ≈ 50 host calls of a forwarding dispatch worker's ≈ 68, measured for
//! issue 29).
//!
//! Bodies move as [`WasiBody`]s read from the `wasi:http` body resources
//! ([`body_of`]), so a body that fails midway fails the receiving side's
//! body too: nothing truncated ever looks complete. Limits, platform headers
//! and typed errors are those of `worker.fetch` (`host`), which this module
//! only feeds.

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use wasmtime::component::{Resource, ResourceTableError};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError};
use wasmtime_wasi_http::p2::bindings::http::types::{
    ErrorCode, HostIncomingRequest as IncomingRequestHost,
};
use wasmtime_wasi_http::p2::body::{HostFutureTrailers, HostIncomingBody, HostIncomingBodyStream};
use wasmtime_wasi_http::p2::types::{
    HostIncomingRequest, HostIncomingResponse, HostResponseOutparam,
};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::DispatcherView;
use super::host::{Head, RequestError, build_request, empty_body};
use super::resources::{FutureResponse, WorkerHandle};
use crate::base::names::Name;
use crate::capabilities::WorkerRequest;

/// The most one body frame carries (what the SDK's pump moved per splice).
const CHUNK: usize = 64 * 1024;

impl DispatcherView<'_> {
    /// `worker.forward-incoming`: the user worker of `this` gets `request`
    /// as it came, its body streaming from the client.
    pub(super) fn forward(
        &mut self,
        this: Resource<WorkerHandle>,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Resource<FutureResponse>> {
        let script = self.http.table.get(&this)?.worker.name().clone();
        let request = self.take_incoming(request, &script)?;
        self.call(this, request)
    }

    /// Takes one of this instance's `incoming-request`s out of its table
    /// and makes the user worker's request from it. A request whose body
    /// the guest already consumed, or whose `headers` (or any other child)
    /// it still holds, cannot move: that is a [`RequestError`], and the
    /// request stays where it was.
    fn take_incoming(
        &mut self,
        request: Resource<HostIncomingRequest>,
        script: &Name,
    ) -> wasmtime::Result<Result<WorkerRequest, RequestError>> {
        let head = self.incoming_head(&request)?;
        Ok(match self.http.table.delete(request) {
            Ok(mut incoming) => match incoming.body.take() {
                Some(body) => build_request(head, Some(body_of(body)), script),
                None => Err(RequestError::BodyConsumed),
            },
            Err(ResourceTableError::HasChildren) => Err(RequestError::ChildrenHeld),
            Err(error) => return Err(error.into()),
        })
    }

    /// The head of one of this instance's `incoming-request`s, read through
    /// `wasi:http/types` (wasmtime-wasi-http keeps the fields to itself).
    fn incoming_head(&mut self, request: &Resource<HostIncomingRequest>) -> wasmtime::Result<Head> {
        let http = &mut self.http;
        let borrow = || Resource::<HostIncomingRequest>::new_borrow(request.rep());
        let method = IncomingRequestHost::method(http, borrow())?;
        let scheme = IncomingRequestHost::scheme(http, borrow())?;
        let authority = IncomingRequestHost::authority(http, borrow())?;
        let path_with_query = IncomingRequestHost::path_with_query(http, borrow())?;
        let fields = IncomingRequestHost::headers(http, borrow())?;
        let headers = http.table.delete(fields)?.into();
        Ok(Head {
            method,
            scheme,
            authority,
            path_with_query,
            headers,
        })
    }

    /// `send-response`: `response` goes to the client through `out`, minus
    /// the headers named in `drop_headers`.
    pub(super) fn respond_with(
        &mut self,
        out: Resource<HostResponseOutparam>,
        response: Resource<HostIncomingResponse>,
        drop_headers: Vec<String>,
    ) -> wasmtime::Result<()> {
        let out = self.http.table.delete(out)?;
        let response = match self.http.table.delete(response) {
            Ok(response) => response,
            // The guest still holds the response's `headers` (or another
            // child): the client gets the guest's error, named.
            Err(ResourceTableError::HasChildren) => {
                (out.send)(Err(ErrorCode::InternalError(Some(
                    "send-response: drop the response's headers (and anything else taken from it) first"
                        .to_owned(),
                ))));
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let mut headers: http::HeaderMap = response.headers.into();
        for name in &drop_headers {
            // A name that is not a valid header name names no header.
            if let Ok(name) = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                headers.remove(name);
            }
        }
        let body = match response.body {
            Some(body) => body_of(body),
            None => empty_body(),
        };
        let mut reply = http::Response::new(body);
        // An `incoming-response` carries a status the host validated.
        *reply.status_mut() = http::StatusCode::from_u16(response.status)
            .map_err(|e| wasmtime::Error::msg(format!("send-response: {e}")))?;
        *reply.headers_mut() = headers;
        (out.send)(Ok(reply));
        Ok(())
    }
}

/// Where a body read from a `wasi:http` body resource stands.
enum Feed {
    /// Reading data; the body resource is kept for its trailers.
    Data(HostIncomingBodyStream, HostIncomingBody),
    /// Ended (the trailers were the last frame, or there were none).
    Done,
}

/// The body of a `wasi:http` body resource as a [`WasiBody`]: data frames
/// as they arrive, then the trailers; an error ends it with that error.
pub(super) fn body_of(mut body: HostIncomingBody) -> WasiBody {
    let Some(stream) = body.take_stream() else {
        return empty_body();
    };
    let frames = futures::stream::unfold(Feed::Data(stream, body), next_frame);
    StreamBody::new(frames.boxed()).boxed_unsync()
}

async fn next_frame(feed: Feed) -> Option<(Result<Frame<Bytes>, HttpError>, Feed)> {
    let Feed::Data(mut stream, body) = feed else {
        return None;
    };
    loop {
        match stream.read(CHUNK) {
            Ok(data) if !data.is_empty() => {
                return Some((Ok(Frame::data(data)), Feed::Data(stream, body)));
            }
            Ok(_) => stream.ready().await,
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e) | StreamError::Trap(e)) => {
                return Some((Err(http_error(e)), Feed::Done));
            }
        }
    }
    // The data ended: the stream hands the trailers (if any) to the body.
    drop(stream);
    let mut trailers = body.into_future_trailers();
    trailers.ready().await;
    match trailers {
        HostFutureTrailers::Done(Ok(Some(trailers))) => {
            Some((Ok(Frame::trailers(trailers)), Feed::Done))
        }
        HostFutureTrailers::Done(Err(e)) => Some((Err(e), Feed::Done)),
        _ => None,
    }
}

/// The `wasi:http` error behind a stream failure (what the body it reads
/// failed with), else the failure as an internal error.
fn http_error(error: wasmtime::Error) -> HttpError {
    match error.downcast::<HttpError>() {
        Ok(error) => error,
        Err(error) => HttpError::InternalError(Some(format!("{error:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn frames(frames: Vec<Result<Frame<Bytes>, HttpError>>) -> HostIncomingBody {
        let stream = futures::stream::iter(frames);
        HostIncomingBody::new(StreamBody::new(stream).boxed_unsync())
    }

    /// A dispatch worker's view over fresh parts, with an outparam whose
    /// answer arrives on the receiver.
    struct Parts {
        state: super::super::DispatcherState,
        ctx: wasmtime_wasi_http::WasiHttpCtx,
        table: wasmtime::component::ResourceTable,
    }

    impl Parts {
        fn new() -> Self {
            Self {
                state: Default::default(),
                ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
                table: wasmtime::component::ResourceTable::new(),
            }
        }

        fn view(&mut self) -> DispatcherView<'_> {
            DispatcherView {
                state: &mut self.state,
                http: wasmtime_wasi_http::WasiHttpCtxView {
                    ctx: &mut self.ctx,
                    table: &mut self.table,
                    hooks: wasmtime_wasi_http::default_hooks(),
                },
            }
        }
    }

    type Answer =
        Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>;

    fn response(
        view: &mut DispatcherView<'_>,
    ) -> (
        Resource<HostResponseOutparam>,
        Resource<HostIncomingResponse>,
        tokio::sync::oneshot::Receiver<Answer>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let out = view.http.new_response_outparam(tx).unwrap();
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("content-type", "text/plain"),
            ("x-internal-trace", "a"),
            ("x-internal-trace", "b"),
            ("x-kept", "yes"),
        ] {
            headers.append(name, http::HeaderValue::from_static(value));
        }
        let incoming = HostIncomingResponse {
            status: 201,
            headers: wasmtime_wasi_http::FieldMap::new_immutable(
                wasmtime_wasi_http::default_hooks(),
                headers,
            ),
            body: Some(frames(vec![Ok(Frame::data(Bytes::from_static(
                b"created",
            )))])),
        };
        let response = view.http.table.push(incoming).unwrap();
        (out, response, rx)
    }

    /// An `incoming-request` for `POST http://shop.example/a` with a body,
    /// in the view's table, as the dispatch worker receives one.
    fn incoming(view: &mut DispatcherView<'_>) -> Resource<HostIncomingRequest> {
        let request = http::Request::builder()
            .method("POST")
            .uri("http://shop.example/a?b=c")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .body(http_body_util::Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        view.http
            .new_incoming_request(
                wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
                request,
            )
            .unwrap()
    }

    #[tokio::test]
    async fn forward_takes_the_request_with_its_head_and_body() {
        let mut parts = Parts::new();
        let mut view = parts.view();
        let request = incoming(&mut view);
        let script = Name::new("shop").unwrap();
        let request = view.take_incoming(request, &script).unwrap().unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "http://shop.example/a?b=c");
        let multi: Vec<_> = request.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2"]);
        let body = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "payload");
        assert_eq!(view.http.table.iter_mut().count(), 0, "the request moved");
    }

    #[tokio::test]
    async fn forward_of_a_consumed_body_is_a_named_error() {
        let mut parts = Parts::new();
        let mut view = parts.view();
        let request = incoming(&mut view);
        view.http.table.get_mut(&request).unwrap().body.take();
        let script = Name::new("shop").unwrap();
        let error = view.take_incoming(request, &script).unwrap().unwrap_err();
        assert!(matches!(error, RequestError::BodyConsumed), "{error:?}");
    }

    #[tokio::test]
    async fn forward_while_its_headers_are_held_is_a_named_error() {
        let mut parts = Parts::new();
        let mut view = parts.view();
        let request = incoming(&mut view);
        let held = wasmtime_wasi_http::FieldMap::new_immutable(
            wasmtime_wasi_http::default_hooks(),
            http::HeaderMap::new(),
        );
        view.http.table.push_child(held, &request).unwrap();
        let script = Name::new("shop").unwrap();
        let error = view.take_incoming(request, &script).unwrap().unwrap_err();
        assert!(matches!(error, RequestError::ChildrenHeld), "{error:?}");
    }

    #[tokio::test]
    async fn send_response_drops_the_named_headers_whatever_their_case() {
        let mut parts = Parts::new();
        let mut view = parts.view();
        let (out, response, rx) = response(&mut view);
        let drop = vec![
            "X-Internal-Trace".to_owned(),
            "not a header name".to_owned(),
        ];
        view.respond_with(out, response, drop).unwrap();
        let reply = rx.await.unwrap().expect("a response");
        assert_eq!(reply.status(), 201);
        assert!(!reply.headers().contains_key("x-internal-trace"));
        assert_eq!(reply.headers()["x-kept"], "yes");
        assert_eq!(reply.headers()["content-type"], "text/plain");
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "created");
        assert_eq!(
            view.http.table.iter_mut().count(),
            0,
            "both handles are gone"
        );
    }

    #[tokio::test]
    async fn send_response_while_its_headers_are_held_answers_a_named_error() {
        let mut parts = Parts::new();
        let mut view = parts.view();
        let (out, response, rx) = response(&mut view);
        let held = wasmtime_wasi_http::FieldMap::new_immutable(
            wasmtime_wasi_http::default_hooks(),
            http::HeaderMap::new(),
        );
        view.http.table.push_child(held, &response).unwrap();
        view.respond_with(out, response, Vec::new()).unwrap();
        match rx.await.unwrap() {
            Err(ErrorCode::InternalError(Some(message))) => {
                assert!(message.contains("drop the response's headers"), "{message}")
            }
            other => panic!(
                "expected the named error, got {:?}",
                other.map(|r| r.status())
            ),
        }
    }

    #[tokio::test]
    async fn a_body_moves_with_its_data_and_trailers() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("42"));
        let body = body_of(frames(vec![
            Ok(Frame::data(Bytes::from_static(b"hello, "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
            Ok(Frame::trailers(trailers.clone())),
        ]));
        let collected = body.collect().await.expect("a complete body");
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "hello, world");
    }

    #[tokio::test]
    async fn a_body_without_trailers_ends_cleanly() {
        let body = body_of(frames(vec![Ok(Frame::data(Bytes::from_static(b"x")))]));
        let collected = body.collect().await.expect("a complete body");
        assert_eq!(collected.trailers(), None);
        assert_eq!(collected.to_bytes(), "x");
    }

    #[tokio::test]
    async fn a_body_that_fails_midway_fails_never_ends() {
        let mut body = body_of(frames(vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err(HttpError::HttpResponseBodySize(Some(4))),
        ]));
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), "part");
        let failed = body.frame().await.expect("the failure, not the end");
        assert!(
            matches!(failed, Err(HttpError::HttpResponseBodySize(Some(4)))),
            "{failed:?}"
        );
        assert!(body.frame().await.is_none(), "nothing after the failure");
    }

    #[tokio::test]
    async fn a_body_already_streaming_gives_an_empty_one() {
        let mut incoming = frames(vec![Ok(Frame::data(Bytes::from_static(b"x")))]);
        let _reader = incoming.take_stream().expect("the first stream");
        let collected = body_of(incoming).collect().await.expect("empty");
        assert!(collected.to_bytes().is_empty());
    }
}
