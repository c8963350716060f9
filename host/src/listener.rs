//! Serving a router on a public TCP listener with the limits such a
//! listener needs against slow or hoarding clients.
//!
//! - **Connection cap** (`server.max_connections`): past it a new
//!   connection gets an immediate `503` with `x-berth-error: overloaded`
//!   and `Retry-After`, then is closed; accepting never stops, and accept
//!   errors (e.g. out of file descriptors) back off instead of spinning.
//! - **Request-head timeout** (`server.request_head_timeout_ms`): a
//!   connection must deliver a complete request head within it — from the
//!   moment it is opened, and from the first byte of every later request on
//!   a kept-alive connection.
//! - **Idle timeout** (`server.idle_timeout_ms`): a kept-alive connection
//!   with no request in flight and no byte of a new one is closed after it.
//! - **Write timeout** (`server.response_write_timeout_ms`): while a
//!   response is in flight, a client that accepts none of it for this long
//!   is dropped, with its response. It is seen from the body's side: a
//!   frame handed to hyper that hyper does not come back for could not be
//!   sent on (a full socket over HTTP/1.1, a closed window over HTTP/2); a
//!   body still waiting for its guest is not the client's fault and does
//!   not count.
//!
//! A per-connection watchdog tracks the phase (waiting for a head, busy,
//! idle) from the bytes read and the requests started and finished, and
//! drops the connection when the phase's deadline passes. Body reads are
//! bounded separately by the data plane (`server.body_read_timeout_ms`).
//! This module knows nothing of workers; it serves any axum `Router`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::base::error::WorkerError;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to deliver a complete request head.
    pub head_timeout: Duration,
    /// Time a kept-alive connection may sit with nothing to do.
    pub idle_timeout: Duration,
    /// Time a client may accept no byte of a response.
    pub write_timeout: Duration,
}

/// Accepts connections and serves `router` on them until `stop` turns
/// true; then stops accepting, asks open connections to finish and returns
/// once all are closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: the next accept would fail the same
                // way at once; give connections time to close.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (router, stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    connection(stream, peer, router, limits, stop).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tokio::spawn(refuse(stream));
            }
        }
    }
    // Every open connection holds a slot until it has closed.
    let _all = slots
        .acquire_many(limits.max_connections as u32)
        .await
        .map_err(io::Error::other)?;
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The answer to a connection over the cap: the error map's `overloaded`
/// response (status, `x-berth-error`, `Retry-After`), written by hand
/// because no HTTP connection is served for it.
fn refusal() -> Vec<u8> {
    let response = WorkerError::Overloaded.to_http_with_message(
        "Too many open connections to this host, retry".into(),
        |text| text,
    );
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status().as_u16(),
        response.status().canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
    }
    let body = response.into_body();
    head.push_str(&format!(
        "connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    head.into_bytes()
}

async fn refuse(mut stream: TcpStream) {
    let write = async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await
    };
    // A client that does not read its refusal does not hold the task.
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let phase = Arc::new(Phase::new(limits));
    let io = TokioIo::new(Watched {
        inner: stream,
        phase: phase.clone(),
    });
    let service = {
        let phase = phase.clone();
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let (router, phase) = (router.clone(), phase.clone());
            async move {
                phase.request_started();
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                let done = Finished(Some(phase));
                Ok::<_, std::convert::Infallible>(response.map(|body| TrackedBody {
                    body,
                    done,
                    handed: false,
                }))
            }
        })
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let watchdog = phase.watchdog();
    tokio::pin!(watchdog);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        }
        reason = &mut watchdog => {
            tracing::debug!(%peer, reason, "closing connection");
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = &mut watchdog => {}
            }
        }
    }
}

/// What a connection is doing, for its watchdog.
struct Phase {
    limits: ListenerLimits,
    state: Mutex<PhaseState>,
}

struct PhaseState {
    /// Requests whose response has not finished.
    in_flight: u32,
    /// Response bodies that handed a frame to hyper which hyper has not
    /// come back for: it could not send it on (a full socket, a closed
    /// HTTP/2 window) — the client is not reading.
    waiting_for_client: u32,
    /// Since when some body has been waiting for the client.
    waiting_since: Option<Instant>,
    /// When the current head started arriving (or the connection opened).
    head_since: Option<Instant>,
    /// When the connection last became idle.
    idle_since: Instant,
}

