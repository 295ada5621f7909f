//! The sidecar's control API: what the server asks a sandbox's sidecar
//! directly over HTTP (bearer secret, loopback or the sandbox network),
//! because it must be answered now rather than eventually through the
//! document.
//!
//! - `GET /v1/status` → [`SidecarStatus`]
//! - `POST /v1/commit` [`CommitRequest`] → [`CommitOutcome`]
//!
//! Errors are `{ "error": { "code", "message" } }` like the server's API.

use serde::{Deserialize, Serialize};

/// Commit the workspace for a finished queue entry, as the person who
/// asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    /// The entry (`q_…`); goes into the `Canopy-Queue-Entry` trailer.
    pub queue_entry: String,
    /// The prompting user's name (commit author).
    pub author_name: String,
    /// The prompting user's email (commit author).
    pub author_email: String,
    /// The commit subject (the prompt's first line).
    pub subject: String,
    /// More of the message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// What the commit did, and the session's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitOutcome {
    /// The new commit, or `None` when nothing had changed.
    pub commit: Option<String>,
    /// Every path the session changed since it started.
    pub files_changed: Vec<String>,
    /// The branch checked out.
    pub branch: Option<String>,
    /// The commit at its head.
    pub head: Option<String>,
}

/// OpenCode as the sidecar sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpenCodeStatus {
    /// `starting`, `up`, `down`, `failed` or `stopped`.
    pub phase: String,
    /// Id of the current process, new on every (re)start.
    pub instance: String,
    /// Its pid.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Restarts so far.
    #[serde(default)]
    pub restarts: u32,
    /// Why the last process ended.
    #[serde(default)]
    pub last_exit: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SidecarStatus {
    /// The session.
    pub session_id: String,
    /// OpenCode.
    pub opencode: OpenCodeStatus,
    /// Whether the feature document is loaded.
    pub replica_loaded: bool,
    /// Whether the sync connection to the server is up.
    pub connected: bool,
}
