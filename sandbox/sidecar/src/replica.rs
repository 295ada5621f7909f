//! The sidecar's replica of its Feature document: reads, and writes stamped
//! with a real time and a message, made as the session's agent.
//!
//! Everything the sidecar writes (tool results, session state, commits) goes
//! through [`Replica::write`], into the local replica first; samod syncs it
//! to the server whenever a connection is up, so nothing waits on the
//! network and nothing is lost while the server is away.

use automerge::{Automerge, transaction::Transaction};
use canopy_protocol::{ChangeMeta, SchemaError, feature};
use futures::{Stream, StreamExt};
use samod::DocHandle;

/// Why a read or a write of the replica failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The edit was refused by the schema (bad input, unknown id, …); the
    /// document is unchanged.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The local repo is shutting down.
    #[error("the sidecar is stopping")]
    Stopped,
}

/// The Feature document as this sandbox's agent sees and edits it. Cheap to
/// clone.
#[derive(Clone)]
pub struct Replica {
    handle: DocHandle,
    feature_id: String,
    session_id: String,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("document", &self.handle.document_id())
            .field("feature_id", &self.feature_id)
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl Replica {
    /// Wrap the feature document's handle.
    pub fn new(handle: DocHandle, feature_id: &str, session_id: &str) -> Self {
        Replica {
            handle,
            feature_id: feature_id.to_owned(),
            session_id: session_id.to_owned(),
        }
    }

    /// The feature this sandbox works on.
    pub fn feature_id(&self) -> &str {
        &self.feature_id
    }

    /// The session this sandbox runs.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The name the agent writes under: `agent:<session_id>` (the server
    /// binds the sidecar's changes to exactly this name).
    pub fn author(&self) -> String {
        format!("agent:{}", self.session_id)
    }

    /// The underlying samod handle (for ephemeral messages).
    pub fn handle(&self) -> &DocHandle {
        &self.handle
    }

    /// The whole document, typed.
    pub async fn read(&self) -> Result<feature::FeatureDoc, ReplicaError> {
        self.with_doc(|d| feature::read(d).map_err(ReplicaError::from))
            .await?
    }

    /// Run `f` on the document (reads only).
    pub async fn with_doc<R, F>(&self, f: F) -> Result<R, ReplicaError>
    where
        F: FnOnce(&Automerge) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle
            .with_document_async(move |d| f(d))
            .await
            .map_err(|_| ReplicaError::Stopped)
    }

    /// One change, committed with `message` and the current time. If `f`
    /// fails nothing is written.
    pub async fn write<R, F>(&self, message: &str, f: F) -> Result<R, ReplicaError>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<R, SchemaError> + Send + 'static,
        R: Send + 'static,
    {
        let meta = ChangeMeta::now(message);
        self.handle
            .with_document_async(move |d| {
                d.transact_with(|_| meta.commit_options(), f)
                    .map(|ok| ok.result)
                    .map_err(|failure| ReplicaError::Schema(failure.error))
            })
            .await
            .map_err(|_| ReplicaError::Stopped)?
    }

    /// Fires after every change, local or remote.
    pub fn changed(&self) -> impl Stream<Item = ()> + Send + 'static {
        self.handle.changes().map(|_| ())
    }
}

/// The replica once it is loaded: at a first start with the server away
/// there is none yet, and tools answer so instead of waiting.
pub type SharedReplica = tokio::sync::watch::Receiver<Option<Replica>>;
