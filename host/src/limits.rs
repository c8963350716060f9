//! Per-instance resource limits that Wasmtime enforces through hooks.
//!
//! [`MemoryLimiter`] is the store's `ResourceLimiter`: it caps the total
//! linear memory of one instance (all its memories together) and the size of
//! its tables, and remembers *why* a growth was refused, so the invocation
//! can report `memory-limit` instead of a generic trap.

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

    /// Linear memory currently allocated by the instance.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
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
            return Ok(false);
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
            return Ok(false);
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
        assert!(!l.memory_growing(30, 50, None).unwrap()); // 60 + 50 > 100
        assert!(l.memory_limit_hit);
        assert_eq!(l.memory_bytes(), 90);
    }

    #[test]
    fn bounds_tables() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(!l.table_growing(10, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert!(l.table_limit_hit);
    }
}
