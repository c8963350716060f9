//! Failures of a request to a worker, and the **one** place they are mapped
//! to what clients, dispatch workers and logs see.
//!
//! Every way a request to a tenant's worker can fail is a [`WorkerError`].
//! [`WorkerError::code`] is the only map from a failure to its
//! [`ErrorCode`]; the code's `x-berth-error` string and HTTP status come
//! from the guest SDK's table (`berth_sdk::ErrorCode`), so the host and the
//! SDK that dispatch workers use cannot drift apart. [`WorkerError::to_http`]
//! builds the one response shape every path (data plane, fetch form of
//! dispatch) answers with; the WIT `dispatch-error` variant is derived from
//! the same code in the dispatcher capability, and a test there checks every
//! variant against it.

use http::{HeaderValue, StatusCode, header};

pub use berth_sdk::{ERROR_HEADER, ErrorCode};

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
    /// The guest used up its fuel (the deterministic instruction meter).
    #[error("Worker exceeded fuel limit")]
    FuelLimit,
    /// The guest failed after an outbound request was refused for exceeding
    /// its subrequest limit.
    #[error("Worker exceeded subrequest limit")]
    SubrequestLimit,
    /// The request body is larger than the script's limit (bytes).
    #[error("Request body exceeds the {0}-byte limit")]
    RequestTooLarge(u64),
    /// A dispatch worker's fetch-form request (`*.dispatch.internal`) had an
    /// unknown or invalid `berth-dispatch-*` header or endpoint.
    #[error("Bad dispatch request: {0}")]
    BadDispatchRequest(String),
    /// The client's request is malformed (host, authority, path).
    #[error("Bad request: {0}")]
    BadRequest(String),
    /// The request has passed through workers' subrequests back into the
    /// platform more than `[egress] max_hops` times.
    #[error("Loop detected: the request passed through {0} hops")]
    LoopDetected(u32),
    /// A host-side failure that is not the guest's fault.
    #[error("Internal error: {0}")]
    Internal(String),
    /// A failure of another layer of the host (the store, a blocking
    /// task), kept with its cause; answered like [`Self::Internal`].
    #[error("Internal error: {0}")]
    Host(HostFailure),
}

/// The cause of a [`WorkerError::Host`]: the lower layer's own error,
/// shared so the failure can be cloned into every place that reports it.
#[derive(Debug, Clone)]
pub struct HostFailure(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl HostFailure {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(error))
    }

    /// The lower layer's error.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Two failures are the same failure when they say the same thing.
impl PartialEq for HostFailure {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for HostFailure {}

impl WorkerError {
    /// The stable code of this failure: the one map from failure to
    /// `x-berth-error` code (a public contract; never rename) and status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::WorkerNotFound,
            Self::Exception(_) => ErrorCode::Exception,
            Self::NoResponse => ErrorCode::NoResponse,
            Self::Overloaded => ErrorCode::Overloaded,
            Self::WallLimit => ErrorCode::WallLimit,
            Self::MemoryLimit => ErrorCode::MemoryLimit,
            Self::CpuLimit => ErrorCode::CpuLimit,
            Self::FuelLimit => ErrorCode::FuelLimit,
            Self::SubrequestLimit => ErrorCode::SubrequestLimit,
            Self::RequestTooLarge(_) => ErrorCode::RequestTooLarge,
            Self::BadDispatchRequest(_) => ErrorCode::BadDispatchRequest,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::LoopDetected(_) => ErrorCode::LoopDetected,
            Self::Internal(_) | Self::Host(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status a client sees.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The one-line message with every detail (logs, tail, dispatch
    /// workers' `exception(..)`, and clients when details are exposed).
    pub fn message(&self) -> String {
        one_line(&self.to_string())
    }

    /// The message a public client sees: a guest's trap text and stderr
    /// and host internals can carry a tenant's secrets or internals, so
    /// they are replaced by a fixed sentence naming the request id; every
    /// other message is the host's own and says what to fix.
    pub fn public_message(&self, request_id: &str) -> String {
        match self {
            Self::Exception(_) => {
                format!(
                    "Worker threw an exception (request id {request_id}; details in the platform's logs)"
                )
            }
            Self::Internal(_) | Self::Host(_) => {
                format!("Internal error (request id {request_id}; details in the host's logs)")
            }
            other => other.message(),
        }
    }

    /// The response for this failure, with `body` made from the message:
    /// status, `x-berth-error`, a plain-text content type and, for
    /// `overloaded`, `Retry-After`. Every path that answers with a failure
    /// builds it here.
    pub fn to_http<B>(&self, body: impl FnOnce(String) -> B) -> http::Response<B> {
        self.to_http_with(self.message(), body)
    }

    /// [`Self::to_http`] with the [public message](Self::public_message)
    /// unless `expose_details`: what the data plane answers clients with.
    pub fn to_public_http<B>(
        &self,
        request_id: &str,
        expose_details: bool,
        body: impl FnOnce(String) -> B,
    ) -> http::Response<B> {
        let message = if expose_details {
            self.message()
        } else {
            self.public_message(request_id)
        };
        self.to_http_with(message, body)
    }

    /// [`Self::to_http`] with a message of the caller's (status, code and
    /// headers still from the map).
    pub fn to_http_with_message<B>(
        &self,
        message: String,
        body: impl FnOnce(String) -> B,
    ) -> http::Response<B> {
        self.to_http_with(message, body)
    }

    fn to_http_with<B>(
        &self,
        message: String,
        body: impl FnOnce(String) -> B,
    ) -> http::Response<B> {
        let mut response = http::Response::new(body(format!("{message}\n")));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code().as_str()));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.code().is_retryable() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// The limit a failure with `code` hit, as the `kind` label of
/// `berth_limit_hits_total` names it; `None` for failures that are not a
/// limit.
pub fn limit_kind(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::WallLimit => "wall",
        ErrorCode::CpuLimit => "cpu",
        ErrorCode::FuelLimit => "fuel",
        ErrorCode::MemoryLimit => "memory",
        ErrorCode::Overloaded => "concurrency",
        ErrorCode::RequestTooLarge => "request_body",
        ErrorCode::SubrequestLimit => "subrequests",
        // Not a limit: not found, exceptions, no response, bad requests,
        // loops, the host's own failures.
        _ => return None,
    })
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
pub(crate) mod tests {
    use super::*;

