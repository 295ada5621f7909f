//! The sidecar's configuration: environment variables set by the sandbox
//! backend (every flag also reads a `CANOPY_*` variable), so the same binary
//! runs as a local process or as a container's entrypoint.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

/// `canopy-sidecar`: the Feature document inside a sandbox.
#[derive(Clone, Parser)]
#[command(name = "canopy-sidecar", version, about)]
pub struct Config {
    /// The Canopy server's base URL (`http://host:port`).
    #[arg(long, env = "CANOPY_SERVER_URL")]
    pub server_url: String,
    /// The sandbox token (role `agent`, scoped to this feature and session).
    #[arg(long, env = "CANOPY_SANDBOX_TOKEN", hide_env_values = true)]
    pub sandbox_token: String,
    /// The feature (`ftr_…`).
    #[arg(long, env = "CANOPY_FEATURE_ID")]
    pub feature_id: String,
    /// The session (`ses_…`).
    #[arg(long, env = "CANOPY_SESSION_ID")]
    pub session_id: String,
    /// The feature's document (`automerge:…`).
    #[arg(long, env = "CANOPY_FEATURE_DOC")]
    pub feature_doc: String,
    /// The repository working tree the agent works in.
    #[arg(long, env = "CANOPY_WORKSPACE")]
    pub workspace: PathBuf,
    /// Where the sidecar keeps its replica and the agent's context file
    /// (outside the working tree).
    #[arg(long, env = "CANOPY_STATE_DIR")]
    pub state_dir: PathBuf,
    /// The OpenCode binary.
    #[arg(long, env = "CANOPY_OPENCODE_BIN", default_value = "opencode")]
    pub opencode_bin: PathBuf,
    /// OpenCode's port on 127.0.0.1.
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
            .field("opencode_bin", &self.opencode_bin)
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
}
