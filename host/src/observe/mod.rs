//! Observability: Prometheus metrics with bounded label cardinality
//! ([`metrics`]) and live per-script event streams ([`tail`]). Depends on
//! the leaf layer only; it records what the runtime reports and never
//! decides anything about a request.

pub mod metrics;
pub mod tail;
