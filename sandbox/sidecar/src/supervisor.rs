//! OpenCode's supervisor: starts `opencode serve` (on loopback unless told
//! otherwise) with its password, waits for `/global/health`, restarts it with back-off when it
//! dies, and stops it on shutdown.
//!
//! Every start gets a new instance id. The server records the instance a run
//! began under; when a heartbeat or the status endpoint names another one,
//! the run was lost with the process that ran it and the server fails the
//! entry instead of waiting for an answer that will never come.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Longest wait for a started OpenCode to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// First pause before a restart; doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that stayed up this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Consecutive failed starts after which the session is reported failed
/// (the supervisor keeps trying, slowly).
pub const FAILED_AFTER: u32 = 5;
/// Time OpenCode gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Variables of the sidecar's environment that OpenCode (and so the agent's
/// shell) must not see.
const PRIVATE_ENV: [&str; 5] = [
    "CANOPY_SANDBOX_TOKEN",
    "CANOPY_SIDECAR_SECRET",
    "CANOPY_OPENCODE_PASSWORD",
    "CANOPY_SIDECAR_LISTEN",
    // May carry the repository's credentials.
    "CANOPY_REPO_URL",
];

/// How to run OpenCode.
#[derive(Clone)]
pub struct OpenCodeSpec {
    /// The binary.
    pub bin: PathBuf,
    /// The address it listens on (`--hostname`).
    pub hostname: String,
    /// Its port.
    pub port: u16,
    /// `OPENCODE_SERVER_PASSWORD`.
    pub password: String,
    /// Working directory (the repository).
    pub workspace: PathBuf,
    /// `OPENCODE_CONFIG_CONTENT`.
    pub config: String,
    /// Where its output goes (appended).
    pub log: PathBuf,
    /// More environment (the git credential helper's).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for OpenCodeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCodeSpec")
            .field("bin", &self.bin)
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("workspace", &self.workspace)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// Where OpenCode is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Started, not answering yet.
    Starting,
    /// Answering its health check.
    Up,
    /// Exited; a restart is pending.
    Down,
    /// Could not be started [`FAILED_AFTER`] times in a row (still retrying).
    Failed,
    /// Stopped for good (shutdown).
    Stopped,
}

impl Phase {
    /// The name used in heartbeats.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Up => "up",
            Phase::Down => "down",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }
}

/// What the supervisor publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCodeState {
    /// Phase.
    pub phase: Phase,
    /// Id of the current (or last) process; new on every start.
    pub instance: String,
    /// Its pid while it runs.
    pub pid: Option<u32>,
    /// Restarts after the first start.
    pub restarts: u32,
    /// Why the last process ended (or could not start).
    pub last_exit: Option<String>,
}

impl OpenCodeState {
    /// Before the first start.
    pub fn initial() -> Self {
        OpenCodeState {
            phase: Phase::Starting,
            instance: String::new(),
            pid: None,
            restarts: 0,
            last_exit: None,
        }
    }
}

/// Run OpenCode until `shutdown`, publishing its state. Returns once it has
/// been stopped.
pub async fn supervise(
    spec: OpenCodeSpec,
    state: watch::Sender<OpenCodeState>,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    let mut starts: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let instance = format!("oc_{:016x}", rand::random::<u64>());
        starts += 1;
        let restarts = starts - 1;
        state.send_modify(|s| {
            s.phase = Phase::Starting;
            s.instance = instance.clone();
            s.pid = None;
            s.restarts = restarts;
        });
        let began = Instant::now();
        let outcome = run_once(&spec, &state, &shutdown).await;
        let reason = match outcome {
            RunOutcome::Shutdown => break,
            RunOutcome::Exited(reason) => {
                tracing::warn!(%reason, restarts, "OpenCode stopped; restarting it");
                if began.elapsed() >= STABLE_AFTER {
                    failures = 0;
                } else {
                    failures += 1;
                }
                reason
            }
            RunOutcome::NotStarted(reason) => {
                tracing::warn!(%reason, "OpenCode could not be started");
                failures += 1;
                reason
            }
        };
        let phase = if failures >= FAILED_AFTER {
            Phase::Failed
        } else {
            Phase::Down
        };
        state.send_modify(|s| {
            s.phase = phase;
            s.pid = None;
            s.last_exit = Some(reason);
        });
        let pause = FIRST_BACKOFF
            .saturating_mul(1u32 << failures.min(10))
            .min(MAX_BACKOFF);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    state.send_modify(|s| {
        s.phase = Phase::Stopped;
        s.pid = None;
    });
}

