//! The sidecar's configuration: environment variables set by the sandbox
//! backend (every flag also reads a `CANOPY_*` variable), so the same binary
//! runs as a local process or as a container's entrypoint.
//!
//! The five binding variables (server URL, sandbox token, feature, session,
//! document) are all set (the sidecar is bound to its session from the
//! start) or all absent (a pooled sidecar: it starts OpenCode at once and
//! waits for `POST /v1/claim` to bind it).

use std::{net::SocketAddr, path::PathBuf};

use canopy_protocol::sidecar::RepoSource;
use clap::Parser;

use crate::binding::Binding;

/// `canopy-sidecar`: the Feature document inside a sandbox.
#[derive(Clone, Parser)]
#[command(name = "canopy-sidecar", version, about)]
pub struct Config {
    /// The Canopy server's base URL (`http://host:port`); absent in a pooled
    /// sidecar.
    #[arg(long, env = "CANOPY_SERVER_URL")]
    pub server_url: Option<String>,
    /// The sandbox token (role `agent`, scoped to this feature and session);
    /// absent in a pooled sidecar.
    #[arg(long, env = "CANOPY_SANDBOX_TOKEN", hide_env_values = true)]
    pub sandbox_token: Option<String>,
    /// The feature (`ftr_…`); absent in a pooled sidecar.
    #[arg(long, env = "CANOPY_FEATURE_ID")]
    pub feature_id: Option<String>,
    /// The session (`ses_…`); absent in a pooled sidecar.
    #[arg(long, env = "CANOPY_SESSION_ID")]
    pub session_id: Option<String>,
    /// The feature's document (`automerge:…`); absent in a pooled sidecar.
    #[arg(long, env = "CANOPY_FEATURE_DOC")]
    pub feature_doc: Option<String>,
    /// The repository working tree the agent works in.
    #[arg(long, env = "CANOPY_WORKSPACE")]
    pub workspace: PathBuf,
    /// Where the sidecar keeps its replica and the agent's context file
    /// (outside the working tree).
    #[arg(long, env = "CANOPY_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Make the workspace a repository before binding: reuse it if it is
    /// one, else clone the repository into it (or `git init` it). For
    /// containers; the local backend prepares the workspace on the host.
    #[arg(
        long,
        env = "CANOPY_PREPARE_WORKSPACE",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub prepare_workspace: bool,
    /// The repository to clone into the workspace (bound at start, with
    /// `--prepare-workspace`; a claim names its own).
    #[arg(long, env = "CANOPY_REPO_URL", hide_env_values = true)]
    pub repo_url: Option<String>,
    /// The branch to clone (default: the remote's default branch).
    #[arg(long, env = "CANOPY_REPO_BRANCH")]
    pub repo_branch: Option<String>,
    /// The session's own branch, made from the cloned one (or the
    /// remote's, if it has it already).
    #[arg(long, env = "CANOPY_REPO_WORK_BRANCH")]
    pub repo_work_branch: Option<String>,
    /// The OpenCode binary.
    #[arg(long, env = "CANOPY_OPENCODE_BIN", default_value = "opencode")]
    pub opencode_bin: PathBuf,
    /// The address OpenCode listens on (`opencode serve --hostname`).
    #[arg(long, env = "CANOPY_OPENCODE_HOSTNAME", default_value = "127.0.0.1")]
    pub opencode_hostname: String,
    /// OpenCode's port.
    #[arg(long, env = "CANOPY_OPENCODE_PORT")]
    pub opencode_port: u16,
    /// OpenCode's server password.
    #[arg(long, env = "CANOPY_OPENCODE_PASSWORD", hide_env_values = true)]
    pub opencode_password: String,
    /// Where the sidecar serves MCP (for the agent) and its control API (for
    /// the server); port 0 picks one.
    #[arg(long, env = "CANOPY_SIDECAR_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Bearer secret of the control API (the server's; never given to the
    /// agent).
    #[arg(long, env = "CANOPY_SIDECAR_SECRET", hide_env_values = true)]
    pub control_secret: String,
    /// Seconds between heartbeats.
    #[arg(long, env = "CANOPY_HEARTBEAT_SECS", default_value_t = 2)]
    pub heartbeat_secs: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server_url", &self.server_url)
            .field("feature_id", &self.feature_id)
            .field("session_id", &self.session_id)
            .field("feature_doc", &self.feature_doc)
            .field("workspace", &self.workspace)
            .field("state_dir", &self.state_dir)
            .field("prepare_workspace", &self.prepare_workspace)
            .field("repo_branch", &self.repo_branch)
            .field("opencode_bin", &self.opencode_bin)
            .field("opencode_hostname", &self.opencode_hostname)
            .field("opencode_port", &self.opencode_port)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The replica's store.
    pub fn replica_dir(&self) -> PathBuf {
        self.state_dir.join("replica")
    }

