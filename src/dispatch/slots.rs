//! The global limit on sandboxes running at once. A session holds a slot
//! from the start of its sandbox until the sandbox is stopped for good
//! (idle, completed, failed to start); starts beyond the limit wait, and
//! the session says so.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sandbox slots, by session.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    semaphore: Arc<Semaphore>,
    held: Mutex<HashMap<String, OwnedSemaphorePermit>>,
    /// Slots in use, for operators.
    in_use: Gauge,
    /// Starts waiting for a slot.
    waiting: Gauge,
}

impl Slots {
    /// `limit` sandboxes at once; `in_use` and `waiting` report them.
    pub fn new(limit: usize, in_use: Gauge, waiting: Gauge) -> Self {
        Slots {
            limit,
            semaphore: Arc::new(Semaphore::new(limit)),
            held: Mutex::new(HashMap::new()),
            in_use,
            waiting,
        }
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sessions holding a slot now.
    pub fn in_use(&self) -> usize {
        self.held().len()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnedSemaphorePermit>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot for `session_id` if one is free (or it holds one);
    /// `false` if all are taken.
    pub fn try_take(&self, session_id: &str) -> bool {
        if self.held().contains_key(session_id) {
            return true;
        }
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => {
                self.keep(session_id, permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Wait for a slot for `session_id`.
    pub async fn take(&self, session_id: &str) {
        if self.held().contains_key(session_id) {
            return;
        }
        self.waiting.inc();
        // Counted down however the wait ends (a cancelled start too).
        let _waited = Waited(&self.waiting);
        // The semaphore is never closed.
        if let Ok(permit) = self.semaphore.clone().acquire_owned().await {
            self.keep(session_id, permit);
        }
    }

    fn keep(&self, session_id: &str, permit: OwnedSemaphorePermit) {
        let mut held = self.held();
        // A second permit for one session (two takes raced) is dropped.
        held.entry(session_id.to_owned()).or_insert(permit);
        self.in_use
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
    }

    /// Give `session_id`'s slot back (no-op without one).
    pub fn release(&self, session_id: &str) {
        let mut held = self.held();
        held.remove(session_id);
        self.in_use
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
    }
}

/// Decrements the waiting gauge when dropped.
struct Waited<'a>(&'a Gauge);

impl Drop for Waited<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_beyond_the_limit_wait_for_a_release() {
        let (in_use, waiting) = (Gauge::default(), Gauge::default());
        let slots = Arc::new(Slots::new(1, in_use.clone(), waiting.clone()));
        assert!(slots.try_take("a"));
        assert!(slots.try_take("a"), "a session's own slot is idempotent");
        assert!(!slots.try_take("b"));
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.take("b").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!((in_use.get(), waiting.get()), (1, 1));
        slots.release("a");
        waiter.await.expect("b got the slot");
        assert_eq!(slots.in_use(), 1);
        assert_eq!((in_use.get(), waiting.get()), (1, 0));
        assert!(!slots.try_take("a"));
    }
}
