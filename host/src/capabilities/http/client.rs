//! The outbound HTTP client behind the egress filter.
//!
//! It connects to the one address the policy vetted (never resolving the
//! name again), speaks TLS with the URL's host as server name, sends the
//! request in origin form with a `Host` header equal to the checked
//! authority (whatever the guest put in its headers), and applies the
//! connect / first-byte / between-bytes timeouts. Connections go through
//! the [`Connect`] seam so tests can record attempts instead of opening
//! sockets.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

pub use crate::base::BoxFuture;

/// A byte stream to an upstream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Opens connections (the test seam for "where would we have connected").
pub trait Connect: Send + Sync {
    /// Connects to `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Stream>>>;
}

/// Real TCP connections.
pub struct TcpConnector;

impl Connect for TcpConnector {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}

/// Timeouts of one outbound request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect plus TLS and HTTP handshakes.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// Between two frames of the response body.
    pub between_bytes: Duration,
}

/// A vetted request: where to connect and what to send.
pub struct Vetted {
    /// The address the policy approved.
    pub addr: SocketAddr,
    /// TLS server name when the scheme is https.
    pub tls_name: Option<String>,
    /// The checked authority, sent as `Host`.
    pub authority: String,
}

/// The response plus a future that finishes when the connection does.
pub type Sent = (
    http::Response<WasiBody>,
    BoxFuture<'static, Result<(), HttpError>>,
);

/// Sends `request` to the vetted target.
pub async fn send(
    connector: &dyn Connect,
    tls: &Arc<rustls::ClientConfig>,
    target: Vetted,
    mut request: http::Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<Sent, HttpError> {
    let connect = async {
        let stream = connector
            .connect(target.addr)
            .await
            .map_err(map_connect_error)?;
        let stream: Box<dyn Stream> = match &target.tls_name {
            Some(name) => {
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| HttpError::TlsProtocolError)?;
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                Box::new(
                    connector
                        .connect(server_name, stream)
                        .await
                        .map_err(HttpError::Tls)?,
                )
            }
            None => stream,
        };
        hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream))
            .await
            .map_err(HttpError::from)
    };
    let (mut sender, connection) = tokio::time::timeout(timeouts.connect, connect)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;

    // Origin form on the wire; the Host header is the checked authority,
    // never a guest-supplied one.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let headers = request.headers_mut();
    headers.remove(http::header::HOST);
    let host = http::HeaderValue::from_str(&target.authority)
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    headers.insert(http::header::HOST, host);

    // The connection task ends when the response (and its body) is dropped.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = done_tx.send(connection.await);
    });
    let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)?;
    let response = response.map(|incoming| {
        TimeoutBody::new(incoming.map_err(HttpError::from), timeouts.between_bytes).boxed_unsync()
    });
    let io: BoxFuture<'static, Result<(), HttpError>> = Box::pin(async move {
        match done_rx.await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(error)) => Err(HttpError::from(error)),
        }
    });
    Ok((response, io))
}

fn map_connect_error(error: io::Error) -> HttpError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
        io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
        _ => HttpError::Connect(error),
    }
}

/// A response body that fails when no frame arrives for `gap`.
struct TimeoutBody<B> {
    inner: B,
    gap: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> TimeoutBody<B> {
    fn new(inner: B, gap: Duration) -> Self {
        Self {
            inner,
            gap,
            timer: Box::pin(tokio::time::sleep(gap)),
        }
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + self.gap;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
