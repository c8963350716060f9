//! The leaf layer: Berth's vocabulary as plain data, with no I/O and no
//! imports from the rest of the crate.
//!
//! - [`names`]: validated namespace/script identifiers.
//! - [`error`]: every way a request fails, and the **one** map from a
//!   failure to its `x-berth-error` code, HTTP status, message and WIT
//!   `dispatch-error` variant (the codes are the guest SDK's own table).
//! - [`limits`]: limit levels (host, script, call) and how they combine.
//! - [`isolation`]: fresh instance per request, or warm reuse.
//! - [`egress_rules`]: namespace/script host patterns that narrow egress.
//! - [`host_pattern`]: `example.com` / `*.example.com` patterns and `Host`
//!   normalization.
//! - [`reserved`]: the reserved `dispatch.internal` domain.
//! - [`platform_headers`]: the `berth-*` request headers only the host sets.
//! - [`records`]: what the store keeps.
//! - [`metadata`]: upload metadata and the rules for tags, vars, secrets.
//! - [`settings`]: script and namespace settings and their merge patches.
//! - [`listing`]: tag filters, name search and pages of script lists.
//! - [`tail_relay`]: the seam through which live-tail events cross hosts.
//! - [`cluster`]: what a host announces to the others sharing its store.
//!
//! Everything above this layer may import it; it imports nothing of Berth.
//! It must never open a file, a socket or a thread.

pub mod cluster;
pub mod egress_rules;
pub mod error;
pub mod host_pattern;
pub mod isolation;
pub mod limits;
pub mod listing;
pub mod metadata;
pub mod names;
pub mod platform_headers;
pub mod records;
pub mod reserved;
pub mod settings;
pub mod tail_relay;

/// Refuses a zero among `values`, naming `section.key`: the check every
/// count and timeout of the configuration shares.
pub fn require_positive(section: &str, values: &[(&str, u64)]) -> Result<(), Invalid> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((key, _)) => Err(Invalid(format!("{section}.{key} must be greater than 0"))),
        None => Ok(()),
    }
}

/// A boxed, sendable future: the one alias every seam of the crate uses
/// (the invoker, the egress connector, the budgeted streams).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a loaded component serves as; decides which capabilities it is
/// linked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A tenant's worker: `wasi:http/proxy` (and KV) only.
    User,
    /// A platform's dispatch worker: also imports `berth:platform/dispatcher`.
    Dispatch,
}

/// A value that failed validation, with a message naming the key and the
/// problem (`limits.cpu_ms must be greater than 0`). The one error type of
/// every pure validator, so callers map it without reading its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// The message, for callers that show it.
impl std::ops::Deref for Invalid {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}