    /// One of each variant, so a new variant must be added here too.
    pub(crate) fn every_variant() -> Vec<WorkerError> {
        vec![
            WorkerError::NotFound("x".into()),
            WorkerError::Exception("x".into()),
            WorkerError::NoResponse,
            WorkerError::Overloaded,
            WorkerError::WallLimit,
            WorkerError::MemoryLimit,
            WorkerError::CpuLimit,
            WorkerError::SubrequestLimit,
            WorkerError::RequestTooLarge(10),
            WorkerError::BadDispatchRequest("x".into()),
            WorkerError::BadRequest("x".into()),
            WorkerError::LoopDetected(9),
            WorkerError::Internal("x".into()),
            WorkerError::FuelLimit,
        ]
    }

    #[test]
    fn codes_and_statuses_are_the_contract() {
        let expected = [
            ("worker-not-found", 404),
            ("exception", 500),
            ("no-response", 502),
            ("overloaded", 503),
            ("wall-limit", 504),
            ("memory-limit", 503),
            ("cpu-limit", 503),
            ("subrequest-limit", 500),
            ("request-too-large", 413),
            ("bad-dispatch-request", 400),
            ("bad-request", 400),
            ("loop-detected", 508),
            ("internal", 500),
            ("fuel-limit", 503),
        ];
        let all = every_variant();
        assert_eq!(
            all.len(),
            ErrorCode::ALL.len(),
            "every SDK code has a failure"
        );
        for (err, (code, status)) in all.into_iter().zip(expected) {
            assert_eq!(err.code().as_str(), code);
            assert_eq!(err.status().as_u16(), status);
            let resp = err.to_http(|_| ());
            assert_eq!(resp.headers()[ERROR_HEADER], code);
            assert_eq!(resp.status().as_u16(), status);
        }
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let resp = WorkerError::Overloaded.to_http(|_| ());
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = WorkerError::CpuLimit.to_http(|_| ());
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn public_messages_never_carry_guest_text() {
        let trap = WorkerError::Exception("panicked: secret=hunter2; stderr: boom".into());
        let public = trap.public_message("abc123");
        assert!(
            !public.contains("hunter2") && !public.contains("boom"),
            "{public}"
        );
        assert!(public.contains("abc123"), "{public}");
        let response = trap.to_public_http("abc123", false, |b| b);
        assert!(!response.body().contains("hunter2"));
        assert_eq!(response.headers()[ERROR_HEADER], "exception");
        let exposed = trap.to_public_http("abc123", true, |b| b);
        assert!(exposed.body().contains("hunter2"), "opt-in shows details");
        let internal = WorkerError::Internal("sled: /data/store corrupt".into());
        assert!(!internal.public_message("x").contains("sled"));
        // Host-made messages stay as they are.
        assert_eq!(
            WorkerError::CpuLimit.public_message("x"),
            WorkerError::CpuLimit.message()
        );
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
