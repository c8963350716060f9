//! The host-memory meter: memory the host holds on one instance's behalf
//! outside its linear memory, counted against one per-instance budget
//! (`host_memory_mb`, by default the instance's `memory_mb`).
//!
//! The budget has two parts, fixed when the instance starts
//! ([`HostBudget::split`]):
//!
//! - **the resource table** (every handle the guest holds: header maps,
//!   requests, bodies, streams, pollables, KV buckets …) gets half of it as
//!   a number of slots: each slot stands for [`TABLE_SLOT_BYTES`], the most
//!   one entry can hold apart from body and header bytes, because the
//!   capabilities cap what a guest can put into one entry (a request's
//!   path, authority and method at their own caps). A push past the last
//!   slot fails, and the invocation ends with `memory-limit`.
//! - **bytes the host buffers** (outgoing body chunks waiting to be sent or
//!   dropped, header content a guest writes, KV values in flight, captured
//!   stdout/stderr) get the other half and are charged exactly: a
//!   [`Charge`] is taken when the host
//!   starts holding the bytes and given back when it drops them, wherever
//!   that happens (sent on a socket, read by another worker, or dropped
//!   with the guest's handle).
//!
//! So however a guest mixes handles and buffered bytes, what the host
//! holds for it stays within `host_memory_mb`. The meter never decides
//! anything about linear memory ([`super::memory`]) and knows nothing of
//! Wasmtime: the capabilities charge it, the invoke pipeline reads
//! [`HostMemory::limit_hit`] to report `memory-limit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Most one guest-built header map (`wasi:http/types.fields`) may hold, in
/// Wasmtime's in-memory estimate (names and values plus ~70 bytes per
/// entry): Wasmtime's own default and what Cloudflare accepts as request
/// headers (a dispatch worker forwarding 100 KB of SSO cookies and adding
/// one). Header bytes are charged to the buffered half of the budget as the
/// guest writes them, so the table slot does not have to cover them.
pub const FIELDS_MAX_BYTES: usize = 128 << 10;

/// Longest `path-with-query` a guest may give an outgoing request (the URI
/// limit of common proxies and CDNs).
pub const PATH_MAX_BYTES: usize = 8 << 10;

/// Longest authority a guest may give an outgoing request: a DNS name is at
/// most 253 bytes; the rest is room for a port and user info.
pub const AUTHORITY_MAX_BYTES: usize = 512;

/// Longest extension method (`Method::Other`) of an outgoing request.
pub const METHOD_MAX_BYTES: usize = 32;

/// What one resource-table slot stands for: the largest entry apart from
/// header content (charged as it is written) — an outgoing request with its
/// path and authority — plus its boxes, links and channels.
pub const TABLE_SLOT_BYTES: usize = 32 << 10;

// The worst entry fits a slot (checked when compiling).
const _: () =
    assert!(PATH_MAX_BYTES + AUTHORITY_MAX_BYTES + METHOD_MAX_BYTES < TABLE_SLOT_BYTES / 2);

/// Fewest table slots an instance gets, whatever its budget: enough for a
/// plain request/response (request, outparam, header maps, body, stream,
/// pollables, stdio streams).
pub const MIN_TABLE_SLOTS: usize = 32;

/// How an instance's host-memory budget is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBudget {
    /// Resource-table entries the instance may hold at once.
    pub table_slots: usize,
    /// Bytes the host may buffer for it at once.
    pub buffered_bytes: usize,
}

impl HostBudget {
    /// Half of `bytes` for the resource table (in slots), half for
    /// buffered bytes.
    pub fn split(bytes: usize) -> Self {
        let table = bytes / 2;
        Self {
            table_slots: (table / TABLE_SLOT_BYTES).max(MIN_TABLE_SLOTS),
            buffered_bytes: bytes - table,
        }
    }
}

/// A charge refused: the instance would hold more than its budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host memory limit of {limit} bytes exceeded (holding {held}, asked for {asked} more)")]
pub struct HostMemoryExceeded {
    /// The budget for buffered bytes.
    pub limit: usize,
    /// Bytes held when the charge was asked.
    pub held: usize,
    /// Bytes asked for.
    pub asked: usize,
}

#[derive(Debug)]
struct Meter {
    limit: AtomicUsize,
    used: AtomicUsize,
    /// The most `used` reached since the meter started or was reset.
    peak: AtomicUsize,
    hit: AtomicBool,
    /// Every meter's bytes together (the runtime's gauge).
    total: Arc<AtomicU64>,
}

/// One instance's meter for buffered bytes; clones share it. Charges may
/// outlive the instance (a response body still streaming to its client):
/// they are returned to the meter, and the runtime-wide total, whenever
/// they are dropped.
#[derive(Debug, Clone)]
pub struct HostMemory(Arc<Meter>);

impl Default for HostMemory {
    /// A meter without a limit (platform components and tests).
    fn default() -> Self {
        Self::new(usize::MAX, Arc::new(AtomicU64::new(0)))
    }
}

impl HostMemory {
    /// A meter allowing `limit` buffered bytes, adding what it holds to
    /// `total`.
    pub fn new(limit: usize, total: Arc<AtomicU64>) -> Self {
        Self(Arc::new(Meter {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            hit: AtomicBool::new(false),
            total,
        }))
    }

