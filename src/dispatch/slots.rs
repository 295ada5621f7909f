//! The global limit on sandboxes running at once. A session holds a slot
//! from the start of its sandbox until the sandbox is stopped for good
//! (idle, completed, failed to start); starts beyond the limit wait, and
//! the session says so.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sandbox slots, by session.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    semaphore: Arc<Semaphore>,
    held: Mutex<HashMap<String, OwnedSemaphorePermit>>,
}

impl Slots {
    /// `limit` sandboxes at once.
    pub fn new(limit: usize) -> Self {
        Slots {
            limit,
            semaphore: Arc::new(Semaphore::new(limit)),
            held: Mutex::new(HashMap::new()),
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
        // The semaphore is never closed.
        if let Ok(permit) = self.semaphore.clone().acquire_owned().await {
            self.keep(session_id, permit);
        }
    }

    fn keep(&self, session_id: &str, permit: OwnedSemaphorePermit) {
        // A second permit for one session (two takes raced) is dropped.
        self.held().entry(session_id.to_owned()).or_insert(permit);
    }

    /// Give `session_id`'s slot back (no-op without one).
    pub fn release(&self, session_id: &str) {
        self.held().remove(session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_beyond_the_limit_wait_for_a_release() {
        let slots = Arc::new(Slots::new(1));
        assert!(slots.try_take("a"));
        assert!(slots.try_take("a"), "a session's own slot is idempotent");
        assert!(!slots.try_take("b"));
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.take("b").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        slots.release("a");
        waiter.await.expect("b got the slot");
        assert_eq!(slots.in_use(), 1);
        assert!(!slots.try_take("a"));
    }
}
