//! Shared application state handed to every handler.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditLog,
    auth::{Tickets, Users},
    config::ServerConfig,
    db::Database,
    features::FeatureService,
    metrics::Metrics,
    registry::Registry,
    sync::SyncHub,
};

/// The identity services handed to [`AppState::new`].
#[derive(Debug, Clone)]
pub struct Identity {
    /// Users and API tokens.
    pub users: Users,
    /// Sync tickets.
    pub tickets: Tickets,
    /// The audit log.
    pub audit: AuditLog,
    /// API requests per user.
    pub api_limit: Arc<crate::ratelimit::KeyedLimiter>,
    /// At most one audit record a minute per user for a flooding client.
    pub limit_audit: Arc<crate::ratelimit::KeyedLimiter>,
}

/// Application state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    public_url: String,
    github: crate::github::GitHub,
    github_access: crate::github::pulls::Access,
    db: Database,
    registry: Registry,
    hub: SyncHub,
    features: FeatureService,
    identity: Identity,
    metrics: Arc<Metrics>,
    agents: Option<Agents>,
    shutdown: CancellationToken,
}

/// The dispatcher and what it runs with, when agents are enabled.
#[derive(Debug, Clone)]
pub struct Agents {
    /// The dispatcher.
    pub dispatcher: crate::dispatch::Dispatcher,
    /// Model and sandbox, for `GET /api/agent`.
    pub info: crate::dispatch::setup::AgentInfo,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: ServerConfig,
        public_url: String,
        github: crate::github::GitHub,
        github_access: crate::github::pulls::Access,
        db: Database,
        registry: Registry,
        hub: SyncHub,
        features: FeatureService,
        identity: Identity,
        metrics: Arc<Metrics>,
        agents: Option<Agents>,
        shutdown: CancellationToken,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                config,
                public_url,
                github,
                github_access,
                db,
                registry,
                hub,
                features,
                identity,
                metrics,
                agents,
                shutdown,
            }),
        }
    }

    /// GitHub as configured.
    pub fn github(&self) -> &crate::github::GitHub {
        &self.inner.github
    }

    /// The forge and the accounts linked to it.
    pub fn github_access(&self) -> &crate::github::pulls::Access {
        &self.inner.github_access
    }

    /// Server configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Base URL clients use, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The WebSocket URL of the sync endpoint.
    pub fn sync_url(&self) -> String {
        let base = &self.inner.public_url;
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.clone()
        };
        format!("{ws}/sync")
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The document registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The sync hub.
    pub fn hub(&self) -> &SyncHub {
        &self.inner.hub
    }

    /// Feature operations.
    pub fn features(&self) -> &FeatureService {
        &self.inner.features
    }

    /// Users and API tokens.
    pub fn users(&self) -> &Users {
        &self.inner.identity.users
    }

    /// Sync tickets.
    pub fn tickets(&self) -> &Tickets {
        &self.inner.identity.tickets
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.identity.audit
    }

    /// The per-user API rate limiter.
    pub fn api_limit(&self) -> &crate::ratelimit::KeyedLimiter {
        &self.inner.identity.api_limit
    }

    /// Throttles audit records of limit hits.
    pub fn limit_audit(&self) -> &crate::ratelimit::KeyedLimiter {
        &self.inner.identity.limit_audit
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The dispatcher, unless agents are disabled.
    pub fn agents(&self) -> Option<&Agents> {
        self.inner.agents.as_ref()
    }

    /// Cancelled when the server shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}
