//! The workspace a sidecar prepares itself (`--prepare-workspace`, for
//! containers; the local backend prepares it on the host): a workspace that
//! is a repository already is reused as it is (the agent's work survives
//! restarts); otherwise its contents are cleared and the repository cloned
//! into it, or an empty repository made when there is none or the clone
//! fails. `workspace.json` in the state directory remembers why a clone
//! failed.
//!
//! git runs with nothing of the sidecar's environment but `PATH`, `HOME`
//! and proxy settings: no system or global config, no credential helper,
//! never prompting.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use canopy_protocol::sidecar::{RepoSource, WorkspaceStatus};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// The commit identity of the agent in the workspace (OpenCode's agent may
/// commit by itself).
pub const AGENT_NAME: &str = "Canopy agent";
/// The agent's commit email.
pub const AGENT_EMAIL: &str = "agent@canopy.invalid";
/// How long a clone may take before it is killed and the workspace falls
/// back to an empty repository (a hung remote must not hang the claim).
pub const CLONE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long any other git command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How the workspace was made, in the state directory.
pub const META: &str = "workspace.json";
/// Present while a workspace is being made: a workspace found with it was
/// interrupted (a half-done clone has a `.git` too) and is made again.
const PREPARING: &str = "workspace.preparing";
/// The variables of the sidecar's environment git keeps.
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// `workspace.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    clone_error: Option<String>,
}

/// Make `workspace` a repository if it is not one yet (see the module
/// docs). The error is for a workspace that cannot be made at all.
pub async fn prepare(
    workspace: &Path,
    state_dir: &Path,
    repo: Option<&RepoSource>,
) -> Result<WorkspaceStatus, String> {
    let preparing = state_dir.join(PREPARING);
    let clone_error = if workspace.join(".git").exists() && !preparing.exists() {
        // Reused as it is: the agent's work (and its uncommitted changes)
        // must survive restarts; no re-clone.
        std::fs::read(state_dir.join(META))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .unwrap_or_default()
            .clone_error
    } else {
        std::fs::write(&preparing, b"")
            .map_err(|e| format!("cannot write {}: {e}", preparing.display()))?;
        // The directory itself may be a mount point: only its contents go.
        clear(workspace)?;
        let mut clone_error = None;
        if let Some(repo) = repo {
            if let Err(reason) = clone(repo, workspace).await {
                tracing::warn!(%reason, "clone failed; the workspace is an empty repository");
                clear(workspace)?;
                clone_error = Some(reason);
            } else {
                tracing::info!(branch = %repo.branch, "repository cloned into the workspace");
                if let Some(work) = &repo.work_branch
                    && let Err(e) = work_on(workspace, repo, work).await
                {
                    tracing::warn!(branch = %work, error = %e, "cannot check out the session branch");
                    clone_error = Some(format!("cannot check out the session branch {work}: {e}"));
                }
            }
        }
        if !workspace.join(".git").exists() {
            git(workspace, &["init", "-q", "-b", "main"])
                .await
                .map_err(|e| format!("git init: {e}"))?;
        }
        write_meta(state_dir, &clone_error)?;
        let _ = std::fs::remove_file(&preparing);
        clone_error
    };
    for (key, value) in [("user.name", AGENT_NAME), ("user.email", AGENT_EMAIL)] {
        git(workspace, &["config", "--local", key, value])
            .await
            .map_err(|e| format!("git config {key}: {e}"))?;
    }
    Ok(WorkspaceStatus {
        branch: current_branch(workspace).await,
        clone_error,
    })
}

