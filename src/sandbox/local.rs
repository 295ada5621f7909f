//! The embedded default sandbox backend: each session's sidecar (which
//! runs its OpenCode) is a local process with its own workspace and home
//! directories. It isolates
//! nothing (the agent runs as the server's user); it is for one trusted
//! person on a laptop, and the Docker backend is for everyone else.
//!
//! Layout under the backend's root, per session:
//!
//! ```text
//! <root>/<session_id>/workspace/      the git repository the agent works in
//! <root>/<session_id>/home/           HOME and XDG dirs of its OpenCode
//! <root>/<session_id>/sidecar/        the sidecar's replica, the agent's
//!                                     context file, OpenCode's log
//! <root>/<session_id>/sidecar.log     the sidecar's output (.1: the run before)
//! <root>/<session_id>/workspace.json  how the workspace was made (clone error)
//! <root>/<session_id>/sandbox.json    the running process, for adoption
//! ```
//!
//! A sandbox outlives the server process: the sidecar runs in its own
//! process group, is not killed when its `Child` is dropped, and `sandbox.json`
//! tells the next server where it is ([`SandboxBackend::reconcile`]). Only
//! [`SandboxBackend::stop`], [`SandboxBackend::remove`] and
//! [`SandboxBackend::stop_all`] end sandboxes, so whoever drops a backend
//! without them (a test, say) leaves its sidecars running.
//!
//! Stopping sends SIGTERM to the sidecar (which stops OpenCode and flushes
//! its replica) and to every process that carries
//! the session's marker in its environment: OpenCode starts the agent's
//! shell commands detached (a session of their own, reparented to init once
//! the shell exits), so neither the group nor the process tree finds a dev
//! server the agent left running. A command that clears its environment
//! escapes; this backend isolates nothing, the Docker one does.
//!
//! Processes are found and checked through `/proc`, so this backend is
//! Linux-only, like the servers it is meant for (a Mac runs the server in
//! a Linux VM or container).