    /// The markdown file OpenCode loads as instructions.
    pub fn context_file(&self) -> PathBuf {
        self.state_dir.join("feature-context.md")
    }

    /// The binding given at start: `Some` when all five binding variables
    /// are set, `None` when none is (a pooled sidecar), an error naming the
    /// missing ones otherwise. Empty values count as absent.
    pub fn binding(&self) -> Result<Option<Binding>, String> {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let fields = [
            ("CANOPY_SERVER_URL", given(&self.server_url)),
            ("CANOPY_SANDBOX_TOKEN", given(&self.sandbox_token)),
            ("CANOPY_FEATURE_ID", given(&self.feature_id)),
            ("CANOPY_SESSION_ID", given(&self.session_id)),
            ("CANOPY_FEATURE_DOC", given(&self.feature_doc)),
        ];
        let missing: Vec<&str> = fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect();
        if missing.len() == fields.len() {
            return Ok(None);
        }
        if !missing.is_empty() {
            return Err(format!(
                "incomplete binding: {} {} missing; set all of CANOPY_SERVER_URL, \
                 CANOPY_SANDBOX_TOKEN, CANOPY_FEATURE_ID, CANOPY_SESSION_ID and \
                 CANOPY_FEATURE_DOC to start bound to a session, or none of them to start \
                 pooled (bound later by POST /v1/claim)",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
            ));
        }
        let [
            server_url,
            sandbox_token,
            feature_id,
            session_id,
            feature_doc,
        ] = fields.map(|(_, v)| v.unwrap_or_default());
        Ok(Some(Binding {
            server_url,
            sandbox_token,
            feature_id,
            session_id,
            feature_doc,
            repo: self.repo()?,
        }))
    }

    /// The repository of `--repo-url` / `--repo-branch`.
    pub fn repo(&self) -> Result<Option<RepoSource>, String> {
        let url = self.repo_url.clone().filter(|s| !s.trim().is_empty());
        let branch = self.repo_branch.clone().filter(|s| !s.trim().is_empty());
        match (url, branch) {
            (Some(url), branch) => Ok(Some(RepoSource {
                url,
                branch: branch.unwrap_or_default(),
                work_branch: self
                    .repo_work_branch
                    .clone()
                    .filter(|s| !s.trim().is_empty()),
                depth: None,
                credential: None,
            })),
            (None, Some(_)) => Err("CANOPY_REPO_BRANCH is set but CANOPY_REPO_URL is not".into()),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec![
            "canopy-sidecar",
            "--workspace",
            "/w",
            "--state-dir",
            "/s",
            "--opencode-port",
            "9",
            "--opencode-password",
            "p",
            "--control-secret",
            "c",
        ];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn all_or_none_of_the_binding() {
        let pooled = parse(&[]);
        assert!(pooled.binding().unwrap().is_none());
        assert!(!pooled.prepare_workspace);
        assert_eq!(pooled.opencode_hostname, "127.0.0.1");

        let bound = parse(&[
            "--server-url",
            "http://s",
            "--sandbox-token",
            "t",
            "--feature-id",
            "ftr_a",
            "--session-id",
            "ses_a",
            "--feature-doc",
            "automerge:x",
            "--prepare-workspace",
            "--repo-url",
            "file:///r",
        ]);
        let b = bound.binding().unwrap().unwrap();
        assert_eq!(b.session_id, "ses_a");
        assert!(bound.prepare_workspace);
        assert_eq!(b.repo.as_ref().unwrap().branch, "");
        assert!(!format!("{b:?}").contains("\"t\""));

        let partial = parse(&["--server-url", "http://s", "--session-id", "ses_a"]);
        let e = partial.binding().unwrap_err();
        assert!(
            e.starts_with(
                "incomplete binding: CANOPY_SANDBOX_TOKEN, CANOPY_FEATURE_ID, CANOPY_FEATURE_DOC are missing"
            ),
            "{e}"
        );

        assert!(!parse(&["--prepare-workspace", "false"]).prepare_workspace);
        assert!(parse(&["--prepare-workspace", "1"]).prepare_workspace);
        assert!(parse(&["--repo-branch", "main"]).repo().is_err());
    }
}