enum RunOutcome {
    Shutdown,
    Exited(String),
    NotStarted(String),
}

/// One OpenCode process, from spawn to exit (or to shutdown, which stops it).
async fn run_once(
    spec: &OpenCodeSpec,
    state: &watch::Sender<OpenCodeState>,
    shutdown: &CancellationToken,
) -> RunOutcome {
    let mut child = match spawn(spec) {
        Ok(child) => child,
        Err(e) => return RunOutcome::NotStarted(e),
    };
    let pid = child.id();
    state.send_modify(|s| s.pid = pid);
    let http = match reqwest::Client::builder().build() {
        Ok(http) => http,
        Err(e) => return RunOutcome::NotStarted(format!("HTTP client: {e}")),
    };
    let health = format!(
        "http://{}:{}/global/health",
        reachable_host(&spec.hostname),
        spec.port
    );
    let started = Instant::now();
    let deadline = started + START_TIMEOUT;
    // Starting: wait for health, or for it to exit.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop(&mut child, pid).await;
                return RunOutcome::Shutdown;
            }
            status = child.wait() => {
                return RunOutcome::NotStarted(format!(
                    "OpenCode exited while starting ({}); see {}",
                    describe(status), spec.log.display()
                ));
            }
            _ = tokio::time::sleep(HEALTH_EVERY) => {}
        }
        let ok = http
            .get(&health)
            .basic_auth("opencode", Some(&spec.password))
            .timeout(probe_timeout(started.elapsed()))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        if Instant::now() > deadline {
            stop(&mut child, pid).await;
            return RunOutcome::NotStarted(format!(
                "OpenCode did not answer its health check within {START_TIMEOUT:?}; see {}",
                spec.log.display()
            ));
        }
    }
    tracing::info!(port = spec.port, pid, "OpenCode is up");
    state.send_modify(|s| s.phase = Phase::Up);
    tokio::select! {
        _ = shutdown.cancelled() => {
            stop(&mut child, pid).await;
            RunOutcome::Shutdown
        }
        status = child.wait() => RunOutcome::Exited(format!("OpenCode exited ({})", describe(status))),
    }
}

/// Between health checks of a starting OpenCode.
const HEALTH_EVERY: Duration = Duration::from_millis(100);

/// How long one health check of a starting OpenCode may take. Short at
/// first: OpenCode 1.18.33 accepts connections a few hundred milliseconds
/// before it serves HTTP, and never answers a request that arrives in that
/// window, so a long timeout made every start wait for it (about 2 s). A
/// machine slow enough to need longer gets longer after a while.
fn probe_timeout(starting_for: Duration) -> Duration {
    if starting_for < Duration::from_secs(10) {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

fn spawn(spec: &OpenCodeSpec) -> Result<tokio::process::Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| format!("cannot open {}: {e}", spec.log.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(&spec.bin);
    command
        .args([
            "serve",
            "--hostname",
            &spec.hostname,
            "--port",
            &spec.port.to_string(),
        ])
        .current_dir(&spec.workspace)
        .env("OPENCODE_SERVER_PASSWORD", &spec.password)
        .env("OPENCODE_CONFIG_CONTENT", &spec.config)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own group: stopping it also stops the helpers it spawned.
        .process_group(0)
        .kill_on_drop(true);
    for var in PRIVATE_ENV {
        command.env_remove(var);
    }
    command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", spec.bin.display()))
}

/// Where this machine reaches a server listening on `hostname`: loopback
/// for the unspecified addresses (`0.0.0.0`, `::`), IPv6 in brackets.
pub fn reachable_host(hostname: &str) -> String {
    match hostname
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".into(),
        Ok(ip) if ip.is_unspecified() => "[::1]".into(),
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        Ok(ip) => ip.to_string(),
        Err(_) if hostname.is_empty() => "127.0.0.1".into(),
        Err(_) => hostname.to_owned(),
    }
}

/// SIGTERM to OpenCode's process group, SIGKILL after [`STOP_GRACE`].
async fn stop(child: &mut tokio::process::Child, pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        let _ = child.kill().await;
        return;
    };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever it left behind in its group.
    let _ = killpg(group, Signal::SIGKILL);
}

