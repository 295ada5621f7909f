//! The sidecar's control API: what the server asks a sandbox's sidecar
//! directly over HTTP (bearer secret, loopback or the sandbox network),
//! because it must be answered now rather than eventually through the
//! document.
//!
//! - `GET /v1/status` → [`SidecarStatus`]
//! - `POST /v1/commit` [`CommitRequest`] → [`CommitOutcome`]
//! - `POST /v1/push` [`PushRequest`] → [`PushOutcome`]
//! - `POST /v1/claim` [`ClaimRequest`] → [`SidecarStatus`]: binds a pooled
//!   sidecar (started with no session, OpenCode already up) to a session.
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

/// `POST /v1/push`: push the workspace's branch to the repository's
/// remote, with the sandbox's git credential (asked of the server when
/// git needs it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PushRequest {
    /// The branch (the one checked out).
    pub branch: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PushOutcome {
    /// The branch pushed.
    pub branch: String,
    /// The commit now at its head on the remote.
    pub head: String,
}

/// `POST /git/credential` (MCP bearer; the sandbox's git credential
/// helper asks it) and the server's `POST /api/features/{id}/sessions/{sid}/git-credential`:
/// a credential for the repository's host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CredentialRequest {
    /// `https` or `http`.
    #[serde(default)]
    pub protocol: String,
    /// Host (and port) git connects to.
    pub host: String,
}

/// A git credential, short-lived where the forge allows it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GitCredential {
    /// User name.
    pub username: String,
    /// The token.
    pub password: String,
    /// Unix milliseconds after which it no longer works, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredential")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
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

/// `GET /v1/diff`: everything the session changed since it began (its base),
/// committed or not, untracked files included, ignored files not.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionDiff {
    /// The commit at the workspace's head, if any.
    pub head: Option<String>,
    /// One entry per changed path, sorted by path.
    pub files: Vec<FileDiff>,
    /// Patches were left out past [`SessionDiff::MAX_PATCH_BYTES`] in all.
    pub truncated: bool,
}

impl SessionDiff {
    /// Patch text one answer carries at most; past it, files keep their
    /// counts and lose their patch.
    pub const MAX_PATCH_BYTES: usize = 1024 * 1024;
    /// Patch text one file carries at most.
    pub const MAX_FILE_PATCH_BYTES: usize = 256 * 1024;
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileDiff {
    /// Its path in the workspace.
    pub path: String,
    /// `added`, `modified` or `deleted` (renames show as a deletion and an
    /// addition).
    pub status: String,
    /// Lines added; 0 for binary files.
    pub additions: u64,
    /// Lines removed; 0 for binary files.
    pub deletions: u64,
    /// Git can show no lines of it.
    pub binary: bool,
    /// The unified diff (`git diff` format, from `@@` on), absent for
    /// binary files and past the size limits.
    pub patch: Option<String>,
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

/// The repository a sidecar clones into an empty workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSource {
    /// Clone URL.
    pub url: String,
    /// Branch to check out.
    pub branch: String,
    /// The session's own branch (`canopy/…`, see [`crate::git`]), made
    /// from `branch` after the clone, or the remote's if it has one
    /// already (the session pushed before). `None`: work on `branch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_branch: Option<String>,
    /// Commits of history to fetch (absent or 0: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// What the clone authenticates with, if anything: used for the clone
    /// only, in git's environment; later fetches and pushes ask the
    /// server through the sandbox's credential helper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<GitCredential>,
}

/// `POST /v1/claim`: what binds a pooled sidecar to one session. The same
/// values a bound sidecar gets from its environment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The server's base URL as seen from inside the sandbox.
    pub server_url: String,
    /// The sandbox token (role `agent`, this feature and session).
    pub sandbox_token: String,
    /// The feature (`ftr_…`).
    pub feature_id: String,
    /// The session (`ses_…`).
    pub session_id: String,
    /// The feature's document (`automerge:…`).
    pub feature_doc: String,
    /// What to clone when the workspace is not a repository yet (`None`:
    /// an empty repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoSource>,
}

/// Not derived: the token must not end up in logs.
impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("server_url", &self.server_url)
            .field("feature_id", &self.feature_id)
            .field("session_id", &self.session_id)
            .field("feature_doc", &self.feature_doc)
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

/// The workspace as the sidecar prepared it (sidecars that prepare their
/// own workspace: containers).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkspaceStatus {
    /// The branch checked out.
    #[serde(default)]
    pub branch: Option<String>,
    /// Why the workspace is an empty repository although a repository was
    /// asked for.
    #[serde(default)]
    pub clone_error: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SidecarStatus {
    /// The session; empty while a pooled sidecar waits to be claimed.
    pub session_id: String,
    /// The workspace, once prepared by the sidecar itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceStatus>,
    /// OpenCode.
    pub opencode: OpenCodeStatus,
    /// Whether the feature document is loaded.
    pub replica_loaded: bool,
    /// Whether the sync connection to the server is up.
    pub connected: bool,
}
