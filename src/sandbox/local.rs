//! The embedded default sandbox backend: each session's OpenCode runs as a
//! local process with its own workspace and home directories. It isolates
//! nothing (the agent runs as the server's user); it is for one trusted
//! person on a laptop, and the Docker backend is for everyone else.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use futures::future::BoxFuture;

use super::{
    Sandbox, SandboxBackend, SandboxError, SandboxSpec,
    opencode_config::{self, ModelConfig},
};
use crate::opencode::OpenCodeClient;

/// How long a starting OpenCode may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Local-process sandboxes under one directory.
#[derive(Debug)]
pub struct LocalProcesses {
    opencode: PathBuf,
    root: PathBuf,
    model: ModelConfig,
    running: Mutex<HashMap<String, tokio::process::Child>>,
}

impl LocalProcesses {
    /// Sandboxes under `root`, running the `opencode` binary at `opencode`
    /// against `model`.
    pub fn new(opencode: PathBuf, root: PathBuf, model: ModelConfig) -> Self {
        LocalProcesses {
            opencode,
            root,
            model,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn session_dir(&self, session_id: &str) -> Result<PathBuf, SandboxError> {
        // Session ids are ours (`ses_` + base32), but a path must never be
        // built from anything else.
        if !canopy_protocol::ids::is_valid_id(canopy_protocol::ids::SESSION_PREFIX, session_id) {
            return Err(SandboxError::Invalid(format!(
                "not a session id: {session_id:?}"
            )));
        }
        Ok(self.root.join(session_id))
    }

    async fn launch(&self, spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        let dir = self.session_dir(&spec.session_id)?;
        let workspace = dir.join("workspace");
        let home = dir.join("home");
        std::fs::create_dir_all(&workspace).map_err(|e| SandboxError::Io(e.to_string()))?;
        std::fs::create_dir_all(&home).map_err(|e| SandboxError::Io(e.to_string()))?;
        if !workspace.join(".git").exists() {
            git_init(&workspace).await?;
        }
        let port = free_port()?;
        let password = format!("{:032x}", rand::random::<u128>());
        let log = std::fs::File::create(dir.join("opencode.log"))
            .map_err(|e| SandboxError::Io(e.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| SandboxError::Io(e.to_string()))?;
        let mut command = tokio::process::Command::new(&self.opencode);
        command
            .args([
                "serve",
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(&workspace)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env(
                "OPENCODE_CONFIG_CONTENT",
                opencode_config::opencode_config(&self.model).to_string(),
            )
            .env("OPENCODE_SERVER_PASSWORD", &password)
            .envs(opencode_config::QUIET_ENV)
            .stdin(std::process::Stdio::null())
            // Files, not pipes nobody reads: a full pipe would stall it.
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            SandboxError::Start(format!("cannot run {}: {e}", self.opencode.display()))
        })?;
        let base_url = format!("http://127.0.0.1:{port}");
        let client = OpenCodeClient::new(&base_url, &password);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.session_id.clone(), child);
        let up = tokio::time::timeout(START_TIMEOUT, async {
            while !client.healthy(Duration::from_secs(2)).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if up.is_err() {
            let _ = self.halt(&spec.session_id).await;
            let log = std::fs::read_to_string(dir.join("opencode.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
            return Err(SandboxError::Start(format!(
                "OpenCode did not become healthy within {START_TIMEOUT:?}; its log ends:\n{tail}"
            )));
        }
        tracing::info!(session_id = %spec.session_id, %base_url, "local sandbox ready");
        Ok(Sandbox {
            session_id: spec.session_id,
            base_url,
            password,
            workspace,
        })
    }

    async fn halt(&self, session_id: &str) -> Result<(), SandboxError> {
        let child = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session_id);
        if let Some(mut child) = child {
            let _ = child.start_kill();
            let _ = child.wait().await;
            tracing::info!(session_id, "local sandbox stopped");
        }
        Ok(())
    }
}

impl SandboxBackend for LocalProcesses {
    fn start(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(self.launch(spec))
    }

    fn stop(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move { self.halt(&session_id).await })
    }
}

async fn git_init(workspace: &Path) -> Result<(), SandboxError> {
    let status = tokio::process::Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .current_dir(workspace)
        .status()
        .await
        .map_err(|e| SandboxError::Start(format!("cannot run git: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(SandboxError::Start(format!(
            "git init failed in {}",
            workspace.display()
        )))
    }
}

fn free_port() -> Result<u16, SandboxError> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| SandboxError::Io(e.to_string()))?;
    Ok(l.local_addr()
        .map_err(|e| SandboxError::Io(e.to_string()))?
        .port())
}
