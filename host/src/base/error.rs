//! Failures of a worker invocation, and the one place they are mapped to
//! what clients see.
//!
//! Every way a request to a tenant's worker can fail is a [`WorkerError`].
//! Its `x-berth-error` code, HTTP status and one-line message are defined
//! here and nowhere else, so the data plane, logs and (later) the WIT
//! `dispatch-error` seen by dispatch workers cannot drift apart.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Header naming the failure class on every error response Berth generates.
pub const ERROR_HEADER: &str = "x-berth-error";

/// Seconds a client is asked to wait after `overloaded`; short because pool
/// slots free up as soon as in-flight requests finish.
const RETRY_AFTER_SECS: u32 = 1;

/// Why a worker invocation did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// No script answers to this name (or host) in the namespace.
    #[error("Worker not found: {0}")]
    NotFound(String),
    /// The guest trapped (panic, `unreachable`, stack overflow, …).
    #[error("Worker threw an exception: {0}")]
    Exception(String),
    /// The guest returned without ever setting a response.
    #[error("Worker returned without sending a response")]
    NoResponse,
    /// No instance slot was free; the client should retry shortly.
    #[error("Worker is overloaded, retry later")]
    Overloaded,
    /// The request ran past its total time budget.
    #[error("Worker exceeded wall-clock limit")]
    WallLimit,
    /// The guest tried to grow memory past its limit.
    #[error("Worker exceeded memory limit")]
    MemoryLimit,
    /// The guest executed longer than its CPU-time limit.
    #[error("Worker exceeded CPU time limit")]
    CpuLimit,
    /// The guest failed after an outbound request was refused for exceeding
    /// its subrequest limit.
    #[error("Worker exceeded subrequest limit")]
    SubrequestLimit,
    /// The request body is larger than the script's limit (bytes).
    #[error("Request body exceeds the {0}-byte limit")]
    RequestTooLarge(u64),
    /// A host-side failure that is not the guest's fault.
    #[error("Internal error: {0}")]
    Internal(String),
}

impl WorkerError {
    /// The stable `x-berth-error` code (a public contract; never rename).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "worker-not-found",
            Self::Exception(_) => "exception",
            Self::NoResponse => "no-response",
            Self::Overloaded => "overloaded",
            Self::WallLimit => "wall-limit",
            Self::MemoryLimit => "memory-limit",
            Self::CpuLimit => "cpu-limit",
            Self::SubrequestLimit => "subrequest-limit",
            Self::RequestTooLarge(_) => "request-too-large",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Exception(_) | Self::Internal(_) | Self::SubrequestLimit => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::NoResponse => StatusCode::BAD_GATEWAY,
            Self::Overloaded | Self::MemoryLimit | Self::CpuLimit => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::WallLimit => StatusCode::GATEWAY_TIMEOUT,
            Self::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The one-line message used as the response body.
    pub fn message(&self) -> String {
        one_line(&self.to_string())
    }
}

impl IntoResponse for WorkerError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{}\n", self.message())).into_response();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code()));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, Self::Overloaded) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// Longest message body we generate; guest-provided text is cut to fit.
const MAX_MESSAGE_LEN: usize = 1024;

/// Folds whitespace runs (including newlines) into single spaces and caps
/// the length, so guest-controlled text stays one line.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_LEN));
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX_MESSAGE_LEN {
            let mut cut = MAX_MESSAGE_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_the_contract() {
        let cases = [
            (WorkerError::NotFound("x".into()), "worker-not-found", 404),
            (WorkerError::Exception("x".into()), "exception", 500),
            (WorkerError::NoResponse, "no-response", 502),
            (WorkerError::Overloaded, "overloaded", 503),
            (WorkerError::WallLimit, "wall-limit", 504),
            (WorkerError::MemoryLimit, "memory-limit", 503),
            (WorkerError::CpuLimit, "cpu-limit", 503),
            (WorkerError::SubrequestLimit, "subrequest-limit", 500),
            (WorkerError::RequestTooLarge(10), "request-too-large", 413),
            (WorkerError::Internal("x".into()), "internal", 500),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code(), code);
            assert_eq!(err.status().as_u16(), status);
            // The guest SDK publishes the same contract to workers.
            let sdk: berth_sdk::ErrorCode = code.parse().expect("the SDK knows every host code");
            assert_eq!(sdk.status(), status);
            let resp = err.into_response();
            assert_eq!(resp.headers()[ERROR_HEADER], code);
        }
        assert_eq!(ERROR_HEADER, berth_sdk::ERROR_HEADER);
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let resp = WorkerError::Overloaded.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let msg = WorkerError::Exception("a\nb\n\n  c".into()).message();
        assert_eq!(msg, "Worker threw an exception: a b c");
        let long = WorkerError::Exception("é".repeat(5000)).message();
        assert!(long.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
        assert!(!long.contains('\n'));
    }
}
