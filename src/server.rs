//! Assembling and running the server: storage, the sync hub and the HTTP
//! router on a listener the caller bound, until a shutdown token fires.

use std::net::SocketAddr;

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    attribution::Attribution,
    audit::{AuditAction, AuditLog},
    auth::{AuthError, Members, ServerKey, Tickets, User, Users},
    config::ServerConfig,
    db::{Database, DbError},
    features::{FeatureLimits, FeatureService},
    http,
    metrics::Metrics,
    registry::{Registry, RegistryError},
    state::{AppState, Identity},
    storage::SqliteStorage,
    summaries,
    sync::{AccessPolicy, SyncHub},
};

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Socket or filesystem trouble.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The database could not be opened.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The registry could not be loaded.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// Identity could not be set up (server key, first user).
    #[error("identity: {0}")]
    Auth(#[from] AuthError),
    /// The sync hub could not start.
    #[error(transparent)]
    Hub(#[from] crate::sync::HubError),
    /// The GitHub settings cannot be used.
    #[error(transparent)]
    GitHub(#[from] crate::github::GitHubConfigError),
    /// The server task panicked.
    #[error("server task failed: {0}")]
    Task(String),
}

/// The first user, created on a data directory that had none.
#[derive(Debug, Clone)]
pub struct FirstUser {
    /// The user.
    pub user: User,
    /// Their API token: this is the only time it is available.
    pub token: String,
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    first_user: Option<FirstUser>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL (`http://host:port`).
    pub fn url(&self) -> &str {
        self.state.public_url()
    }

    /// WebSocket URL of `/sync`.
    pub fn sync_url(&self) -> String {
        self.state.sync_url()
    }

    /// The user created on this start, if the data directory had none.
    pub fn first_user(&self) -> Option<&FirstUser> {
        self.first_user.as_ref()
    }

    /// The application state (tests inspect the repo and registry).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Shut down gracefully and wait for it.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.state.shutdown().cancel();
        self.wait().await
    }

    /// Wait until the server has shut down (after its token fires).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?
    }
}

