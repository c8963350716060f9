//! Bounded capture of a guest's stdout and stderr.
//!
//! Guests never write to the host's terminal: each request gets its own
//! [`OutputCapture`] per stream, which keeps the first `cap` bytes and counts
//! the rest. Writes always succeed (a chatty guest must not trap because of
//! logging), but memory use per request stays bounded: the kept bytes are
//! charged to the instance's host-memory budget, and output past the budget
//! is dropped like output past the cap. After the request the captured
//! lines are emitted through `tracing`, attributed to the script.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::limits::HostMemory;
use crate::limits::host_memory::Charge;

/// One captured output stream; clones share the same buffer.
#[derive(Clone)]
pub struct OutputCapture {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    buf: Vec<u8>,
    cap: usize,
    dropped: u64,
    /// What the kept bytes take from the instance's host-memory budget.
    charge: Charge,
}

impl OutputCapture {
    /// A capture keeping at most `cap` bytes, charged to `budget`.
    pub fn new(cap: usize, budget: &HostMemory) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                buf: Vec::new(),
                cap,
                dropped: 0,
                charge: budget.empty_charge(),
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = c.cap.saturating_sub(c.buf.len());
        let mut keep = room.min(data.len());
        if keep > 0 && c.charge.try_grow(keep).is_err() {
            keep = 0;
        }
        c.buf.extend_from_slice(&data[..keep]);
        c.dropped += (data.len() - keep) as u64;
    }

    /// Forgets what was captured (a reused instance starts a new request).
    pub fn clear(&self) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.buf = Vec::new();
        c.dropped = 0;
        c.charge.release();
    }

    /// The captured text (lossy UTF-8) and how many bytes were dropped.
    pub fn contents(&self) -> (String, u64) {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (String::from_utf8_lossy(&c.buf).into_owned(), c.dropped)
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for OutputCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The last few non-empty lines of `text`, joined on one line; used to put
/// a panic message into an `exception` error.
pub fn tail_lines(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    kept[kept.len().saturating_sub(lines)..].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_cap_bytes_and_counts_the_rest() {
        let budget = HostMemory::default();
        let c = OutputCapture::new(5, &budget);
        c.append(b"hel");
        c.append(b"lo world");
        assert_eq!(c.contents(), ("hello".to_owned(), 6));
        assert_eq!(budget.used(), 5, "the kept bytes are charged");
        c.clear();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn output_past_the_host_memory_budget_is_dropped_not_fatal() {
        let budget = HostMemory::new(4, std::sync::Arc::default());
        let c = OutputCapture::new(100, &budget);
        c.append(b"abc");
        c.append(b"defgh");
        assert_eq!(c.contents(), ("abc".to_owned(), 5));
        assert!(!budget.limit_hit(), "logging never fails the request");
    }

    #[test]
    fn tail_lines_skips_blanks() {
        assert_eq!(tail_lines("a\n\nb\nc\n\n", 2), "b c");
        assert_eq!(tail_lines("", 2), "");
    }
}