impl Phase {
    fn new(limits: ListenerLimits) -> Self {
        let now = Instant::now();
        Self {
            limits,
            state: Mutex::new(PhaseState {
                in_flight: 0,
                waiting_for_client: 0,
                waiting_since: None,
                head_since: Some(now),
                idle_since: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bytes_read(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_since.is_none() {
            state.head_since = Some(Instant::now());
        }
    }

    /// A response body handed a frame on; until hyper asks for the next,
    /// the connection waits for the client.
    fn frame_handed(&self) {
        let mut state = self.lock();
        state.waiting_for_client += 1;
        if state.waiting_since.is_none() {
            state.waiting_since = Some(Instant::now());
        }
    }

    /// Hyper came back for a body's next frame: the client took the last.
    fn frame_taken(&self) {
        let mut state = self.lock();
        state.waiting_for_client = state.waiting_for_client.saturating_sub(1);
        state.waiting_since = (state.waiting_for_client > 0).then(Instant::now);
    }

    fn request_started(&self) {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_since = None;
    }

    fn request_finished(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }

    /// The current deadline and what it bounds; `None` while a response
    /// is in flight and the client keeps accepting it.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let state = self.lock();
        if state.in_flight > 0 {
            return state
                .waiting_since
                .map(|since| (since + self.limits.write_timeout, "response write timeout"));
        }
        Some(match state.head_since {
            Some(since) => (since + self.limits.head_timeout, "request head timeout"),
            None => (state.idle_since + self.limits.idle_timeout, "idle timeout"),
        })
    }

    /// Resolves with the reason once a deadline of the current phase passed.
    async fn watchdog(self: Arc<Self>) -> &'static str {
        loop {
            match self.deadline() {
                Some((deadline, reason)) if deadline <= Instant::now() => return reason,
                Some((deadline, _)) => tokio::time::sleep_until(deadline).await,
                // Busy and writing: the response is bounded by the worker's
                // limits; look again in time to catch a client that stops
                // reading (within a quarter of the write timeout).
                None => {
                    let check = self.limits.head_timeout.min(self.limits.write_timeout / 4);
                    tokio::time::sleep(check).await
                }
            }
        }
    }
}

/// Marks the request finished when its response body ends or is dropped.
struct Finished(Option<Arc<Phase>>);

impl Finished {
    fn fire(&mut self) {
        if let Some(phase) = self.0.take() {
            phase.request_finished();
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.fire();
    }
}

/// A response body that reports its end to the connection's phase, and
/// every frame it hands on until hyper comes back for the next.
struct TrackedBody {
    body: Body,
    done: Finished,
    /// A frame was handed on and hyper has not come back since.
    handed: bool,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if self.handed
            && let Some(phase) = &self.done.0
        {
            phase.frame_taken();
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if std::mem::take(&mut self.handed)
            && let Some(phase) = &self.done.0
        {
            phase.frame_taken();
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(phase) = &self.done.0 {
                    phase.frame_handed();
                    self.handed = true;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.done.fire(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, reporting reads to the connection's phase.
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ListenerLimits {
        ListenerLimits {
            max_connections: 4,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(20),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn phases_move_the_deadline() {
        let phase = Phase::new(limits());
        let opened = Instant::now();
        // A new connection must deliver a head.
        assert_eq!(
            phase.deadline(),
            Some((opened + Duration::from_secs(10), "request head timeout"))
        );
        phase.request_started();
        assert_eq!(phase.deadline(), None, "busy: no deadline");
        // A frame handed on that hyper does not come back for (the
        // client stopped reading) starts the write timeout…
        phase.frame_handed();
        let handed = Instant::now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            phase.deadline(),
            Some((handed + Duration::from_secs(20), "response write timeout"))
        );
        // …which the client taking it ends.
        phase.frame_taken();
        assert_eq!(phase.deadline(), None, "reading again: no deadline");
        tokio::time::advance(Duration::from_secs(100)).await;
        phase.request_finished();
        let idle = Instant::now();
        assert_eq!(
            phase.deadline(),
            Some((idle + Duration::from_secs(60), "idle timeout"))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        phase.bytes_read();
        assert_eq!(
            phase.deadline(),
            Some((
                Instant::now() + Duration::from_secs(10),
                "request head timeout"
            )),
            "the first byte of the next head starts the head timeout"
        );
    }

    #[test]
    fn the_refusal_is_well_formed() {
        let refusal = String::from_utf8(refusal()).unwrap();
        let (head, body) = refusal.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("x-berth-error: overloaded"));
        assert!(head.contains("retry-after: 1"));
    }
}
