//! Every limit a tenant runs under, in one folder: the policy (levels and
//! how they combine, re-exported from the leaf [`crate::base::limits`]) and
//! its enforcement.
//!
//! - [`memory`]: the store's `ResourceLimiter` (linear memory, tables).
//! - [`host_memory`]: what the host holds for an instance outside its
//!   linear memory (handles, buffered bytes), against one budget.
//! - [`cpu`]: the CPU meter the epoch callback consults.
//! - [`admission`]: per-script concurrency gate with a bounded queue.
//! - [`body`]: request and response body caps while they stream.
//!
//! This folder knows nothing of routing, the store or capabilities; the
//! runtime's invoke pipeline wires these pieces into each invocation.

pub mod admission;
pub mod body;
pub mod cpu;
pub mod host_memory;
pub mod memory;

pub use crate::base::limits::{CallLimits, Effective, HostLimits, ScriptLimits};
pub use admission::Admission;
pub use cpu::CpuMeter;
pub use host_memory::HostMemory;
pub use memory::MemoryLimiter;