    /// Takes `bytes` from the budget; refusing raises [`Self::limit_hit`].
    pub fn charge(&self, bytes: usize) -> Result<Charge, HostMemoryExceeded> {
        let charge = self.try_charge(bytes);
        if charge.is_err() {
            self.0.hit.store(true, Ordering::Relaxed);
        }
        charge
    }

    /// Takes `bytes` from the budget if there is room, without marking the
    /// instance as over its limit (for bytes the host may simply not keep,
    /// like captured output).
    pub fn try_charge(&self, bytes: usize) -> Result<Charge, HostMemoryExceeded> {
        let limit = self.0.limit.load(Ordering::Relaxed);
        let held = self
            .0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .map_err(|held| HostMemoryExceeded {
                limit,
                held,
                asked: bytes,
            })?;
        self.0.peak.fetch_max(held + bytes, Ordering::Relaxed);
        self.0.total.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(Charge {
            meter: self.0.clone(),
            bytes,
        })
    }

    /// A charge of nothing, to [grow](Charge::try_grow) later.
    pub fn empty_charge(&self) -> Charge {
        Charge {
            meter: self.0.clone(),
            bytes: 0,
        }
    }

    /// Bytes held right now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The most bytes held at once since the meter started or was last
    /// [reset](Self::reset) (what the dashboard ranks memory by).
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Whether a charge was refused since the last [`Self::reset`].
    pub fn limit_hit(&self) -> bool {
        self.0.hit.load(Ordering::Relaxed)
    }

    /// A new request on a warm instance: its own limit, the flag cleared.
    /// Bytes still held (a previous response still streaming) stay charged.
    pub fn reset(&self, limit: usize) {
        self.0.limit.store(limit, Ordering::Relaxed);
        self.0.hit.store(false, Ordering::Relaxed);
        self.0
            .peak
            .store(self.0.used.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Bytes taken from a [`HostMemory`] budget, given back when dropped.
#[derive(Debug)]
pub struct Charge {
    meter: Arc<Meter>,
    bytes: usize,
}

impl Charge {
    /// Takes `bytes` more, if there is room (quietly, like
    /// [`HostMemory::try_charge`]).
    pub fn try_grow(&mut self, bytes: usize) -> Result<(), HostMemoryExceeded> {
        let mut more = HostMemory(self.meter.clone()).try_charge(bytes)?;
        self.bytes += more.bytes;
        more.bytes = 0;
        Ok(())
    }
}

impl Charge {
    /// Takes over `other`'s bytes (a charge of the same meter).
    pub fn absorb(&mut self, mut other: Charge) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Gives every byte back, keeping the (now empty) charge.
    pub fn release(&mut self) {
        self.meter.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.meter
            .total
            .fetch_sub(self.bytes as u64, Ordering::Relaxed);
        self.bytes = 0;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_the_limit_and_returned_on_drop() {
        let total = Arc::new(AtomicU64::new(0));
        let meter = HostMemory::new(100, total.clone());
        let a = meter.charge(60).unwrap();
        let refused = meter.charge(41).unwrap_err();
        assert_eq!(
            refused,
            HostMemoryExceeded {
                limit: 100,
                held: 60,
                asked: 41
            }
        );
        assert!(meter.limit_hit());
        assert_eq!(total.load(Ordering::Relaxed), 60);
        let b = meter.charge(40).unwrap();
        assert_eq!(meter.used(), 100);
        drop(a);
        drop(b);
        assert_eq!(meter.used(), 0);
        assert_eq!(total.load(Ordering::Relaxed), 0, "the runtime total too");
        assert_eq!(meter.peak(), 100, "the peak outlives the charges");
        meter.reset(10);
        assert!(!meter.limit_hit());
        assert_eq!(meter.peak(), 0, "a new request starts from what is held");
        assert!(meter.charge(11).is_err());
    }

    #[test]
    fn a_quiet_refusal_does_not_mark_the_instance() {
        let meter = HostMemory::new(10, Arc::new(AtomicU64::new(0)));
        assert!(meter.try_charge(11).is_err());
        assert!(!meter.limit_hit());
        let mut growing = meter.empty_charge();
        growing.try_grow(4).unwrap();
        growing.try_grow(6).unwrap();
        assert!(growing.try_grow(1).is_err());
        assert!(!meter.limit_hit());
        assert_eq!((growing.bytes, meter.used()), (10, 10));
        drop(growing);
        assert_eq!(meter.used(), 0);
    }

    #[test]
    fn the_budget_is_split_between_table_slots_and_bytes() {
        let split = HostBudget::split(64 << 20);
        assert_eq!(split.table_slots, 1024);
        assert_eq!(split.buffered_bytes, 32 << 20);
        // The table's share, at the most a slot can hold, stays within its
        // half: together they never exceed the budget.
        assert!(split.table_slots * TABLE_SLOT_BYTES + split.buffered_bytes <= 64 << 20);
        // A tiny budget still runs a plain request.
        assert_eq!(HostBudget::split(1 << 20).table_slots, MIN_TABLE_SLOTS);
    }
}