/// Start serving on `listener`; returns once the server accepts requests.
pub async fn start(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    let addr = listener.local_addr()?;
    let github = crate::github::GitHub::from_args(&config.github, &config.data_dir)?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    std::fs::create_dir_all(&config.data_dir)?;

    let metrics = Metrics::new();
    let db_config = config.db_config();
    let db = {
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || Database::open(db_config, metrics))
            .await
            .map_err(|e| ServerError::Task(e.to_string()))??
    };
    let registry = Registry::load(db.clone()).await?;
    let users = Users::new(db.clone());
    let audit = AuditLog::new(db.clone());
    let first_user = users
        .bootstrap(&config.bootstrap_user, config.bootstrap_token.as_deref())
        .await?
        .map(|(user, token)| FirstUser { user, token });
    if let Some(first) = &first_user {
        tracing::info!(handle = %first.user.handle, "created the first user");
        audit
            .record(
                Some(&first.user.user_id),
                None,
                AuditAction::UserCreated,
                format!("first user {} created at first start", first.user.handle),
            )
            .await;
    }
    let members = Members::load(db.clone()).await?;
    let github_access = crate::github::pulls::Access::new(
        github.host().clone(),
        crate::github::accounts::Accounts::new(db.clone(), github.token_key().clone()),
    );
    let attribution = Attribution::load(db.clone()).await?;
    let key = match &config.server_key {
        Some(k) => ServerKey::parse(k)?,
        None => {
            let path = config.server_key_path();
            tokio::task::spawn_blocking(move || ServerKey::load_or_create(&path))
                .await
                .map_err(|e| ServerError::Task(e.to_string()))??
        }
    };
    let tickets = Tickets::new(
        key,
        u64::try_from(canopy_protocol::unix_ms_now()).unwrap_or(0),
    );
    let storage = SqliteStorage::new(db.clone(), metrics.clone());
    let policy = AccessPolicy::new(registry.clone(), members.clone(), db.subscribe_health());
    let (opened, opened_rx) = summaries::channel();
    let hub = SyncHub::start(
        &db,
        storage,
        policy,
        metrics.clone(),
        config.sync_limits(),
        config.doc_threads,
        opened.clone(),
        audit.clone(),
        attribution.clone(),
        shutdown.clone(),
    )
    .await?;
    let background = TaskTracker::new();
    summaries::spawn(
        hub.repo().clone(),
        registry.clone(),
        summaries::Verifier {
            attribution: attribution.clone(),
            audit: audit.clone(),
        },
        opened_rx,
        shutdown.clone(),
        &background,
    );
    background.spawn(refresh_disabled_users(members.clone(), shutdown.clone()));
    let agents = if config.dispatch {
        let (dispatcher, info) = crate::dispatch::setup::start(
            &config,
            crate::dispatch::setup::Services {
                repo: hub.repo().clone(),
                registry: registry.clone(),
                members: members.clone(),
                attribution: attribution.clone(),
                audit: audit.clone(),
                db: db.clone(),
                users: users.clone(),
                metrics: metrics.clone(),
                github: github_access.clone(),
                sandbox_server_url: config.sandbox_server_url.clone().unwrap_or_else(|| {
                    // Sandboxes are on this host: loopback reaches a server
                    // listening on all interfaces too.
                    let mut local = addr;
                    if local.ip().is_unspecified() {
                        local.set_ip(if local.is_ipv4() {
                            std::net::Ipv4Addr::LOCALHOST.into()
                        } else {
                            std::net::Ipv6Addr::LOCALHOST.into()
                        });
                    }
                    format!("http://{local}")
                }),
            },
            shutdown.clone(),
        )
        .await?;
        Some(crate::state::Agents { dispatcher, info })
    } else {
        tracing::info!("agents disabled (--dispatch false): queued prompts wait");
        None
    };
    let features = FeatureService::new(
        registry.clone(),
        members,
        attribution,
        FeatureLimits {
            queued_per_user: config.max_queued_per_user as usize,
            prompt_bytes: config.max_prompt_bytes as usize,
        },
        hub.repo().clone(),
        db.clone(),
        opened,
    );

    let state = AppState::new(
        config.clone(),
        public_url,
        github,
        github_access,
        db.clone(),
        registry,
        hub.clone(),
        features,
        Identity {
            users,
            tickets,
            audit,
            api_limit: std::sync::Arc::new(crate::ratelimit::KeyedLimiter::per_minute(
                config.api_rate_per_minute,
            )),
            limit_audit: std::sync::Arc::new(crate::ratelimit::KeyedLimiter::per_minute(1)),
        },
        metrics,
        agents.clone(),
        shutdown.clone(),
    );
    let router = http::router(state.clone());
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "canopy server started");

    let timeout = config.shutdown_timeout();
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
        tracing::info!("shutting down: closing sync connections");
        db.begin_close();
        background.close();
        if tokio::time::timeout(timeout, background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        if let Some(agents) = agents {
            tracing::info!("shutting down: stopping sandboxes");
            if tokio::time::timeout(timeout, agents.dispatcher.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("sandboxes did not stop in time");
            }
        }
        hub.stop(timeout).await;
        tracing::info!("shutting down: closing the database");
        db.close().await;
        tracing::info!("shutdown complete");
        served.map_err(ServerError::Io)
    });
    Ok(RunningServer {
        addr,
        state,
        first_user,
        task,
    })
}

/// How often the server re-reads which users are disabled (the CLI that
/// disables them is another process).
const DISABLED_USERS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

async fn refresh_disabled_users(members: Members, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DISABLED_USERS_REFRESH) => {}
            _ = shutdown.cancelled() => return,
        }
        match members.refresh_disabled().await {
            Ok(true) => tracing::info!("disabled users changed; share decisions re-made"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot refresh disabled users"),
        }
    }
}

/// Run until `shutdown` fires.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    start(config, listener, shutdown).await?.wait().await
}
