//! The sync hub: samod's `Repo` on SQLite, reached through the gateway.

mod gateway;
mod policy;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::ws::WebSocket;
use samod::{AcceptorHandle, ConcurrencyConfig, PeerId, Repo, RepoEvent, RepoObserver};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

pub use gateway::{Authenticated, SyncLimits, close_code};
pub use policy::{Access, AccessPolicy};

use crate::{db::Database, metrics::Metrics, storage::SqliteStorage, summaries::Opened};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The document thread pool could not be created.
    #[error("cannot start document threads: {0}")]
    Threads(String),
    /// samod stopped while starting.
    #[error("the sync hub stopped while starting")]
    Stopped,
}

/// Feeds samod's lifecycle events into the metrics and tells the summary
/// refresher which documents are open.
struct HubObserver {
    metrics: Arc<Metrics>,
    opened: Opened,
}

impl RepoObserver for HubObserver {
    fn observe(&self, event: &RepoEvent) {
        match event {
            RepoEvent::DocumentOpened { document_id } => {
                self.metrics.documents_loaded.inc();
                self.opened.notify(document_id.clone());
            }
            RepoEvent::DocumentClosed { .. } => {
                self.metrics.documents_loaded.dec();
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
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        db: &Database,
        storage: SqliteStorage,
        policy: AccessPolicy,
        metrics: Arc<Metrics>,
        limits: SyncLimits,
        doc_threads: usize,
        opened: Opened,
        audit: crate::audit::AuditLog,
        attribution: crate::attribution::Attribution,
        shutdown: CancellationToken,
    ) -> Result<SyncHub, HubError> {
        let peer_id = format!("canopy-server-{:08x}", rand::random::<u32>());
        let durable = storage.durable();
        let threads = if doc_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            doc_threads
        };
        // Applying and generating sync messages is CPU work; a pool of its
        // own keeps big documents from stalling HTTP and socket I/O.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("canopy-doc-{i}"))
            .build()
            .map_err(|e| HubError::Threads(e.to_string()))?;
        let repo = Repo::build_tokio()
            .with_storage(storage)
            .with_peer_id(PeerId::from(peer_id.as_str()))
            .with_share_policy(policy.clone())
            .with_observer(HubObserver {
                metrics: metrics.clone(),
                opened,
            })
            .with_concurrency(ConcurrencyConfig::Threadpool(pool))
            .load()
            .await;
        let url = samod::Url::parse("ws://canopy/sync").map_err(|_| HubError::Stopped)?;
        let acceptor: AcceptorHandle = repo.make_acceptor(url).map_err(|_| HubError::Stopped)?;
        tracing::info!(peer_id, "sync hub started");
        Ok(SyncHub {
            repo: repo.clone(),
            ctx: Arc::new(gateway::GatewayContext {
                acceptor,
                policy,
                durable,
                storage_health: db.subscribe_health(),
                metrics,
                limits,
                server_peer_id: peer_id,
                audit,
                attribution,
                repo,
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
    pub fn accept(&self, socket: WebSocket, remote: SocketAddr, auth: Authenticated) {
        let ctx = self.ctx.clone();
        self.connections
            .spawn(gateway::serve(socket, remote, ctx, auth).in_current_span());
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
