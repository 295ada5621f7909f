//! Which document heads are durable in SQLite, so the sync gateway can hold
//! back a message until what it announces is safe.
//!
//! samod produces an outgoing sync message and the storage writes for the
//! same change in one step, and sends them independently: a peer can hear
//! "I have your change" before the change is on disk. Announcing heads is
//! what makes a peer consider its change delivered (`they_have_our_changes`,
//! and JS `handle.whenSynced`-style checks), and a peer that believes the
//! server has a change may discard it. So the gateway waits, per outgoing
//! `sync`/`request` message, until every announced head is recorded here.
//!
//! Every head samod ever announces was, when announced, either the hash of a
//! change it wrote as an `incremental` chunk or a head of a `snapshot` chunk
//! it wrote (a compaction writes the document at its current heads). So it is
//! enough to record incremental hashes and snapshot heads once SQLite has
//! committed them, and the heads of whatever was loaded from disk.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use automerge::ChangeHash;
use samod::storage::StorageKey;
use tokio::sync::Notify;

/// How many recent durable hashes to remember per document. Announced heads
/// are recent by construction; this bounds memory for busy documents.
const RECENT_PER_DOC: usize = 4096;

#[derive(Default)]
struct DocState {
    recent: VecDeque<ChangeHash>,
    set: HashSet<ChangeHash>,
    /// Puts handed to SQLite and not yet committed.
    in_flight: usize,
    notify: Arc<Notify>,
}

impl DocState {
    fn record(&mut self, hash: ChangeHash) {
        if self.set.insert(hash) {
            self.recent.push_back(hash);
            if self.recent.len() > RECENT_PER_DOC
                && let Some(old) = self.recent.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Outcome of a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every head is durable.
    Durable,
    /// The wait timed out while storage was idle for the document: the heads
    /// were most likely evicted from the recent set long ago.
    TimedOutIdle,
}

/// Durable heads per document (keyed by the document id string used in
/// storage keys).
#[derive(Default)]
pub struct DurableIndex {
    docs: Mutex<HashMap<String, DocState>>,
}

impl std::fmt::Debug for DurableIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableIndex").finish_non_exhaustive()
    }
}

/// What a chunk key says about durability.
enum ChunkKind<'a> {
    Incremental { doc: &'a str, hash: ChangeHash },
    Snapshot { doc: &'a str },
    Other,
}

fn classify(key: &StorageKey) -> ChunkKind<'_> {
    let parts: Vec<&String> = key.into_iter().collect();
    match parts.as_slice() {
        [doc, kind, hash] if kind.as_str() == "incremental" => match hash.parse::<ChangeHash>() {
            Ok(hash) => ChunkKind::Incremental { doc, hash },
            Err(_) => ChunkKind::Other,
        },
        [doc, kind, _] if kind.as_str() == "snapshot" => ChunkKind::Snapshot { doc },
        _ => ChunkKind::Other,
    }
}

fn doc_of(key: &StorageKey) -> Option<&str> {
    match classify(key) {
        ChunkKind::Incremental { doc, .. } | ChunkKind::Snapshot { doc } => Some(doc),
        ChunkKind::Other => None,
    }
}

impl DurableIndex {
    fn with_doc<R>(&self, doc: &str, f: impl FnOnce(&mut DocState) -> R) -> R {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        f(docs.entry(doc.to_owned()).or_default())
    }

    /// A put for `key` is about to be handed to SQLite.
    pub fn put_started(&self, key: &StorageKey) {
        if let Some(doc) = doc_of(key) {
            self.with_doc(doc, |d| d.in_flight += 1);
        }
    }

    /// SQLite committed (or gave up on) a put.
    pub fn put_finished(&self, key: &StorageKey, data: &[u8], committed: bool) {
        let Some(doc) = doc_of(key) else { return };
        let heads = if committed {
            chunk_heads(key, data)
        } else {
            Vec::new()
        };
        let notify = self.with_doc(doc, |d| {
            d.in_flight = d.in_flight.saturating_sub(1);
            for h in heads {
                d.record(h);
            }
            d.notify.clone()
        });
        notify.notify_waiters();
    }

