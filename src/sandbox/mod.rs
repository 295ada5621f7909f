//! Sandboxes: where a session's agent (OpenCode) runs, with its workspace.
//! Backends implement [`SandboxBackend`]; the embedded default runs local
//! processes ([`local`]), the Docker backend comes next.

pub mod local;
pub mod opencode_config;

use std::path::PathBuf;

use futures::future::BoxFuture;

/// What a sandbox is for.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The session it runs.
    pub session_id: String,
    /// The feature the session belongs to.
    pub feature_id: String,
}

/// A running sandbox: where its OpenCode listens and how to reach it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The session it runs.
    pub session_id: String,
    /// OpenCode's base URL (loopback).
    pub base_url: String,
    /// OpenCode's per-sandbox password (Basic auth, user `opencode`).
    pub password: String,
    /// The workspace directory (a git repository).
    pub workspace: PathBuf,
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
}

/// Runs sandboxes.
pub trait SandboxBackend: Send + Sync + std::fmt::Debug {
    /// Start (or restart) the sandbox of `spec.session_id`; returns once its
    /// OpenCode answers its health check.
    fn start(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<Sandbox, SandboxError>>;
    /// Stop it; stopping a sandbox that is not running is not an error.
    fn stop(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>>;
}
