//! Size caps on request and response bodies, applied while they stream.
//!
//! [`LimitedBody`] passes frames through until the running total would
//! exceed the cap, then ends the stream with an error instead of the frame
//! and raises a shared flag. For a request body the guest sees a failed
//! read (and the client gets 413 if the guest then fails); for a response
//! body the client's response is cut off and the request is recorded as
//! failed. Nothing is buffered. [`ReadTimeout`] bounds the wait for each
//! piece of a request body (`server.body_read_timeout_ms`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Which body a [`LimitedBody`] guards; decides the error it reports.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// The client's request body, read by the guest.
    Request,
    /// The guest's response body, sent to the client.
    Response,
}

/// A body that fails once more than `limit` bytes went through.
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    direction: Direction,
    tripped: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`; `tripped` is set when the cap is exceeded.
    pub fn new(inner: B, limit: u64, direction: Direction, tripped: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            direction,
            tripped,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                self.remaining = 0;
                self.tripped.store(true, Ordering::Relaxed);
                let error = match self.direction {
                    Direction::Request => {
                        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(self.limit))
                    }
                    Direction::Response => {
                        wasmtime_wasi_http::Error::HttpResponseBodySize(Some(self.limit))
                    }
                };
                return Poll::Ready(Some(Err(error)));
            }
            self.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body whose next frame must arrive within `timeout` of the
/// last (or of the first poll): a client that stops sending mid-body does
/// not hold a worker and a connection for ever. The guest sees a failed
/// read; the wait starts only when the guest asks for data.
pub struct ReadTimeout<B> {
    inner: B,
    timeout: std::time::Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> ReadTimeout<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: std::time::Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.sleep = None;
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                            format!(
                                "the client sent no request body data for {} ms",
                                timeout.as_millis()
                            ),
                        )))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, wasmtime_wasi_http::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn passes_bodies_within_the_limit() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(
            chunks(&[b"abc", b"de"]),
            5,
            Direction::Request,
            flag.clone(),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abcde");
        assert!(!flag.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn fails_and_flags_past_the_limit() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut body = LimitedBody::new(
            chunks(&[b"abc", b"def"]),
            5,
            Direction::Response,
            flag.clone(),
        );
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                wasmtime_wasi_http::Error::HttpResponseBodySize(Some(5))
            ),
            "{err:?}"
        );
        assert!(flag.load(Ordering::Relaxed));
    }
}