use std::{
    collections::HashMap,
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use super::{
    RepoSpec, Sandbox, SandboxBackend, SandboxError, SandboxSpec,
    opencode_config::{self, ModelConfig},
};
use crate::opencode::OpenCodeClient;

/// How long a starting sandbox may take until OpenCode and the sidecar
/// answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopping sandbox gets between SIGTERM and SIGKILL (the
/// sidecar stops OpenCode, up to 5 s, and flushes its replica).
const STOP_GRACE: Duration = Duration::from_secs(8);
/// How long a clone may take before it is killed and the workspace falls
/// back to an empty repository (a hung remote must not hang the session).
const CLONE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `reconcile` waits for a left-over sandbox to answer.
const ADOPT_HEALTH_TIMEOUT: Duration = Duration::from_secs(15);
/// The record of a running sandbox, next to its workspace.
const RECORD: &str = "sandbox.json";
/// How the workspace was made, kept across restarts.
const WORKSPACE_META: &str = "workspace.json";
/// The environment variable (value: the session id) that marks every
/// process of a sandbox, so stopping it finds them all (see [`terminate`]).
const MARKER: &str = "CANOPY_SANDBOX_SESSION";
/// The commit identity of the agent in the workspace.
const AGENT_NAME: &str = "Canopy agent";
const AGENT_EMAIL: &str = "agent@canopy.invalid";

/// Local-process sandboxes under one directory.
#[derive(Debug)]
pub struct LocalProcesses {
    opencode: PathBuf,
    sidecar: PathBuf,
    root: PathBuf,
    model: ModelConfig,
    /// Sandboxes this backend runs, spawned or adopted, by session id. A
    /// std mutex: it is only held for map operations, never across
    /// `.await`.
    running: Mutex<HashMap<String, Running>>,
}

/// A sandbox this backend runs.
#[derive(Debug)]
struct Running {
    record: Record,
    /// Our child, if we spawned it; `None` for one adopted from a previous
    /// server process. It is never polled before the sandbox is stopped, so
    /// an exited sidecar stays a zombie until then: its pid (and so its
    /// process group id) cannot be reused while we may still signal it.
    child: Option<tokio::process::Child>,
}

/// `sandbox.json`: everything a later server needs to find, check, reach
/// and stop a running sandbox. Mode 0600: it holds the passwords (not the
/// sandbox token, which only the sidecar's environment has).
#[derive(Clone, Serialize, Deserialize)]
struct Record {
    /// The sidecar's.
    pid: u32,
    /// OpenCode's.
    port: u16,
    password: String,
    /// Absent in records of servers before the sidecar: those sandboxes are
    /// not adopted (see `is_our_sidecar`).
    #[serde(default)]
    sidecar_port: u16,
    #[serde(default)]
    control_secret: String,
    feature_id: String,
    session_id: String,
    workspace: PathBuf,
    branch: Option<String>,
    clone_error: Option<String>,
    /// Unix time in milliseconds.
    started_at: u64,
}

/// Not derived: the password must not end up in logs.
impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .field("session_id", &self.session_id)
            .field("feature_id", &self.feature_id)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

impl Record {
    fn sandbox(&self) -> Sandbox {
        Sandbox {
            session_id: self.session_id.clone(),
            feature_id: self.feature_id.clone(),
            base_url: self.base_url(),
            password: self.password.clone(),
            control_url: format!("http://127.0.0.1:{}", self.sidecar_port),
            control_secret: self.control_secret.clone(),
            workspace: self.workspace.clone(),
            backend: "local".into(),
            branch: self.branch.clone(),
            clone_error: self.clone_error.clone(),
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The pid as nix wants it; `None` for values that would make `kill`
    /// mean something else (0: our own group, 1: init, negative: a group)
    /// or that are our own process.
    fn nix_pid(&self) -> Option<Pid> {
        let raw = i32::try_from(self.pid).ok()?;
        (raw > 1 && self.pid != std::process::id()).then(|| Pid::from_raw(raw))
    }
}

/// `workspace.json`: survives restarts, so a workspace that fell back to an
/// empty repository keeps saying why.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkspaceMeta {
    clone_error: Option<String>,
}

impl LocalProcesses {
    /// Sandboxes under `root`: the `sidecar` binary, running the
    /// `opencode` binary against `model`.
    pub fn new(opencode: PathBuf, sidecar: PathBuf, root: PathBuf, model: ModelConfig) -> Self {
        LocalProcesses {
            opencode,
            sidecar,
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

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn launch(&self, spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        let dir = self.session_dir(&spec.session_id)?;
        // Restart: whatever runs for this session (ours, adopted, or left
        // by a server that never reconciled) goes first; two OpenCodes on
        // one workspace would fight over it.
        self.halt(&spec.session_id).await?;
        let workspace = dir.join("workspace");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(io)?;
        let clone_error =
            prepare_workspace(&spec.session_id, &dir, &home, spec.repo.as_ref()).await?;
        // OpenCode's agent may commit, and its HOME has no global config.
        for (key, value) in [("user.name", AGENT_NAME), ("user.email", AGENT_EMAIL)] {
            run_git(&home, &workspace, &["config", key, value])
                .await
                .map_err(|e| SandboxError::Start(format!("git config {key}: {e}")))?;
        }
        let branch = current_branch(&home, &workspace).await;

        let port = free_port()?;
        let sidecar_port = free_port()?;
        let password = secret();
        let control_secret = secret();
        let state_dir = dir.join("sidecar");
        std::fs::create_dir_all(&state_dir).map_err(io)?;
        let log_path = dir.join("sidecar.log");
        // Keep the previous run's log: after a crash, it says why.
        let _ = std::fs::rename(&log_path, dir.join("sidecar.log.1"));
        let log = std::fs::File::create(&log_path).map_err(io)?;
        let log_err = log.try_clone().map_err(io)?;
        let mut command = tokio::process::Command::new(&self.sidecar);
        command
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
            .env(MARKER, &spec.session_id)
            .envs(opencode_config::QUIET_ENV)
            // The provider's key, when a real provider is configured.
            .envs(self.model.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CANOPY_SERVER_URL", &spec.sidecar.server_url)
            .env("CANOPY_SANDBOX_TOKEN", &spec.sidecar.token)
            .env("CANOPY_FEATURE_ID", &spec.feature_id)
            .env("CANOPY_SESSION_ID", &spec.session_id)
            .env("CANOPY_FEATURE_DOC", &spec.sidecar.feature_doc)
            .env("CANOPY_WORKSPACE", &workspace)
            .env("CANOPY_STATE_DIR", &state_dir)
            .env("CANOPY_OPENCODE_BIN", &self.opencode)
            .env("CANOPY_OPENCODE_PORT", port.to_string())
            .env("CANOPY_OPENCODE_PASSWORD", &password)
            .env("CANOPY_SIDECAR_LISTEN", format!("127.0.0.1:{sidecar_port}"))
            .env("CANOPY_SIDECAR_SECRET", &control_secret)
            .env(
                "CANOPY_LOG",
                std::env::var("CANOPY_SIDECAR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            // Files, not pipes nobody reads: a full pipe would stall it.
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C meant for the server does not
            // reach it. It runs OpenCode in a group of its own; the agent's
            // commands run in sessions of their own; the marker finds those.
            .process_group(0)
            // It must outlive this server process (see the module doc).
            .kill_on_drop(false);
        let child = command.spawn().map_err(|e| {
            SandboxError::Start(format!("cannot run {}: {e}", self.sidecar.display()))
        })?;
        let Some(pid) = child.id() else {
            return Err(SandboxError::Start("the sidecar exited at once".into()));
        };
        let record = Record {
            pid,
            port,
            password,
            sidecar_port,
            control_secret,
            feature_id: spec.feature_id,
            session_id: spec.session_id.clone(),
            workspace,
            branch,
            clone_error,
            started_at: now_ms(),
        };
        let written = write_record(&dir, &record);
        let displaced = self.running().insert(
            spec.session_id.clone(),
            Running {
                record: record.clone(),
                child: Some(child),
            },
        );
        if let Some(old) = displaced {
            // Two starts for one session raced; the later one wins.
            tracing::warn!(session_id = %spec.session_id, "two starts raced; stopping the older");
            // Not a sweep: the new sandbox carries the same marker.
            terminate(&spec.session_id, Some(old), false).await;
        }
        if let Err(e) = written {
            // Unrecorded, it could not be adopted or stopped by the next
            // server: better not to run at all.
            self.halt(&spec.session_id).await?;
            return Err(e);
        }

        let up = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                if answers(&record).await {
                    return true;
                }
                if !self.alive_now(&spec.session_id) {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if up != Ok(true) {
            self.halt(&spec.session_id).await?;
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let why = if up.is_err() {
                format!("the sandbox did not become healthy within {START_TIMEOUT:?}")
            } else {
                "the sidecar exited while starting".to_owned()
            };
            let oc_log =
                std::fs::read_to_string(state_dir.join("opencode.log")).unwrap_or_default();
            return Err(SandboxError::Start(format!(
                "{why}; the sidecar's log ends:\n{}\nOpenCode's log ends:\n{}",
                tail(&log, 20, 4000),
                tail(&oc_log, 10, 2000)
            )));
        }
        tracing::info!(
            session_id = %spec.session_id,
            base_url = %record.base_url(),
            pid,
            branch = ?record.branch,
            "local sandbox ready"
        );
        Ok(record.sandbox())
    }

    /// Stop the session's sandbox: the one we track, or else the one its
    /// record names (left by an earlier server that was not reconciled).
    /// Not running is fine.
    async fn halt(&self, session_id: &str) -> Result<(), SandboxError> {
        let dir = self.session_dir(session_id)?;
        let tracked = self.running().remove(session_id);
        let target = match tracked {
            Some(running) => Some(running),
            None => match read_record(&dir) {
                Ok(Some(record)) if record.session_id == session_id => Some(Running {
                    record,
                    child: None,
                }),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(session_id, error = %e, "malformed sandbox record");
                    None
                }
            },
        };
        terminate(session_id, target, true).await;
        match std::fs::remove_file(dir.join(RECORD)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    /// Whether the session's sandbox process is there (no await, no lock
    /// held while reading `/proc`).
    fn alive_now(&self, session_id: &str) -> bool {
        let which = self
            .running()
            .get(session_id)
            .map(|r| (r.record.clone(), r.child.is_some()));
        match which {
            Some((record, true)) => record.nix_pid().is_some_and(process_running),
            Some((record, false)) => is_our_sidecar(&record),
            None => false,
        }
    }

    /// Adopt or clean up the sandbox recorded in `dir`.
    async fn reconcile_one(&self, session_id: String, dir: PathBuf) -> Option<Sandbox> {
        if let Some(r) = self.running().get(&session_id) {
            // Already ours (reconciled twice, or started by us).
            return Some(r.record.sandbox());
        }
        let record_path = dir.join(RECORD);
        let record = match read_record(&dir) {
            Ok(Some(record)) if record.session_id == session_id => record,
            Ok(None) => return None,
            Ok(Some(_)) | Err(_) => {
                tracing::warn!(%session_id, path = %record_path.display(), "deleting a malformed sandbox record");
                let _ = std::fs::remove_file(&record_path);
                // Whatever still runs for the session can no longer be
                // reached: end it.
                terminate(&session_id, None, true).await;
                return None;
            }
        };
        let ours = is_our_sidecar(&record);
        if ours
            && tokio::time::timeout(ADOPT_HEALTH_TIMEOUT, async {
                // A busy machine may miss one check; a dead sandbox misses all.
                while !answers(&record).await {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
            .await
            .is_ok()
        {
            let sandbox = record.sandbox();
            let displaced = self.running().insert(
                session_id.clone(),
                Running {
                    record,
                    child: None,
                },
            );
            if let Some(old) = displaced {
                // A start raced with reconcile; keep the adopted one.
                terminate(&session_id, Some(old), false).await;
            }
            tracing::info!(%session_id, base_url = %sandbox.base_url, "adopted a running local sandbox");
            return Some(sandbox);
        }
        if ours {
            tracing::info!(%session_id, pid = record.pid, "stopping a left-over sandbox that does not answer");
        } else {
            tracing::info!(%session_id, pid = record.pid, "forgetting a sandbox whose process is gone");
        }
        // Also what its agent left running, if the sidecar itself is gone.
        terminate(
            &session_id,
            Some(Running {
                record,
                child: None,
            }),
            true,
        )
        .await;
        let _ = std::fs::remove_file(&record_path);
        None
    }
}

impl SandboxBackend for LocalProcesses {
    fn name(&self) -> &'static str {
        "local"
    }

    fn has_workspace(&self, session_id: &str) -> bool {
        self.session_dir(session_id)
            .is_ok_and(|d| d.join("workspace/.git").exists())
    }

    fn start(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(self.launch(spec))
    }

    fn stop(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move { self.halt(&session_id).await })
    }

    fn alive(&self, session_id: &str) -> BoxFuture<'_, bool> {
        let alive = self.alive_now(session_id);
        Box::pin(async move { alive })
    }

    fn reconcile(&self) -> BoxFuture<'_, Result<Vec<Sandbox>, SandboxError>> {
        Box::pin(async move {
            let entries = match std::fs::read_dir(&self.root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io(e)),
            };
            let mut found = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io)?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                // Only our own directories; never build a path from others.
                let Ok(dir) = self.session_dir(&name) else {
                    continue;
                };
                if dir.join(RECORD).exists() {
                    found.push((name, dir));
                }
            }
            // Health checks concurrently: a server restart should not wait
            // for each dead sandbox in turn.
            let adopted = futures::future::join_all(
                found
                    .into_iter()
                    .map(|(session_id, dir)| self.reconcile_one(session_id, dir)),
            )
            .await;
            Ok(adopted.into_iter().flatten().collect())
        })
    }

    fn remove(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move {
            let dir = self.session_dir(&session_id)?;
            self.halt(&session_id).await?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            tracing::info!(%session_id, "local sandbox removed");
            Ok(())
        })
    }

    fn logs(&self, session_id: &str, lines: usize) -> BoxFuture<'_, Result<String, SandboxError>> {
        let dir = self.session_dir(session_id);
        let session_id = session_id.to_owned();
        Box::pin(async move {
            let dir = dir?;
            if !dir.exists() {
                return Err(SandboxError::Invalid(format!(
                    "session {session_id} has no sandbox"
                )));
            }
            let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
            let sidecar = read(dir.join("sidecar.log"));
            let opencode = read(dir.join("sidecar").join("opencode.log"));
            Ok(format!(
                "== sidecar ==\n{}\n== opencode ==\n{}\n",
                tail(&sidecar, lines, usize::MAX),
                tail(&opencode, lines, usize::MAX)
            ))
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let Ok(entries) = std::fs::read_dir(&self.root) else {
                return Vec::new();
            };
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|name| self.session_dir(name).is_ok())
                .filter_map(|session_id| {
                    let dir = self.root.join(&session_id);
                    // Only sessions whose feature we know (a record, now or
                    // from before): never guess which feature a directory
                    // belongs to.
                    let feature_id = read_record(&dir).ok().flatten()?.feature_id;
                    Some((feature_id, session_id))
                })
                .collect()
        })
    }

    fn stop_all(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let sessions: Vec<String> = self.running().keys().cloned().collect();
            let results = futures::future::join_all(sessions.iter().map(|s| self.halt(s))).await;
            for (session_id, result) in sessions.iter().zip(results) {
                if let Err(e) = result {
                    tracing::warn!(%session_id, error = %e, "stopping a local sandbox failed");
                }
            }
        })
    }
}