/// Remove everything inside `dir`, but not `dir`.
fn clear(dir: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        // Symlinks are removed, never followed.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Write `workspace.json` atomically.
fn write_meta(state_dir: &Path, clone_error: &Option<String>) -> Result<(), String> {
    let bytes = serde_json::to_vec(&Meta {
        clone_error: clone_error.clone(),
    })
    .map_err(|e| e.to_string())?;
    let path = state_dir.join(META);
    let tmp: PathBuf = state_dir.join(format!("{META}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `git clone` the repository into the (empty) `workspace`; the error is
/// for people (no credentials from the URL).
async fn clone(repo: &RepoSource, workspace: &Path) -> Result<(), String> {
    let what = if repo.branch.is_empty() {
        format!("cannot clone {}", redact_userinfo(&repo.url))
    } else {
        format!(
            "cannot clone {} (branch {})",
            redact_userinfo(&repo.url),
            repo.branch
        )
    };
    let mut command = git_command(workspace);
    command
        // No credential helper, whatever a config might say; no transport
        // that runs commands.
        .args([
            "-c",
            "credential.helper=",
            "-c",
            "protocol.ext.allow=never",
            "clone",
            "--quiet",
        ]);
    if !repo.branch.is_empty() {
        command.args(["--branch", &repo.branch]);
    }
    if let Some(depth) = repo.depth.filter(|d| *d > 0) {
        command.arg(format!("--depth={depth}"));
    }
    if let Some(c) = &repo.credential {
        command.envs(canopy_protocol::git::credential_env(
            &c.username,
            &c.password,
        ));
    }
    command
        .arg("--")
        .arg(&repo.url)
        .arg(".")
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

/// `git` in `cwd` with a minimal environment, never prompting.
fn git_command(cwd: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .env_clear()
        .envs(
            KEPT_ENV
                .iter()
                .filter_map(|k| Some((*k, std::env::var_os(k)?))),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Run a quick git command in `cwd`; its stdout, or its stderr as the error.
async fn git(cwd: &Path, args: &[&str]) -> Result<String, String> {
    let out = tokio::time::timeout(COMMAND_TIMEOUT, git_command(cwd).args(args).output())
        .await
        .map_err(|_| format!("git {} timed out", args.join(" ")))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(tail(&String::from_utf8_lossy(&out.stderr), 4, 600))
    }
}

/// Check out the session's own branch: the remote's if it has one (the
/// session pushed before its workspace was lost; a shallow clone fetches
/// it first), else a new one from what was cloned.
async fn work_on(workspace: &Path, repo: &RepoSource, branch: &str) -> Result<(), String> {
    let remote = format!("refs/remotes/origin/{branch}");
    let mut fetch = git_command(workspace);
    fetch.args(["-c", "credential.helper=", "fetch", "--quiet"]);
    if let Some(depth) = repo.depth.filter(|d| *d > 0) {
        fetch.arg(format!("--depth={depth}"));
    }
    if let Some(c) = &repo.credential {
        fetch.envs(canopy_protocol::git::credential_env(
            &c.username,
            &c.password,
        ));
    }
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
    if git(workspace, &["rev-parse", "--verify", "-q", &remote])
        .await
        .is_ok()
    {
        args.push(&remote);
    }
    git(workspace, &args).await.map(|_| ())
}

/// The branch checked out. `symbolic-ref` first: it also names the branch
/// of a repository without commits, where `rev-parse` fails.
pub async fn current_branch(workspace: &Path) -> Option<String> {
    let named = |b: String| (!b.is_empty() && b != "HEAD").then_some(b);
    if let Ok(b) = git(workspace, &["symbolic-ref", "--short", "-q", "HEAD"]).await
        && let Some(b) = named(b)
    {
        return Some(b);
    }
    git(workspace, &["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .ok()
        .and_then(named)
}

/// `text` without the `user:password@` of any URL in it.
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
fn tail(text: &str, lines: usize, max: usize) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_userinfo("fatal: https://bob:s3cret@host/r.git not found"),
            "fatal: https://host/r.git not found"
        );
        assert_eq!(redact_userinfo("file:///tmp/x"), "file:///tmp/x");
    }

    #[tokio::test]
    async fn an_empty_workspace_becomes_a_repository_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, state) = (dir.path().join("ws"), dir.path().join("state"));
        std::fs::create_dir_all(ws.join("junk")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(ws.join("stray.txt"), "x").unwrap();
        let status = prepare(
            &ws,
            &state,
            Some(&RepoSource {
                url: "file:///nonexistent/canopy-test-repo".into(),
                branch: "main".into(),
                work_branch: Some("canopy/f/s-abcdefgh".into()),
                depth: Some(1),
                credential: None,
            }),
        )
        .await
        .unwrap();
        assert_eq!(status.branch.as_deref(), Some("main"));
        let error = status.clone_error.unwrap();
        assert!(
            error.starts_with("cannot clone file:///nonexistent"),
            "{error}"
        );
        assert!(!ws.join("stray.txt").exists() && !ws.join("junk").exists());
        assert!(ws.join(".git").is_dir());
        assert!(!state.join(PREPARING).exists());
        let name = git(&ws, &["config", "--local", "user.name"]).await.unwrap();
        assert_eq!(name, AGENT_NAME);

        // Again: reused as it is, the clone error remembered.
        std::fs::write(ws.join("work.txt"), "mine").unwrap();
        let again = prepare(&ws, &state, None).await.unwrap();
        assert_eq!(again.clone_error.as_deref(), Some(error.as_str()));
        assert_eq!(
            std::fs::read_to_string(ws.join("work.txt")).unwrap(),
            "mine"
        );

        // An interrupted preparation is made again.
        std::fs::write(state.join(PREPARING), "").unwrap();
        let redone = prepare(&ws, &state, None).await.unwrap();
        assert_eq!(redone.clone_error, None);
        assert!(!ws.join("work.txt").exists());
    }
}
