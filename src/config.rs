//! Command line and environment configuration. Every flag can also be set
//! with a `CANOPY_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    db::{DbConfig, Synchronous},
    sync::SyncLimits,
};

/// Canopy: a multiplayer background coding agent platform.
#[derive(Debug, Parser)]
#[command(name = "canopy", version, about, long_about = None)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "CANOPY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info,canopy=debug`.
    #[arg(long, env = "CANOPY_LOG", default_value = "info", global = true)]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServerConfig>),
    /// Manage users (works on the data directory; the server may be running).
    User {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDirArg,
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Run the scripted, offline OpenAI-compatible model on its own.
    DevModel {
        /// Address to listen on.
        #[arg(
            long,
            env = "CANOPY_DEV_MODEL_LISTEN",
            default_value = "127.0.0.1:18080"
        )]
        listen: SocketAddr,
    },
    /// Manage API tokens (works on the data directory; the server may be running).
    Token {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDirArg,
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the Docker sandbox image.
    Sandbox {
        /// What to do.
        #[command(subcommand)]
        command: SandboxCommand,
    },
}

/// The data directory, for commands that work on it directly.
#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Directory with the SQLite database.
    #[arg(
        long,
        env = "CANOPY_DATA_DIR",
        default_value = "./canopy-data",
        global = true
    )]
    pub data_dir: PathBuf,
}

/// `canopy user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user and print their first API token (shown once).
    Add {
        /// Unique short name: a-z, 0-9 and '-'.
        handle: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Email for git attribution.
        #[arg(long)]
        email: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user: their tokens and tickets stop working at once.
    Disable {
        /// The user's handle.
        handle: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's handle.
        handle: String,
    },
}

/// `canopy token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (shown once).
    Create {
        /// The user's handle.
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this user's tokens (handle).
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its id (`tok_…`).
    Revoke {
        /// The token id.
        token_id: String,
    },
}

/// `canopy sandbox …`
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Build the sandbox image (the Dockerfile compiled into this binary)
    /// with this sidecar and OpenCode; creates the Debian base image with
    /// debootstrap when Docker does not have it.
    BuildImage {
        /// The image's tag.
        #[arg(long, env = "CANOPY_SANDBOX_IMAGE", default_value_t = crate::sandbox::image::default_tag())]
        tag: String,
        /// The sandbox sidecar binary. Default: `canopy-sidecar` next to
        /// this executable.
        #[arg(long, env = "CANOPY_SIDECAR_BIN")]
        sidecar_bin: Option<PathBuf>,
        /// The OpenCode binary (installed by `make opencode`).
        #[arg(
            long,
            env = "CANOPY_OPENCODE_BIN",
            default_value = "sandbox/opencode/node_modules/.bin/opencode"
        )]
        opencode_bin: PathBuf,
        /// The Docker daemon (`unix:///…`, `tcp://…`). Default: `DOCKER_HOST`
        /// or the local socket.
        #[arg(long, env = "CANOPY_DOCKER_HOST")]
        docker_host: Option<String>,
    },
}

