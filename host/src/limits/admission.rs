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

/// The admission gate of one worker.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
    max_queue: u32,
    queue_timeout: Duration,
}

impl Admission {
    /// A gate letting `concurrency` requests run at once.
    pub fn new(concurrency: u32, max_queue: u32, queue_timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            waiting: AtomicU32::new(0),
            max_queue,
            queue_timeout,
        }
    }

    /// Waits for a slot, or refuses with [`WorkerError::Overloaded`].
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, WorkerError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(WorkerError::Overloaded);
        }
        let waited =
            tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
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
