//! The sync hub: samod's `Repo` on SQLite, reached through the gateway.

mod gateway;
mod policy;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::ws::WebSocket;
use samod::{AcceptorHandle, PeerId, Repo, RepoEvent, RepoObserver};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

pub use gateway::{SyncLimits, close_code};
pub use policy::{Access, AccessPolicy};

use crate::{db::Database, metrics::Metrics, storage::SqliteStorage};

/// Feeds samod's lifecycle events into the metrics.
struct MetricsObserver(Arc<Metrics>);

impl RepoObserver for MetricsObserver {
    fn observe(&self, event: &RepoEvent) {
        match event {
            RepoEvent::DocumentOpened { .. } => {
                self.0.documents_loaded.inc();
            }
            RepoEvent::DocumentClosed { .. } => {
                self.0.documents_loaded.dec();
            }
            _ => {}
        }
    }
}

/// The running hub.
#[derive(Debug, Clone)]
pub struct SyncHub {
    repo: Repo,
    ctx: Arc<gateway::GatewayContext>,
    connections: TaskTracker,
}

impl SyncHub {
    /// Load samod on `storage` and get ready to accept connections.
    pub async fn start(
        db: &Database,
        storage: SqliteStorage,
        policy: AccessPolicy,
        metrics: Arc<Metrics>,
        limits: SyncLimits,
        shutdown: CancellationToken,
    ) -> Result<SyncHub, samod::Stopped> {
        let peer_id = format!("canopy-server-{:08x}", rand::random::<u32>());
        let durable = storage.durable();
        let repo = Repo::build_tokio()
            .with_storage(storage)
            .with_peer_id(PeerId::from(peer_id.as_str()))
            .with_share_policy(policy.clone())
            .with_observer(MetricsObserver(metrics.clone()))
            .load()
            .await;
        let url = samod::Url::parse("ws://canopy/sync").map_err(|_| samod::Stopped)?;
        let acceptor: AcceptorHandle = repo.make_acceptor(url)?;
        tracing::info!(peer_id, "sync hub started");
        Ok(SyncHub {
            repo,
            ctx: Arc::new(gateway::GatewayContext {
                acceptor,
                policy,
                durable,
                storage_health: db.subscribe_health(),
                metrics,
                limits,
                server_peer_id: peer_id,
                shutdown,
            }),
            connections: TaskTracker::new(),
        })
    }

    /// The samod repository (for server-side reads and changes).
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The server's peer id.
    pub fn peer_id(&self) -> &str {
        &self.ctx.server_peer_id
    }

    /// Limits applied to each connection.
    pub fn limits(&self) -> &SyncLimits {
        &self.ctx.limits
    }

    /// Serve an upgraded WebSocket in the background.
    pub fn accept(&self, socket: WebSocket, remote: SocketAddr) {
        let ctx = self.ctx.clone();
        self.connections
            .spawn(gateway::serve(socket, remote, ctx).in_current_span());
    }

    /// Number of open `/sync` connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Close every connection (they observe the shutdown token), then stop
    /// samod, which waits for its pending storage writes.
    pub async fn stop(&self, timeout: Duration) {
        self.connections.close();
        if tokio::time::timeout(timeout, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.connections.len(),
                "sync connections did not close in time"
            );
        }
        if tokio::time::timeout(timeout, self.repo.stop())
            .await
            .is_err()
        {
            tracing::error!("samod did not stop in time; some writes may be pending");
        }
    }
}