/// Sandbox backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxKind {
    /// Local processes (the embedded default; no isolation).
    Local,
    /// Docker containers (isolated; `canopy sandbox build-image` first).
    Docker,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Server settings.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "CANOPY_LISTEN", default_value = "127.0.0.1:8420")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database and other state.
    #[arg(long, env = "CANOPY_DATA_DIR", default_value = "./canopy-data")]
    pub data_dir: PathBuf,

    /// URL clients use to reach this server (default: derived from the
    /// listening address).
    #[arg(long, env = "CANOPY_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// SQLite commit durability: `full` survives power loss, `normal`
    /// survives process crashes only.
    #[arg(long, env = "CANOPY_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub sqlite_synchronous: Synchronous,

    /// Upper bound for the database size, in MiB. Past it, writes fail, the
    /// server reports not ready and serves documents read-only.
    #[arg(long, env = "CANOPY_STORAGE_QUOTA_MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub storage_quota_mb: Option<u64>,

    /// Largest sync message accepted, in bytes.
    #[arg(long, env = "CANOPY_MAX_MESSAGE_BYTES", default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub max_message_bytes: u64,

    /// Largest HTTP request body accepted, in bytes.
    #[arg(long, env = "CANOPY_MAX_REQUEST_BYTES", default_value_t = 256 << 10, value_parser = clap::value_parser!(u64).range(1024..=(64 << 20)))]
    pub max_request_bytes: u64,

    /// Sustained sync messages per second allowed per connection.
    #[arg(long, env = "CANOPY_SYNC_RATE_LIMIT", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_rate_limit: u32,

    /// Sync messages a connection may send in a burst.
    #[arg(long, env = "CANOPY_SYNC_RATE_BURST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_rate_burst: u32,

    /// Seconds of silence (not even a pong) after which a sync connection is closed.
    #[arg(long, env = "CANOPY_SYNC_IDLE_TIMEOUT_SECS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(5..))]
    pub sync_idle_timeout_secs: u64,

    /// Seconds to wait for connections and pending writes at shutdown.
    #[arg(long, env = "CANOPY_SHUTDOWN_TIMEOUT_SECS", default_value_t = 15)]
    pub shutdown_timeout_secs: u64,

    /// Threads that apply and generate sync messages for documents (CPU-bound
    /// automerge work, kept off the async I/O threads). 0: one per CPU.
    #[arg(long, env = "CANOPY_DOC_THREADS", default_value_t = 0)]
    pub doc_threads: usize,

    /// Key that signs sync tickets, 32 bytes as hex or base64url. Default:
    /// `server.key` in the data directory, created on first start.
    #[arg(long, env = "CANOPY_SERVER_KEY", hide_env_values = true)]
    pub server_key: Option<String>,

    /// Handle of the first user, created with an API token on a data
    /// directory that has no users yet.
    #[arg(long, env = "CANOPY_BOOTSTRAP_USER", default_value = "admin")]
    pub bootstrap_user: String,

    /// Use this token (`canopy_…`) for the first user instead of a random
    /// one, for provisioning tools; ignored once any user exists.
    #[arg(long, env = "CANOPY_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// Serve the web client's build (`examples/web-client/dist`, made by
    /// `make web`) from this directory at `/`, with every other path that
    /// is not a file answered by its `index.html` (client-side routes).
    /// Without it, `GET /` answers where the API is.
    #[arg(long, env = "CANOPY_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Require an API token for `GET /metrics`.
    #[arg(long, env = "CANOPY_METRICS_AUTH", default_value_t = false)]
    pub metrics_auth: bool,

    /// API requests per minute allowed per user (bursts up to the same
    /// number); past it, 429 with `Retry-After`.
    #[arg(long, env = "CANOPY_API_RATE_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_rate_per_minute: u32,

    /// Unfinished prompts one user may have queued in one session.
    #[arg(long, env = "CANOPY_MAX_QUEUED_PER_USER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_queued_per_user: u32,

    /// Largest prompt, in bytes (UTF-8).
    #[arg(long, env = "CANOPY_MAX_PROMPT_BYTES", default_value_t = 64 << 10, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub max_prompt_bytes: u32,

    /// Run agents: turn queue entries into OpenCode runs in sandboxes.
    /// `false` serves documents only (queued prompts wait).
    #[arg(long, env = "CANOPY_DISPATCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub dispatch: bool,

    /// Where sandboxes run. `local`: plain processes on this machine, which
    /// isolate nothing (one trusted user on a laptop).
    #[arg(long, env = "CANOPY_SANDBOX", value_enum, default_value_t = SandboxKind::Local)]
    pub sandbox: SandboxKind,

    /// The OpenCode binary (installed by `make opencode`, pinned in
    /// `sandbox/opencode`).
    #[arg(
        long,
        env = "CANOPY_OPENCODE_BIN",
        default_value = "sandbox/opencode/node_modules/.bin/opencode"
    )]
    pub opencode_bin: PathBuf,

    /// The sandbox sidecar binary (`canopy-sidecar`, built with the server).
    /// Default: next to this executable.
    #[arg(long, env = "CANOPY_SIDECAR_BIN")]
    pub sidecar_bin: Option<PathBuf>,

    /// The server's base URL as sandboxes reach it. Default: the listen
    /// address (loopback when it listens on all interfaces).
    #[arg(long, env = "CANOPY_SANDBOX_SERVER_URL", value_parser = parse_public_url)]
    pub sandbox_server_url: Option<String>,

    /// How long a sandbox token lives, in hours (a new one is minted at
    /// every sandbox start).
    #[arg(long, env = "CANOPY_SANDBOX_TOKEN_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub sandbox_token_hours: u32,

    /// An OpenAI-compatible model endpoint (`http://…/v1`) for the agents,
    /// e.g. a separately run `canopy dev-model`. Default: a real provider
    /// when `ANTHROPIC_API_KEY` or `OPENAI_API_KEY` is set, else the
    /// embedded offline scripted model.
    #[arg(long, env = "CANOPY_MODEL_URL")]
    pub model_url: Option<String>,

    /// The model, as `provider/model` (e.g. `anthropic/claude-sonnet-4-5`);
    /// default: the provider's default model.
    #[arg(long, env = "CANOPY_MODEL")]
    pub model: Option<String>,

    /// Anthropic API key: agents use Anthropic's models.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,

    /// OpenAI API key: agents use OpenAI's models (when no Anthropic key).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Timeout for one HTTP API request, in seconds.
    #[arg(long, env = "CANOPY_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,

    /// Stop a session's sandbox after this many minutes without a run (a
    /// container is snapshotted first; the next prompt continues from it).
    /// 0 never stops them.
    #[arg(long, env = "CANOPY_SANDBOX_IDLE_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=10_080))]
    pub sandbox_idle_minutes: u64,

    /// Stop idle sandboxes after this many seconds instead (tests, demos);
    /// overrides `--sandbox-idle-minutes`.
    #[arg(long, env = "CANOPY_SANDBOX_IDLE_SECS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub sandbox_idle_secs: Option<u64>,

    /// Sandboxes that may run at once, on this server; more starts wait for
    /// a free one (the session says so).
    #[arg(long, env = "CANOPY_MAX_SANDBOXES", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_sandboxes: u32,

    /// How many commits of history a session's clone fetches: 1 (the
    /// default) is a shallow clone, fast on big repositories; 0 fetches
    /// the whole history (for agents that read `git log` or bisect).
    #[arg(long, env = "CANOPY_CLONE_DEPTH", default_value_t = 1)]
    pub clone_depth: u32,

    /// Docker backend settings.
    #[command(flatten)]
    pub docker: DockerArgs,

    /// GitHub settings.
    #[command(flatten)]
    pub github: crate::github::GitHubArgs,
}

