//! Change metadata: every change Canopy commits says what it did and when.
//!
//! Rust Automerge stamps changes with time 0 unless told otherwise, while JS
//! clients stamp the current time. The history browser lists changes by time
//! and message, so the server and the sidecar commit through [`ChangeMeta`].

use std::time::{SystemTime, UNIX_EPOCH};

use automerge::transaction::CommitOptions;

/// The message and time (Unix seconds, like JS Automerge) of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMeta {
    /// A short, human-readable description ("queue prompt q_…").
    pub message: String,
    /// Seconds since the Unix epoch.
    pub time: i64,
}

impl ChangeMeta {
    /// Metadata stamped with the current wall-clock time.
    pub fn now(message: impl Into<String>) -> Self {
        Self::at(message, unix_seconds(SystemTime::now()))
    }

    /// Metadata with an explicit time in Unix seconds.
    pub fn at(message: impl Into<String>, time: i64) -> Self {
        Self {
            message: message.into(),
            time,
        }
    }

    /// Options for `Automerge::transact_with` or `AutoCommit::commit_with`.
    pub fn commit_options(&self) -> CommitOptions {
        CommitOptions::default()
            .with_message(self.message.clone())
            .with_time(self.time)
    }
}

impl From<ChangeMeta> for CommitOptions {
    fn from(meta: ChangeMeta) -> Self {
        CommitOptions::default()
            .with_message(meta.message)
            .with_time(meta.time)
    }
}

/// Unix milliseconds now: the unit of every `*_at` field in the documents.
pub fn unix_ms_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn unix_seconds(t: SystemTime) -> i64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}