/// End a sandbox: SIGTERM, up to [`STOP_GRACE`], then SIGKILL. Sent to
/// the sidecar's process group (ours always lead one) and, with `sweep`, to
/// every process carrying the session's [`MARKER`]: OpenCode starts the
/// agent's commands in sessions of their own (`detached`), so a dev server
/// the agent left running is in neither its group nor, once the shell that
/// started it has exited, its descendants. `running` is `None` to sweep
/// only (the sidecar is gone, what it started may not be).
async fn terminate(session_id: &str, running: Option<Running>, sweep: bool) {
    let (record, child) = match running {
        Some(Running { record, child }) => (Some(record), child),
        None => (None, None),
    };
    let owned = child.is_some();
    // A child of ours cannot have been replaced (it is not reaped yet); an
    // adopted pid may by now belong to anyone, so it is checked to still be
    // that sidecar before every signal.
    let leader = record.as_ref().and_then(Record::nix_pid);
    let leader_there = || match (&record, leader) {
        (Some(record), Some(pid)) => {
            if owned {
                process_running(pid)
            } else {
                is_our_sidecar(record)
            }
        }
        _ => false,
    };
    let group = leader.is_some_and(|pid| {
        owned || (leader_there() && proc_stat(pid).is_some_and(|s| s.pgrp == pid.as_raw()))
    });
    let marker = format!("{MARKER}={session_id}");
    let others = || {
        if sweep {
            marked_processes(marker.as_bytes())
        } else {
            Vec::new()
        }
    };
    let signal_all = |signal: Signal| {
        if let Some(pid) = leader
            && leader_there()
        {
            send(pid, group, signal);
        }
        for pid in others() {
            send(pid, false, signal);
        }
    };
    let gone_within = async |limit: Duration| {
        let deadline = Instant::now() + limit;
        loop {
            let done = !leader_there() && others().is_empty();
            if done || Instant::now() >= deadline {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    signal_all(Signal::SIGTERM);
    if !gone_within(STOP_GRACE).await {
        tracing::warn!(
            session_id,
            "sandbox processes ignored SIGTERM; killing them"
        );
        signal_all(Signal::SIGKILL);
        if !gone_within(Duration::from_secs(5)).await {
            tracing::warn!(session_id, "sandbox processes survived SIGKILL");
        }
    }
    // Members of its group that outlived it (or it died earlier on its
    // own). Safe while the leader's pid is ours: our child is unreaped, and
    // an adopted leader that is gone leaves its pid free for reuse only if
    // the group is empty too (Linux keeps a pid number allocated while any
    // process uses it as a group id).
    if let Some(pid) = leader
        && (owned || (group && proc_stat(pid).is_none_or(|s| s.state == 'Z')))
    {
        let _ = killpg(pid, Signal::SIGKILL);
    }
    if let Some(mut child) = child {
        let _ = child.wait().await;
    }
    if let Some(record) = record {
        tracing::info!(session_id, pid = record.pid, "local sandbox stopped");
    }
}

/// Running processes whose environment holds `marker` (`NAME=value`).
/// `/proc/<pid>/environ` is the environment a process was started with,
/// inherited from its parent; only our own user's processes are readable.
fn marked_processes(marker: &[u8]) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid > 1 && *pid != me)
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker))
                && process_running(*pid)
        })
        .collect()
}