    /// Chunks read from SQLite are durable by definition.
    pub fn loaded(&self, chunks: &HashMap<StorageKey, Vec<u8>>) {
        let mut touched = Vec::new();
        for (key, data) in chunks {
            let Some(doc) = doc_of(key) else { continue };
            let heads = chunk_heads(key, data);
            let notify = self.with_doc(doc, |d| {
                for h in heads {
                    d.record(h);
                }
                d.notify.clone()
            });
            touched.push(notify);
        }
        for n in touched {
            n.notify_waiters();
        }
    }

    fn check(&self, doc: &str, heads: &[ChangeHash]) -> (bool, usize, Arc<Notify>) {
        self.with_doc(doc, |d| {
            (
                heads.iter().all(|h| d.set.contains(h)),
                d.in_flight,
                d.notify.clone(),
            )
        })
    }

    /// Wait until every head is durable.
    ///
    /// `storage_ok` reports whether storage currently accepts writes. When
    /// storage is healthy, nothing is in flight for the document and `idle`
    /// passes without progress, the heads cannot be waiting for a write: they
    /// are released as [`Durability::TimedOutIdle`]. While storage is failing
    /// the wait continues, so nothing undurable is ever announced.
    pub async fn wait(
        &self,
        doc: &str,
        heads: &[ChangeHash],
        idle: Duration,
        storage_ok: impl Fn() -> bool,
    ) -> Durability {
        if heads.is_empty() {
            return Durability::Durable;
        }
        loop {
            let (ok, in_flight, notify) = self.check(doc, heads);
            if ok {
                return Durability::Durable;
            }
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Re-check after registering, so a notification between the
            // check and the registration is not lost.
            let (ok, _, _) = self.check(doc, heads);
            if ok {
                return Durability::Durable;
            }
            if tokio::time::timeout(idle, notified).await.is_err() && in_flight == 0 && storage_ok()
            {
                let (ok, in_flight_now, _) = self.check(doc, heads);
                if ok {
                    return Durability::Durable;
                }
                if in_flight_now == 0 {
                    return Durability::TimedOutIdle;
                }
            }
        }
    }
}

fn chunk_heads(key: &StorageKey, data: &[u8]) -> Vec<ChangeHash> {
    match classify(key) {
        ChunkKind::Incremental { hash, .. } => vec![hash],
        ChunkKind::Snapshot { .. } => match canopy_protocol::wire::saved_document_heads(data) {
            Ok(heads) => heads,
            Err(e) => {
                // Fall back to a full load: slow but correct.
                tracing::warn!(%key, error = %e, "cannot read snapshot header; loading it");
                automerge::Automerge::load(data)
                    .map(|d| d.get_heads())
                    .unwrap_or_default()
            }
        },
        ChunkKind::Other => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use automerge::{Automerge, ROOT, transaction::Transactable};

    fn doc_with_change() -> Automerge {
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "k", "v")?;
            Ok(())
        })
        .unwrap();
        doc
    }

    #[tokio::test]
    async fn waits_for_commit_of_incremental() {
        let index = Arc::new(DurableIndex::default());
        let doc = doc_with_change();
        let head = doc.get_heads()[0];
        let key = StorageKey::from_parts(["docA", "incremental", &head.to_string()]).unwrap();
        index.put_started(&key);
        let waiter = {
            let index = index.clone();
            tokio::spawn(async move {
                index
                    .wait("docA", &[head], Duration::from_secs(30), || true)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "must wait while the put is in flight"
        );
        index.put_finished(&key, &[], true);
        assert_eq!(waiter.await.unwrap(), Durability::Durable);
    }

    #[tokio::test]
    async fn snapshot_heads_count_and_failed_storage_holds() {
        let index = DurableIndex::default();
        let doc = doc_with_change();
        let heads = doc.get_heads();
        let snap = StorageKey::from_parts(["docB", "snapshot", "abc"]).unwrap();
        index.put_started(&snap);
        index.put_finished(&snap, &doc.save(), true);
        assert_eq!(
            index
                .wait("docB", &heads, Duration::from_millis(10), || true)
                .await,
            Durability::Durable
        );
        // Unknown heads with storage failing: still waiting after the idle period.
        let other = doc_with_change().get_heads();
        let r = tokio::time::timeout(
            Duration::from_millis(100),
            index.wait("docB", &other, Duration::from_millis(10), || false),
        )
        .await;
        assert!(r.is_err(), "a failed storage must hold the message");
        // With storage healthy and idle, it is released as timed out.
        assert_eq!(
            index
                .wait("docB", &other, Duration::from_millis(10), || true)
                .await,
            Durability::TimedOutIdle
        );
    }
}