/// OpenCode's configuration: the server's (model, permissions) plus the
/// sidecar's MCP server and the live context file as instructions.
pub fn opencode_config(
    base: Option<&str>,
    mcp_url: &str,
    mcp_token: &str,
    context_file: &std::path::Path,
) -> Result<String, String> {
    let mut config: serde_json::Value = match base {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
            .map_err(|e| format!("OPENCODE_CONFIG_CONTENT is not JSON: {e}"))?,
        _ => serde_json::json!({}),
    };
    let Some(root) = config.as_object_mut() else {
        return Err("OPENCODE_CONFIG_CONTENT is not a JSON object".into());
    };
    let mcp = root.entry("mcp").or_insert_with(|| serde_json::json!({}));
    if let Some(mcp) = mcp.as_object_mut() {
        mcp.insert(
            "canopy".into(),
            serde_json::json!({
                "type": "remote",
                "url": mcp_url,
                "enabled": true,
                "oauth": false,
                "headers": { "Authorization": format!("Bearer {mcp_token}") },
            }),
        );
    }
    let instructions = root
        .entry("instructions")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(list) = instructions.as_array_mut() {
        list.push(serde_json::Value::String(
            context_file.to_string_lossy().into_owned(),
        ));
    }
    Ok(config.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn config_adds_the_mcp_server_and_the_context_file() {
        let base =
            r#"{"model":"canopy/dev","permission":{"edit":"allow"},"instructions":["a.md"]}"#;
        let out = opencode_config(
            Some(base),
            "http://127.0.0.1:9/mcp",
            "t0k",
            std::path::Path::new("/state/feature-context.md"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["model"], "canopy/dev");
        assert_eq!(v["permission"]["edit"], "allow");
        assert_eq!(v["mcp"]["canopy"]["url"], "http://127.0.0.1:9/mcp");
        assert_eq!(v["mcp"]["canopy"]["headers"]["Authorization"], "Bearer t0k");
        assert_eq!(
            v["instructions"],
            serde_json::json!(["a.md", "/state/feature-context.md"])
        );
        assert!(opencode_config(Some("[1]"), "u", "t", std::path::Path::new("x")).is_err());
        assert!(opencode_config(Some("{"), "u", "t", std::path::Path::new("x")).is_err());
        let empty = opencode_config(None, "u", "t", std::path::Path::new("x")).unwrap();
        assert!(empty.contains("\"canopy\""));
    }

    #[test]
    fn health_checks_go_to_a_reachable_address() {
        assert_eq!(reachable_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(reachable_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(reachable_host("::"), "[::1]");
        assert_eq!(reachable_host("::1"), "[::1]");
        assert_eq!(reachable_host("10.0.0.5"), "10.0.0.5");
        assert_eq!(reachable_host("localhost"), "localhost");
        assert_eq!(reachable_host(""), "127.0.0.1");
    }

    #[tokio::test]
    async fn a_binary_that_cannot_start_is_reported_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let spec = OpenCodeSpec {
            bin: dir.path().join("no-such-opencode"),
            hostname: "127.0.0.1".into(),
            port: 9,
            password: "p".into(),
            workspace: dir.path().to_owned(),
            config: "{}".into(),
            log: dir.path().join("opencode.log"),
            env: Vec::new(),
        };
        let (tx, mut rx) = watch::channel(OpenCodeState::initial());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(supervise(spec, tx, shutdown.clone()));
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                rx.changed().await.unwrap();
                let s = rx.borrow().clone();
                if s.phase == Phase::Down && s.last_exit.is_some() {
                    return s;
                }
            }
        })
        .await
        .unwrap();
        assert!(seen.last_exit.unwrap().contains("cannot run"));
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(rx.borrow().phase, Phase::Stopped);
    }
}