/// How the Docker backend runs containers (`--sandbox docker`).
#[derive(Debug, Clone, Args)]
pub struct DockerArgs {
    /// The Docker daemon (`unix:///var/run/docker.sock`, `tcp://…`);
    /// default: `DOCKER_HOST` or the local socket.
    #[arg(long, env = "CANOPY_DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// The sandbox image, built by `canopy sandbox build-image`.
    #[arg(long, env = "CANOPY_SANDBOX_IMAGE", default_value_t = crate::sandbox::image::default_tag())]
    pub sandbox_image: String,

    /// The containers' network: `host` (packets stay on this machine's
    /// interfaces; the sandbox reaches the server on loopback), or `bridge`
    /// / a network's name (ports published on 127.0.0.1 only; set
    /// `--sandbox-server-url` to an address containers reach, e.g.
    /// `http://host.docker.internal:8420` with the server listening there).
    #[arg(long, env = "CANOPY_DOCKER_NETWORK", default_value = "host")]
    pub docker_network: String,

    /// Memory limit per sandbox, in MiB.
    #[arg(long, env = "CANOPY_SANDBOX_MEMORY_MB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(128..))]
    pub sandbox_memory_mb: u64,

    /// CPU limit per sandbox, in CPUs.
    #[arg(long, env = "CANOPY_SANDBOX_CPUS", default_value_t = 2.0)]
    pub sandbox_cpus: f64,

    /// Process limit per sandbox.
    #[arg(long, env = "CANOPY_SANDBOX_PIDS", default_value_t = 1024, value_parser = clap::value_parser!(i64).range(32..))]
    pub sandbox_pids: i64,

    /// Size of a sandbox's `/tmp` (tmpfs), in MiB.
    #[arg(long, env = "CANOPY_SANDBOX_TMP_MB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(16..))]
    pub sandbox_tmp_mb: u64,

    /// Started containers kept ready to be claimed by new sessions.
    #[arg(long, env = "CANOPY_WARM_POOL", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub warm_pool: u64,
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let url: samod::Url = s
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected e.g. https://canopy.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the public URL cannot have a query or fragment".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    config: ServerConfig,
}

impl ServerConfig {
    /// The defaults, with `data_dir` set and listening on an ephemeral
    /// loopback port; what tests and embedders start from.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        // Parsing an empty command line cannot fail: every field has a default.
        let mut config = DefaultsOnly::try_parse_from(["canopy"])
            .map(|d| d.config)
            .unwrap_or_else(|e| panic!("server defaults must parse: {e}"));
        config.data_dir = data_dir.into();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// The SQLite file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("canopy.db")
    }

    /// The default server key file.
    pub fn server_key_path(&self) -> PathBuf {
        self.data_dir.join("server.key")
    }

    pub(crate) fn db_config(&self) -> DbConfig {
        let mut db = DbConfig::new(self.database_path());
        db.synchronous = self.sqlite_synchronous;
        db.max_bytes = self.storage_quota_mb.map(|mb| mb << 20);
        db
    }

    pub(crate) fn sync_limits(&self) -> SyncLimits {
        SyncLimits {
            max_message_bytes: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
            rate_per_sec: self.sync_rate_limit,
            burst: self.sync_rate_burst,
            idle_timeout: Duration::from_secs(self.sync_idle_timeout_secs),
            ping_interval: Duration::from_secs((self.sync_idle_timeout_secs / 3).max(1)),
            ..SyncLimits::default()
        }
    }

    /// Where local sandboxes keep their workspaces.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.data_dir.join("sandboxes")
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}
