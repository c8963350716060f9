//! Step 5 of an invocation: waiting for the guest's answer and capping the
//! response body while it streams.
//!
//! A user worker's run is polled inline on the caller's task until the
//! guest sets its response; only if the guest is still running then
//! (streaming its body, or working after responding) is the rest handed to
//! a task of its own. Most requests finish within that first stretch, so
//! they cost no spawn and no cross-thread wake-up (warm reuse: +25-50 %
//! req/s). A dispatch worker keeps a task of its own from the start: it
//! waits on its user workers' tasks and streams their bodies, and inline it
//! measured ~12 % slower end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http_body_util::BodyExt;

use super::guest::GuestRun;
use super::instance::Answer;
use super::plan::Plan;
use crate::base::error::WorkerError;
use crate::base::names::Name;
use crate::base::platform_headers::is_platform_header;
use crate::capabilities::WorkerResponse;
use crate::limits::body::{Direction, LimitedBody};
use crate::runtime::{Runtime, Worker};

/// Waits until the guest answers or its run ends without answering. The run
/// bounds itself by the deadline, so this wait ends by then too.
pub(super) async fn wait(
    guest: GuestRun,
    receiver: tokio::sync::oneshot::Receiver<Answer>,
    plan: &Plan,
    request_tripped: &AtomicBool,
) -> Result<WorkerResponse, WorkerError> {
    // It ended without answering (the outparam was dropped): its result
    // says why.
    let no_answer = |finished: Result<(), WorkerError>| match finished {
        Ok(()) if request_tripped.load(Ordering::Relaxed) => {
            Err(WorkerError::RequestTooLarge(plan.limits.max_request_body))
        }
        Ok(()) => Err(WorkerError::NoResponse),
        Err(error) => Err(error),
    };
    let mut run: GuestRun = if plan.inline {
        guest
    } else {
        let handle = tokio::spawn(guest);
        Box::pin(async move {
            handle.await.unwrap_or_else(|join| {
                Err(WorkerError::Internal(format!("worker task failed: {join}")))
            })
        })
    };
    let mut receiver = receiver;
    let answer = tokio::select! {
        biased;
        answer = &mut receiver => match answer {
            Ok(answer) => {
                // Answered and still running: let it finish on its own (a
                // spawned run already does; dropping its handle detaches it).
                if plan.inline {
                    tokio::spawn(run);
                }
                answer
            }
            Err(_) => return no_answer(run.await),
        },
        finished = &mut run => match receiver.await {
            Ok(answer) => answer,
            Err(_) => return no_answer(finished),
        },
    };
    let mut response = answer.map_err(|code| {
        WorkerError::Exception(format!("worker answered with error code {code:?}"))
    })?;
    // Only the host speaks for the platform: a guest cannot forge
    // `x-berth-error` (which would pass its failure off as a host error) or
    // any other `berth-*` header, on any path — in the head, nor in the
    // trailers that end its body (HTTP/1.1 chunked, HTTP/2, a dispatch
    // worker reading the response).
    strip_platform_headers(response.headers_mut());
    // A 1xx status is not a final response: sent as one, it leaves an
    // HTTP/1.1 connection unusable (hyper answers its own bare 500 and then
    // closes the keep-alive connection under the client's next request; 101
    // is taken as an upgrade). The guest's bug, reported as one.
    if response.status().is_informational() {
        return Err(WorkerError::Exception(format!(
            "worker answered with the informational status {}; a response needs a status of 200 or more",
            response.status().as_u16()
        )));
    }
    let response = response.map(|body| {
        body.map_frame(|mut frame| {
            if let Some(trailers) = frame.trailers_mut() {
                strip_platform_headers(trailers);
            }
            frame
        })
        .boxed_unsync()
    });
    // The guest answered without having seen the whole request body: the
    // body was refused, so the client gets 413, not a partial answer.
    if request_tripped.load(Ordering::Relaxed) {
        return Err(WorkerError::RequestTooLarge(plan.limits.max_request_body));
    }
    Ok(response)
}

/// Removes every `berth-*` and `x-berth-*` header a guest set.
fn strip_platform_headers(headers: &mut http::HeaderMap) {
    let forged: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| is_platform_header(name))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(&name);
    }
}

impl Runtime {
    /// The response with its body capped while it streams (when limits are
    /// enforced); a cut-off body is counted and logged once, when done.
    pub(super) fn cap_response(
        &self,
        worker: &Worker,
        plan: &Plan,
        response: WorkerResponse,
    ) -> WorkerResponse {
        if !plan.enforce {
            return response;
        }
        let tripped = Arc::new(AtomicBool::new(false));
        let guard = ResponseBodyGuard {
            tripped: tripped.clone(),
            namespace: worker.spec.namespace.clone(),
            script: worker.spec.name.clone(),
            limit: plan.limits.max_response_body,
            counter: self.counters.response_body_limit_hits.clone(),
        };
        response.map(move |body| {
            let inner = LimitedBody::new(body, guard.limit, Direction::Response, tripped);
            BodyExt::boxed_unsync(GuardedBody { inner, guard })
        })
    }
}

/// Reports a response cut off by its size cap once, when the body is done.
struct ResponseBodyGuard {
    tripped: Arc<AtomicBool>,
    namespace: Name,
    script: Name,
    limit: u64,
    counter: Arc<AtomicU64>,
}

impl Drop for ResponseBodyGuard {
    fn drop(&mut self) {
        if self.tripped.load(Ordering::Relaxed) {
            self.counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                namespace = %self.namespace, script = %self.script, limit_bytes = self.limit,
                code = "response-too-large", "response body exceeded its limit; response cut off"
            );
        }
    }
}

/// A body carrying a guard that lives as long as the body.
struct GuardedBody<B> {
    inner: B,
    #[allow(dead_code)]
    guard: ResponseBodyGuard,
}

impl<B: http_body::Body + Unpin> http_body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
