//! Observability: Prometheus metrics with bounded label cardinality
//! ([`metrics`]), the dashboard's 15-minute history fed by the same
//! accounting ([`history`]), and live per-script event streams ([`tail`]).
//! Depends on the leaf layer only; it records what the runtime reports and
//! never decides anything about a request.

pub mod history;
pub mod labels;
pub mod metrics;
pub mod tail;