fn send(pid: Pid, group: bool, signal: Signal) {
    let result = if group {
        killpg(pid, signal)
    } else {
        kill(pid, signal)
    };
    if let Err(e) = result
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid = pid.as_raw(), %signal, error = %e, "cannot signal a sandbox process");
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    state: char,
    pgrp: i32,
}

fn proc_stat(pid: Pid) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parens.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, pgrp })
}

/// The process exists and has not exited (a zombie has).
fn process_running(pid: Pid) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The recorded pid is still that sandbox's sidecar: running, a
/// `canopy-sidecar` command line, the session's marker. Pids get reused.
fn is_our_sidecar(record: &Record) -> bool {
    let Some(pid) = record.nix_pid() else {
        return false;
    };
    if !process_running(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = format!("{MARKER}={}", record.session_id);
    cmdline
        .split(|b| *b == 0)
        .next()
        .is_some_and(|arg0| arg0.ends_with(b"canopy-sidecar"))
        && std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
}

/// Whether the sandbox answers: OpenCode's health check and the sidecar's
/// status.
async fn answers(record: &Record) -> bool {
    let opencode = OpenCodeClient::new(&record.base_url(), &record.password);
    let control = format!("http://127.0.0.1:{}", record.sidecar_port);
    let (healthy, status) = tokio::join!(
        // Short: a request that reaches OpenCode while it starts is never
        // answered (see the sidecar's supervisor); callers ask again.
        opencode.healthy(Duration::from_millis(500)),
        crate::sandbox::sidecar_status(&control, &record.control_secret),
    );
    healthy && status.is_ok()
}

pub(super) fn secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Make `<dir>/workspace` a git repository if it is not one yet; returns
/// why it is an empty one although a repository was asked for.
async fn prepare_workspace(
    session_id: &str,
    dir: &Path,
    home: &Path,
    repo: Option<&RepoSpec>,
) -> Result<Option<String>, SandboxError> {
    let workspace = dir.join("workspace");
    if workspace.join(".git").exists() {
        // Reused as it is: the agent's work (and its uncommitted changes)
        // must survive restarts; no re-clone.
        let meta: WorkspaceMeta = std::fs::read(dir.join(WORKSPACE_META))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        return Ok(meta.clone_error);
    }
    // No `.git`: never made, or an interrupted start. Start over.
    remove_if_there(&workspace)?;
    let mut clone_error = None;
    if let Some(repo) = repo {
        // Clone next to it and rename: a clone interrupted by a crash
        // never looks like a finished workspace.
        let partial = dir.join("workspace.partial");
        remove_if_there(&partial)?;
        match clone(repo, &partial, home).await {
            Ok(()) => {
                if let Some(work) = &repo.work_branch
                    && let Err(e) = work_on(home, &partial, repo, work).await
                {
                    tracing::warn!(session_id, branch = %work, error = %e, "cannot check out the session branch");
                    clone_error = Some(format!("cannot check out the session branch {work}: {e}"));
                }
                std::fs::rename(&partial, &workspace).map_err(io)?;
            }
            Err(reason) => {
                tracing::warn!(session_id, %reason, "clone failed; the workspace is an empty repository");
                remove_if_there(&partial)?;
                clone_error = Some(reason);
            }
        }
    }
    if !workspace.exists() {
        std::fs::create_dir_all(&workspace).map_err(io)?;
        run_git(home, &workspace, &["init", "-q", "-b", "main"])
            .await
            .map_err(|e| SandboxError::Start(format!("git init: {e}")))?;
    }
    let meta = serde_json::to_vec(&WorkspaceMeta {
        clone_error: clone_error.clone(),
    })
    .map_err(|e| SandboxError::Io(e.to_string()))?;
    std::fs::write(dir.join(WORKSPACE_META), meta).map_err(io)?;
    Ok(clone_error)
}

/// `git clone` the repository into `target`; the error is for people (no
/// credentials from the URL).
async fn clone(repo: &RepoSpec, target: &Path, home: &Path) -> Result<(), String> {
    let what = format!(
        "cannot clone {} (branch {})",
        redact_userinfo(&repo.url),
        repo.branch
    );
    let mut command = git_command(home);
    command
        // No credential helper, whatever a config might say.
        .args(["-c", "credential.helper=", "clone", "--quiet", "--branch"])
        .arg(&repo.branch);
    if repo.depth > 0 {
        command.arg(format!("--depth={}", repo.depth));
    }
    authenticate(&mut command, repo.credential.as_ref());
    command
        .arg("--")
        .arg(&repo.url)
        .arg(target)
        .current_dir(home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own group, so a timeout also ends its helpers
        // (git-remote-https, ssh).
        .process_group(0);
    let mut child = command.spawn().map_err(|e| format!("{what}: git: {e}"))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    let mut stderr = child.stderr.take();
    let read_stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut buf).await;
        }
        buf
    });
    let status = match tokio::time::timeout(CLONE_TIMEOUT, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("{what}: git: {e}"))?,
        Err(_) => {
            // Not reaped yet, so the group id is still git's.
            if let Some(pid) = pid {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            read_stderr.abort();
            return Err(format!("{what}: timed out after {CLONE_TIMEOUT:?}"));
        }
    };
    if status.success() {
        return Ok(());
    }
    let stderr = read_stderr.await.unwrap_or_default();
    let stderr = redact_userinfo(&tail(&String::from_utf8_lossy(&stderr), 4, 600));
    Err(if stderr.is_empty() {
        format!("{what}: git exited with {status}")
    } else {
        format!("{what}: {stderr}")
    })
}

