//! The memory limiter: caps the total linear memory of one instance (all
//! its memories together) and the size of its tables, and remembers *why*
//! a growth was refused, so the invocation reports `memory-limit` instead of
//! a generic trap. A refused growth traps at once rather than letting
//! `memory.grow` return -1: language runtimes that catch out-of-memory
//! themselves (SpiderMonkey in JS guests answers a bare 500) would otherwise
//! hide the limit from the platform.

use wasmtime::ResourceLimiter;

/// Largest table a guest may grow to (elements). Generous for real
/// toolchains' indirect-call tables, small enough to bound host memory.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Tracks and caps one instance's linear memory and table growth.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_memory_bytes: usize,
    memory_bytes: usize,
    /// Set when a growth was refused because of the memory cap.
    pub memory_limit_hit: bool,
    /// Set when a growth was refused because of the table cap.
    pub table_limit_hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `max_memory_bytes` of linear memory in total.
    pub fn new(max_memory_bytes: usize) -> Self {
        Self {
            max_memory_bytes,
            memory_bytes: 0,
            memory_limit_hit: false,
            table_limit_hit: false,
        }
    }

    /// Linear memory the instance holds now, all memories together (wasm
    /// memories never shrink, so also the most it held).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Clears the "why growth failed" flags (a reused instance starts a
    /// new request).
    pub fn reset_flags(&mut self) {
        self.memory_limit_hit = false;
        self.table_limit_hit = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_bytes - current.min(self.memory_bytes) + desired;
        if total > self.max_memory_bytes {
            self.memory_limit_hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (asked for {total})",
                self.max_memory_bytes
            ));
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.table_limit_hit = true;
            return Err(wasmtime::format_err!(
                "table limit of {MAX_TABLE_ELEMENTS} elements exceeded (asked for {desired})"
            ));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_all_memories_together() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap()); // first memory
        assert!(l.memory_growing(0, 30, None).unwrap()); // second memory
        let refused = l.memory_growing(30, 50, None).unwrap_err(); // 60 + 50 > 100
        assert!(
            refused.to_string().contains("memory limit of 100 bytes"),
            "{refused}"
        );
        assert!(l.memory_limit_hit);
        assert_eq!(l.memory_bytes, 90);
    }

    #[test]
    fn bounds_tables() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(l.table_growing(10, MAX_TABLE_ELEMENTS + 1, None).is_err());
        assert!(l.table_limit_hit);
    }
}
