//! Per-script admission control (`max_concurrency`).
//!
//! Each loaded worker has a semaphore with `max_concurrency` permits. A
//! request takes a permit for the life of its guest; when none is free it
//! waits in a bounded queue (`limits.max_queue` waiters, at most
//! `limits.queue_timeout_ms`), and beyond either bound it is refused with
//! `overloaded` at once. Memory use is bounded by the queue size, never by
//! the offered load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::base::error::WorkerError;

/// The admission gate of one script (in one role). It outlives the loaded
/// worker: a redeploy or an eviction keeps the gate, so invocations still
/// holding permits of the old version count against the new one too.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    concurrency: AtomicU32,
    /// Permits to destroy as they come back (after a shrink while they
    /// were held).
    debt: Arc<AtomicU32>,
    waiting: AtomicU32,
    max_queue: u32,
    queue_timeout: Duration,
    /// The tenant's recent CPU use (how soon its guests yield into the
    /// heavy lane); here because the gate outlives cached workers.
    pub cpu_history: crate::limits::cpu::CpuHistory,
}

/// A running request's slot; returned to the gate when dropped.
#[derive(Debug)]
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<AtomicU32>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // The gate shrank while this slot was held: the slot goes away
        // instead of back.
        let paid = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if paid {
            permit.forget();
        }
    }
}

/// A place in a gate's queue, given back when dropped.
struct Queued<'a>(&'a AtomicU32);

impl<'a> Queued<'a> {
    /// Takes a place if fewer than `max` are taken.
    fn join(waiting: &'a AtomicU32, max: u32) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(waiting))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// A gate letting `concurrency` requests run at once.
    pub fn new(concurrency: u32, max_queue: u32, queue_timeout: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency: AtomicU32::new(concurrency),
            debt: Arc::new(AtomicU32::new(0)),
            waiting: AtomicU32::new(0),
            max_queue,
            queue_timeout,
            cpu_history: Default::default(),
        }
    }

    /// Changes the concurrency (a settings change) without forgetting the
    /// slots that are held: growing adds slots, shrinking removes free ones
    /// now and held ones as they are returned.
    pub fn resize(&self, concurrency: u32) {
        let new = concurrency.max(1);
        let old = self.concurrency.swap(new, Ordering::AcqRel);
        if new > old {
            let mut grow = new - old;
            // Cancel outstanding debt first.
            while grow > 0 {
                let debt = self.debt.load(Ordering::Acquire);
                if debt == 0 {
                    break;
                }
                let cancel = debt.min(grow);
                if self
                    .debt
                    .compare_exchange(debt, debt - cancel, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    grow -= cancel;
                }
            }
            self.permits.add_permits(grow as usize);
        } else if new < old {
            let shrink = old - new;
            let forgotten = self.permits.forget_permits(shrink as usize) as u32;
            self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
    }

    /// Whether no request holds or waits for a slot (the gate can go).
    pub fn is_idle(&self) -> bool {
        let target = self.concurrency.load(Ordering::Acquire) as usize;
        self.waiting.load(Ordering::Acquire) == 0
            && self.debt.load(Ordering::Acquire) == 0
            && self.permits.available_permits() == target
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> Permit {
        Permit {
            permit: Some(permit),
            debt: self.debt.clone(),
        }
    }

    /// Waits for a slot, or refuses with [`WorkerError::Overloaded`].
    ///
    /// A waiter's place in the queue is a guard: it is given back however
    /// the wait ends — a slot, the queue timeout, or the future being
    /// dropped (a client that gave up, a shorter deadline, a dispatch
    /// worker's call abandoned). Otherwise every abandoned wait would
    /// shrink the queue for good, and any client could close a tenant's
    /// queue by walking away from requests.
    pub async fn admit(&self) -> Result<Permit, WorkerError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(self.permit(permit));
        }
        let Some(_place) = Queued::join(&self.waiting, self.max_queue) else {
            return Err(WorkerError::Overloaded);
        };
        let waited =
            tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await;
        match waited {
            Ok(Ok(permit)) => Ok(self.permit(permit)),
            _ => Err(WorkerError::Overloaded),
        }
    }

    /// Requests waiting for a slot right now.
    pub fn queued(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resizing_keeps_held_slots_counted() {
        let gate = Admission::new(2, 0, Duration::from_millis(10));
        let a = gate.admit().await.unwrap();
        let b = gate.admit().await.unwrap();
        assert!(gate.admit().await.is_err(), "full");
        // Shrink to 1 while both are held: the next returned slot vanishes.
        gate.resize(1);
        drop(a);
        assert!(
            gate.admit().await.is_err(),
            "still one held, the limit is 1"
        );
        drop(b);
        let c = gate.admit().await.unwrap();
        assert!(gate.admit().await.is_err(), "exactly one slot now");
        // Grow back to 3.
        gate.resize(3);
        let d = gate.admit().await.unwrap();
        let e = gate.admit().await.unwrap();
        assert!(gate.admit().await.is_err());
        assert!(!gate.is_idle());
        drop((c, d, e));
        assert!(gate.is_idle());
    }

    #[tokio::test]
    async fn queue_is_bounded_and_waiters_time_out() {
        let gate = Admission::new(1, 1, Duration::from_millis(20));
        let held = gate.admit().await.unwrap();
        // One waiter may queue; it times out while the permit is held.
        assert_eq!(gate.admit().await.unwrap_err(), WorkerError::Overloaded);
        assert_eq!(gate.queued(), 0);
        drop(held);
        let again = gate.admit().await.unwrap();
        drop(again);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let gate = Arc::new(Admission::new(1, 0, Duration::from_secs(3600)));
        let _held = gate.admit().await.unwrap();
        // max_queue 0: no waiting at all, even with a long timeout.
        assert_eq!(gate.admit().await.unwrap_err(), WorkerError::Overloaded);
    }

    /// The issue-25 leak: waiters that give up (their future dropped while
    /// queued) must give their place back, or the queue closes for good.
    #[tokio::test]
    async fn abandoned_waits_give_their_place_back() {
        let gate = Arc::new(Admission::new(1, 4, Duration::from_secs(3600)));
        let held = gate.admit().await.unwrap();
        for _ in 0..12 {
            let abandoned = tokio::time::timeout(Duration::from_millis(5), gate.admit()).await;
            assert!(abandoned.is_err(), "it waited, then its client gave up");
        }
        assert_eq!(gate.queued(), 0, "no place is left taken");
        // The queue still takes four waiters: they are admitted in turn.
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.admit().await.map(drop) })
            })
            .collect();
        while gate.queued() < 4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.admit().await.unwrap_err(), WorkerError::Overloaded);
        drop(held);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(()));
        }
        assert!(gate.is_idle());
    }

    #[tokio::test]
    async fn a_released_permit_admits_a_waiter() {
        let gate = Arc::new(Admission::new(1, 4, Duration::from_secs(3600)));
        let held = gate.admit().await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(|_| ()) }
        });
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