/// `git` with nothing of the server's environment: no credentials, askpass
/// helpers or agent sockets; never prompting.
fn git_command(home: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Run a quick git command in `cwd`; its stdout, or its stderr as the error.
async fn run_git(home: &Path, cwd: &Path, args: &[&str]) -> Result<String, String> {
    let out = git_command(home)
        .args(args)
        .current_dir(cwd)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(tail(&String::from_utf8_lossy(&out.stderr), 4, 600))
    }
}

/// Hand `credential` to git in its environment only (see
/// [`canopy_protocol::git::credential_env`]).
fn authenticate(
    command: &mut tokio::process::Command,
    credential: Option<&canopy_protocol::sidecar::GitCredential>,
) {
    if let Some(c) = credential {
        command.envs(canopy_protocol::git::credential_env(
            &c.username,
            &c.password,
        ));
    }
}

/// Check out the session's own branch in `workspace`: the remote's if it
/// has one (the session pushed before its workspace was lost; a shallow
/// clone fetches it first), else a new one from what was cloned.
async fn work_on(
    home: &Path,
    workspace: &Path,
    repo: &RepoSpec,
    branch: &str,
) -> Result<(), String> {
    let remote = format!("refs/remotes/origin/{branch}");
    let mut fetch = git_command(home);
    fetch
        .args(["-c", "credential.helper=", "fetch", "--quiet"])
        .current_dir(workspace);
    if repo.depth > 0 {
        fetch.arg(format!("--depth={}", repo.depth));
    }
    authenticate(&mut fetch, repo.credential.as_ref());
    // Absent on the remote (the usual case: a new session) is no error.
    let _ = tokio::time::timeout(
        CLONE_TIMEOUT,
        fetch
            .args(["origin", &format!("+refs/heads/{branch}:{remote}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
    )
    .await;
    let mut args = vec!["checkout", "-q", "-B", branch];
    if run_git(home, workspace, &["rev-parse", "--verify", "-q", &remote])
        .await
        .is_ok()
    {
        args.push(&remote);
    }
    run_git(home, workspace, &args).await.map(|_| ())
}

/// The branch checked out in `workspace`. `symbolic-ref` first: it also
/// names the branch of a repository without commits, where `rev-parse`
/// fails.
async fn current_branch(home: &Path, workspace: &Path) -> Option<String> {
    let named = |b: String| (!b.is_empty() && b != "HEAD").then_some(b);
    if let Ok(b) = run_git(home, workspace, &["symbolic-ref", "--short", "-q", "HEAD"]).await
        && let Some(b) = named(b)
    {
        return Some(b);
    }
    run_git(home, workspace, &["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .ok()
        .and_then(named)
}

fn read_record(dir: &Path) -> Result<Option<Record>, String> {
    match std::fs::read(dir.join(RECORD)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Write `sandbox.json` atomically (a crash leaves the old one or the new
/// one, never half of one), readable by its owner only.
fn write_record(dir: &Path, record: &Record) -> Result<(), SandboxError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| SandboxError::Io(e.to_string()))?;
    let tmp = dir.join(format!("{RECORD}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(RECORD)).map_err(io)
}

fn remove_if_there(path: &Path) -> Result<(), SandboxError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// `scheme://user:pass@host/…` → `scheme://host/…`, wherever URLs occur in
/// `text` (git repeats the URL in its errors).
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, after) = rest.split_at(i + 3);
        out.push_str(head);
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        out.push_str(
            authority
                .rfind('@')
                .map_or(authority, |at| &authority[at + 1..]),
        );
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The last `lines` lines of `text`, at most `max` bytes of them.
pub(super) fn tail(text: &str, lines: usize, max: usize) -> String {
    let mut last: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .rev()
        .take(lines)
        .collect();
    last.reverse();
    let joined = last.join("\n");
    if joined.len() <= max {
        return joined;
    }
    let mut start = joined.len() - max;
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &joined[start..])
}

pub(super) fn free_port() -> Result<u16, SandboxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(l.local_addr().map_err(io)?.port())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn io(e: std::io::Error) -> SandboxError {
    SandboxError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_wherever_a_url_occurs() {
        assert_eq!(
            redact_userinfo("fatal: unable to access 'https://bob:s3cret@example.com/r.git/': 403"),
            "fatal: unable to access 'https://example.com/r.git/': 403"
        );
        assert_eq!(
            redact_userinfo("https://tok@h:8443 and http://h/x"),
            "https://h:8443 and http://h/x"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
        assert_eq!(
            redact_userinfo("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines_within_a_limit() {
        assert_eq!(tail("a\n\nb\nc\nd\n", 2, 100), "c\nd");
        assert_eq!(tail("abcdef", 1, 3), "…def");
        assert_eq!(tail("", 3, 10), "");
    }

    #[test]
    fn records_refuse_pids_that_mean_something_else() {
        let mut r = Record {
            pid: 0,
            port: 1,
            password: "p".into(),
            sidecar_port: 2,
            control_secret: "c".into(),
            feature_id: "f".into(),
            session_id: "s".into(),
            workspace: PathBuf::new(),
            branch: None,
            clone_error: None,
            started_at: 0,
        };
        for bad in [0, 1, std::process::id(), u32::MAX] {
            r.pid = bad;
            assert!(r.nix_pid().is_none(), "{bad}");
        }
        r.pid = 4242;
        assert_eq!(r.nix_pid(), Some(Pid::from_raw(4242)));
        let shown = format!("{r:?}");
        assert!(!shown.contains("password") && !shown.contains("control_secret"));
    }

    #[test]
    fn this_process_is_running_and_not_opencode() {
        let me = Pid::from_raw(i32::try_from(std::process::id()).unwrap_or(i32::MAX));
        assert!(process_running(me));
        assert!(proc_stat(me).is_some());
    }
}
