//! The single place where access to a document is decided.
//!
//! samod asks through [`SharePolicy`] (one live stream per document and
//! peer); the gateway asks [`AccessPolicy::decide`] before a message reaches
//! samod at all. Both get the same answer, from three inputs: whether the
//! document is registered, the peer's user's role in the document's feature
//! (the peer id is pinned by the connection's ticket), and whether storage
//! accepts writes. A change to any input re-decides every live stream.

use futures::{Stream, StreamExt};
use samod::{DocumentId, PeerId, ShareConfig, SharePolicy};
use tokio::sync::watch;

use crate::{
    auth::{self, Members},
    db::StorageHealth,
    registry::Registry,
};

/// What a peer may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The document does not exist for this peer.
    None,
    /// The peer receives changes; its own are ignored.
    ReadOnly,
    /// Full sync.
    ReadWrite,
}

impl Access {
    fn share_config(self) -> ShareConfig {
        // The server never announces documents: a peer only gets what it asks for.
        match self {
            Access::None => ShareConfig::none(),
            Access::ReadOnly => ShareConfig::read_only().with_announce(false),
            Access::ReadWrite => ShareConfig::read_write().with_announce(false),
        }
    }
}

/// The access policy. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    registry: Registry,
    members: Members,
    storage: watch::Receiver<StorageHealth>,
}

impl AccessPolicy {
    /// A policy over the document registry, memberships and storage health.
    pub fn new(
        registry: Registry,
        members: Members,
        storage: watch::Receiver<StorageHealth>,
    ) -> Self {
        AccessPolicy {
            registry,
            members,
            storage,
        }
    }

    /// Decide now.
    pub fn decide(&self, doc: &DocumentId, peer: &PeerId) -> Access {
        let Some(shared) = self.registry.lookup(doc) else {
            return Access::None;
        };
        match auth::identify_peer(peer.as_str()) {
            None => return Access::None,
            Some(auth::PeerIdentity::User(user)) => {
                let Some(role) = self.members.role(&shared.feature_id, user) else {
                    return Access::None;
                };
                if !role.can_write() {
                    return Access::ReadOnly;
                }
            }
            // A session's agent works on its own feature only.
            Some(auth::PeerIdentity::Agent { feature_id, .. }) => {
                if feature_id != shared.feature_id {
                    return Access::None;
                }
            }
        }
        if !self.storage.borrow().is_ok() {
            // Accepting changes we cannot store would lose them silently.
            return Access::ReadOnly;
        }
        Access::ReadWrite
    }

    /// The feature a shared document belongs to.
    pub fn feature_of(&self, doc: &DocumentId) -> Option<String> {
        self.registry.lookup(doc).map(|d| d.feature_id)
    }

    /// The current decision, then a new one whenever an input changes.
    fn decisions(&self, doc: DocumentId, peer: PeerId) -> impl Stream<Item = Access> + use<> {
        let policy = self.clone();
        let mut registry = self.registry.subscribe();
        let mut members = self.members.subscribe();
        let mut storage = self.storage.clone();
        registry.mark_unchanged();
        members.mark_unchanged();
        storage.mark_unchanged();
        let first = policy.decide(&doc, &peer);
        let updates = futures::stream::unfold(
            (policy, registry, members, storage, doc, peer),
            |(policy, mut registry, mut members, mut storage, doc, peer)| async move {
                tokio::select! {
                    r = registry.changed() => r.ok()?,
                    r = members.changed() => r.ok()?,
                    r = storage.changed() => r.ok()?,
                }
                let access = policy.decide(&doc, &peer);
                Some((access, (policy, registry, members, storage, doc, peer)))
            },
        );
        futures::stream::once(async move { first }).chain(updates)
    }
}

impl SharePolicy for AccessPolicy {
    fn share(
        &self,
        doc_id: DocumentId,
        peer_id: PeerId,
    ) -> impl Stream<Item = ShareConfig> + Send + 'static {
        self.decisions(doc_id, peer_id).map(Access::share_config)
    }
}
