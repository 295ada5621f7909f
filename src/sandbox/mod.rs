//! Sandboxes: where a session's agent (OpenCode) runs, with its workspace.
//! Backends implement [`SandboxBackend`]; the embedded default runs local
//! processes ([`local`]), the Docker backend comes next.
//!
//! A sandbox outlives the server process that started it: after a crash the
//! next server [`SandboxBackend::reconcile`]s, adopting the sandboxes that
//! still answer (so runs in flight continue) and stopping the rest.

pub mod docker;
pub mod image;
pub mod local;
pub mod opencode_config;
pub mod sidecar;

pub use sidecar::{
    SidecarError, sidecar_claim, sidecar_commit, sidecar_diff, sidecar_push, sidecar_status,
};

use std::path::PathBuf;

use futures::future::BoxFuture;

/// The repository a session works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// Clone URL.
    pub url: String,
    /// Branch to check out (the feature branch if set, else the base branch).
    pub branch: String,
    /// The session's own branch, made from `branch` (see
    /// [`canopy_protocol::git`]); `None` works on `branch` itself.
    pub work_branch: Option<String>,
    /// Commits of history to fetch; 0 for all of it.
    pub depth: u32,
    /// What the clone authenticates with, when the forge gives one: handed
    /// to git in its environment only (never a URL, a config file or an
    /// argument).
    pub credential: Option<canopy_protocol::sidecar::GitCredential>,
}

/// What a sandbox is for.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The session it runs.
    pub session_id: String,
    /// The feature the session belongs to.
    pub feature_id: String,
    /// The repository to clone into the workspace; `None` (or an
    /// unreachable one) gives an empty repository.
    pub repo: Option<RepoSpec>,
    /// What the sandbox's sidecar needs to reach the server.
    pub sidecar: SidecarSpec,
}

/// How a sandbox's sidecar reaches the server: in its environment only,
/// never in a document, an image or a log.
#[derive(Clone)]
pub struct SidecarSpec {
    /// The server's base URL as seen from inside the sandbox.
    pub server_url: String,
    /// The sandbox token (role `agent`, this feature and session only).
    pub token: String,
    /// The feature document's URL (`automerge:…`).
    pub feature_doc: String,
}

impl std::fmt::Debug for SidecarSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarSpec")
            .field("server_url", &self.server_url)
            .field("feature_doc", &self.feature_doc)
            .finish_non_exhaustive()
    }
}

/// A running sandbox: where its OpenCode and its sidecar listen and how to
/// reach them.
#[derive(Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The session it runs.
    pub session_id: String,
    /// The feature the session belongs to.
    pub feature_id: String,
    /// OpenCode's base URL (loopback).
    pub base_url: String,
    /// OpenCode's per-sandbox password (Basic auth, user `opencode`).
    pub password: String,
    /// The sidecar's control API (`http://127.0.0.1:port`).
    pub control_url: String,
    /// Its bearer secret.
    pub control_secret: String,
    /// The workspace directory (a git repository).
    pub workspace: PathBuf,
    /// The backend's name (`local`, `docker`), as the document shows it.
    pub backend: String,
    /// The branch checked out in the workspace, if any.
    pub branch: Option<String>,
    /// Why the workspace is an empty repository although a repository was
    /// asked for (the clone failed), for the session to show.
    pub clone_error: Option<String>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("session_id", &self.session_id)
            .field("feature_id", &self.feature_id)
            .field("base_url", &self.base_url)
            .field("control_url", &self.control_url)
            .field("workspace", &self.workspace)
            .field("backend", &self.backend)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

/// Sandbox errors.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The filesystem failed.
    #[error("sandbox I/O: {0}")]
    Io(String),
    /// The sandbox did not start.
    #[error("sandbox did not start: {0}")]
    Start(String),
    /// The backend's daemon (Docker) does not answer.
    #[error("{0}")]
    Unavailable(String),
}

/// Runs sandboxes.
pub trait SandboxBackend: Send + Sync + std::fmt::Debug {
    /// The backend's name (`local`, `docker`).
    fn name(&self) -> &'static str;
    /// Start the sandbox of `spec.session_id` (reusing its workspace if it
    /// has one); returns once its OpenCode answers its health check. A
    /// sandbox already running for the session is stopped first.
    fn start(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<Sandbox, SandboxError>>;
    /// Stop it; stopping a sandbox that is not running is not an error. The
    /// workspace is kept.
    fn stop(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>>;
    /// Whether the sandbox's processes are still there (cheap; no health
    /// request).
    fn alive(&self, session_id: &str) -> BoxFuture<'_, bool>;
    /// At server start: find sandboxes left by a previous server process;
    /// adopt those that answer their health check (returned) and stop the
    /// rest.
    fn reconcile(&self) -> BoxFuture<'_, Result<Vec<Sandbox>, SandboxError>>;
    /// Stop the sandbox and delete its workspace.
    fn remove(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>>;
    /// Stop every sandbox this backend runs (server shutdown).
    fn stop_all(&self) -> BoxFuture<'_, ()>;
    /// The session's sandbox has been idle for long: free what it holds,
    /// keeping what a later [`SandboxBackend::start`] needs to continue
    /// where it stopped. Stopping is enough where the workspace costs
    /// nothing while stopped (local processes); a container is snapshotted
    /// first.
    fn hibernate(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        self.stop(session_id)
    }
    /// The last `lines` lines of the sandbox's own output (the sidecar's and
    /// OpenCode's), for people debugging a session.
    fn logs(&self, session_id: &str, lines: usize) -> BoxFuture<'_, Result<String, SandboxError>>;
    /// Every session this backend holds anything for (running or stopped
    /// sandboxes, workspaces, snapshots), as `(feature_id, session_id)`, so
    /// the server can remove what belongs to sessions that no longer exist.
    fn sessions(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(async { Vec::new() })
    }
    /// Whether a sandbox for a session that has none can start at once
    /// (a warm one is waiting), for the status the session shows.
    fn has_warm(&self) -> bool {
        false
    }
    /// Whether the session's workspace is made already (a start reuses
    /// it rather than cloning), for the status the session shows.
    fn has_workspace(&self, _session_id: &str) -> bool {
        false
    }
}
