//! The `x-berth-error` contract: codes the host puts on responses it
//! produces itself.

use std::fmt;
use std::str::FromStr;

/// The response header that marks a response the host produced itself.
pub const ERROR_HEADER: &str = "x-berth-error";

/// Why the host, not the worker, answered a request.
///
/// The string forms are a stable contract (see `docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No script matches the request (404).
    WorkerNotFound,
    /// The worker trapped or panicked (500).
    Exception,
    /// The worker returned without setting a response (502).
    NoResponse,
    /// No capacity right now; retry after `Retry-After` (503).
    Overloaded,
    /// The worker ran past its wall-clock limit (504).
    WallLimit,
    /// The worker ran past its CPU-time limit (503).
    CpuLimit,
    /// The worker tried to grow memory past its limit (503).
    MemoryLimit,
    /// The worker failed after exceeding its outbound request limit (500).
    SubrequestLimit,
    /// The request body exceeded the worker's limit (413).
    RequestTooLarge,
    /// The host failed (500).
    Internal,
    /// A `berth-dispatch-*` header of a fetch-form dispatch was unknown or
    /// invalid (400; seen by dispatch workers only).
    BadDispatchRequest,
    /// The client's request itself is malformed: an oversized or invalid
    /// `Host`, a request target whose authority contradicts `Host`, a path
    /// with broken percent-encoding (400).
    BadRequest,
    /// A request went through workers' subrequests back into the platform
    /// more often than `[egress] max_hops` allows (508).
    LoopDetected,
    /// The worker used up its fuel budget, the deterministic instruction
    /// meter (503).
    FuelLimit,
}

impl ErrorCode {
    /// Every code, for exhaustive checks.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::WorkerNotFound,
        ErrorCode::Exception,
        ErrorCode::NoResponse,
        ErrorCode::Overloaded,
        ErrorCode::WallLimit,
        ErrorCode::CpuLimit,
        ErrorCode::MemoryLimit,
        ErrorCode::SubrequestLimit,
        ErrorCode::RequestTooLarge,
        ErrorCode::Internal,
        ErrorCode::BadDispatchRequest,
        ErrorCode::BadRequest,
        ErrorCode::LoopDetected,
        ErrorCode::FuelLimit,
    ];

    /// The header value, e.g. `worker-not-found`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::WorkerNotFound => "worker-not-found",
            ErrorCode::Exception => "exception",
            ErrorCode::NoResponse => "no-response",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::WallLimit => "wall-limit",
            ErrorCode::CpuLimit => "cpu-limit",
            ErrorCode::MemoryLimit => "memory-limit",
            ErrorCode::SubrequestLimit => "subrequest-limit",
            ErrorCode::RequestTooLarge => "request-too-large",
            ErrorCode::Internal => "internal",
            ErrorCode::BadDispatchRequest => "bad-dispatch-request",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::LoopDetected => "loop-detected",
            ErrorCode::FuelLimit => "fuel-limit",
        }
    }

    /// The HTTP status the host answers with.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::WorkerNotFound => 404,
            ErrorCode::Exception | ErrorCode::Internal | ErrorCode::SubrequestLimit => 500,
            ErrorCode::NoResponse => 502,
            ErrorCode::Overloaded
            | ErrorCode::CpuLimit
            | ErrorCode::MemoryLimit
            | ErrorCode::FuelLimit => 503,
            ErrorCode::WallLimit => 504,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::BadDispatchRequest | ErrorCode::BadRequest => 400,
            ErrorCode::LoopDetected => 508,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Overloaded)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `x-berth-error` value this SDK version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {ERROR_HEADER} code {:?}", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == s.trim())
            .ok_or_else(|| UnknownErrorCode(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_header_form() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
        assert_eq!(" exception ".parse::<ErrorCode>(), Ok(ErrorCode::Exception));
        let err = "nope".parse::<ErrorCode>().unwrap_err();
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn statuses_match_the_documented_contract() {
        assert_eq!(ErrorCode::WorkerNotFound.status(), 404);
        assert_eq!(ErrorCode::Exception.status(), 500);
        assert_eq!(ErrorCode::NoResponse.status(), 502);
        assert_eq!(ErrorCode::Overloaded.status(), 503);
        assert_eq!(ErrorCode::CpuLimit.status(), 503);
        assert_eq!(ErrorCode::MemoryLimit.status(), 503);
        assert_eq!(ErrorCode::WallLimit.status(), 504);
        assert!(ErrorCode::Overloaded.is_retryable());
        assert!(!ErrorCode::Exception.is_retryable());
    }
}
