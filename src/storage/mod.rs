//! samod's [`Storage`] on SQLite.
//!
//! Chunks live in one table keyed by the `/`-joined storage key. samod's
//! storage cannot fail, so this layer never returns an error: writes wait
//! (the writer thread retries and reports failure through
//! [`StorageHealth`](crate::db::StorageHealth)), and reads retry briefly
//! before answering "nothing there", which samod treats as "not in storage"
//! and never turns into a write.

mod durable;

use std::{collections::HashMap, sync::Arc, time::Instant};

use rusqlite::{OptionalExtension, params};
use samod::storage::{Storage, StorageKey};

pub use durable::{Durability, DurableIndex};

use crate::{db::Database, metrics::Metrics};

/// samod storage backed by the SQLite `chunks` table.
#[derive(Clone, Debug)]
pub struct SqliteStorage {
    db: Database,
    durable: Arc<DurableIndex>,
    metrics: Arc<Metrics>,
    guard: Arc<DeleteGuard>,
}

/// Keeps samod's compaction from deleting what it cannot replace.
///
/// samod compacts by putting a snapshot and deleting the chunks it
/// supersedes; our `put` cannot report failure to samod, so after a failed
/// snapshot put samod would still delete the old chunks, and the document
/// would be gone. So: a delete waits until no put for the same document is
/// in flight, and is skipped if any put for that document has failed since
/// the server started (the superseded chunks stay; the next compaction after
/// a restart removes them).
#[derive(Debug, Default)]
struct DeleteGuard {
    state: std::sync::Mutex<GuardState>,
    settled: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct GuardState {
    in_flight: HashMap<String, usize>,
    failed: std::collections::HashSet<String>,
}

/// The document part of a storage key (`<document id>/…`).
fn document_of(key: &StorageKey) -> String {
    let k = key.to_string();
    k.split('/').next().unwrap_or_default().to_owned()
}

impl DeleteGuard {
    fn put_started(&self, doc: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s.in_flight.entry(doc.to_owned()).or_default() += 1;
    }

    fn put_finished(&self, doc: &str, stored: bool) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = s.in_flight.get_mut(doc) {
                *n -= 1;
                if *n == 0 {
                    s.in_flight.remove(doc);
                }
            }
            if !stored {
                s.failed.insert(doc.to_owned());
            }
        }
        self.settled.notify_waiters();
    }

    /// Wait for `doc`'s puts to settle; whether deleting its chunks is safe.
    async fn may_delete(&self, doc: &str) -> bool {
        loop {
            let settled = self.settled.notified();
            {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if !s.in_flight.contains_key(doc) {
                    return !s.failed.contains(doc);
                }
            }
            settled.await;
        }
    }
}

/// Attempts for a read before giving up on it.
const READ_ATTEMPTS: u32 = 4;

/// The key range `[lo, hi)` holding `prefix` itself and every key below it.
/// Components never contain `/`, and `0` is the byte after `/`.
fn prefix_bounds(prefix: &StorageKey) -> (String, String, String) {
    let exact = prefix.to_string();
    (exact.clone(), format!("{exact}/"), format!("{exact}0"))
}

fn parse_key(s: &str) -> Option<StorageKey> {
    StorageKey::from_parts(s.split('/')).ok()
}

impl SqliteStorage {
    /// Storage over `db`.
    pub fn new(db: Database, metrics: Arc<Metrics>) -> Self {
        SqliteStorage {
            db,
            durable: Arc::new(DurableIndex::default()),
            metrics,
            guard: Arc::default(),
        }
    }

    /// The durable-heads index fed by this storage.
    pub fn durable(&self) -> Arc<DurableIndex> {
        self.durable.clone()
    }

    async fn read_with_retry<T, F>(&self, operation: &'static str, op: F) -> Option<T>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Connection) -> rusqlite::Result<T> + Send + Sync + Clone + 'static,
    {
        let started = Instant::now();
        for attempt in 1..=READ_ATTEMPTS {
            match self.db.read(op.clone()).await {
                Ok(v) => {
                    self.metrics
                        .storage_op(operation, started.elapsed().as_secs_f64());
                    return Some(v);
                }
                Err(e) => {
                    self.metrics.storage_error(operation);
                    tracing::warn!(operation, attempt, error = %e, "storage read failed");
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                }
            }
        }
        tracing::error!(operation, "storage read failed repeatedly; answering empty");
        None
    }
}

impl Storage for SqliteStorage {
    fn load(&self, key: StorageKey) -> impl Future<Output = Option<Vec<u8>>> + Send {
        let this = self.clone();
        async move {
            let k = key.to_string();
            this.read_with_retry("load", move |conn| {
                conn.query_row("SELECT data FROM chunks WHERE key = ?1", [&k], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .optional()
            })
            .await
            .flatten()
        }
    }

    fn load_range(
        &self,
        prefix: StorageKey,
    ) -> impl Future<Output = HashMap<StorageKey, Vec<u8>>> + Send {
        let this = self.clone();
        async move {
            let (exact, lo, hi) = prefix_bounds(&prefix);
            let rows = this
                .read_with_retry("load_range", move |conn| {
                    let mut stmt = conn.prepare_cached(
                        "SELECT key, data FROM chunks WHERE key = ?1 OR (key >= ?2 AND key < ?3)",
                    )?;
                    let rows = stmt
                        .query_map(params![exact, lo, hi], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(rows)
                })
                .await
                .unwrap_or_default();
            let chunks: HashMap<StorageKey, Vec<u8>> = rows
                .into_iter()
                .filter_map(|(k, v)| match parse_key(&k) {
                    Some(key) => Some((key, v)),
                    None => {
                        tracing::warn!(key = %k, "ignoring malformed storage key");
                        None
                    }
                })
                .collect();
            this.durable.loaded(&chunks);
            chunks
        }
    }

    fn put(&self, key: StorageKey, data: Vec<u8>) -> impl Future<Output = ()> + Send {
        let this = self.clone();
        async move {
            let started = Instant::now();
            let doc = document_of(&key);
            this.guard.put_started(&doc);
            this.durable.put_started(&key);
            let k = key.to_string();
            let data = Arc::new(data);
            let bytes = data.len();
            let payload = data.clone();
            let result = this
                .db
                .write(bytes, move |conn| {
                    conn.prepare_cached(
                        "INSERT INTO chunks (key, data) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET data = excluded.data",
                    )?
                    .execute(params![k, payload.as_slice()])?;
                    Ok(())
                })
                .await;
            let committed = match result {
                Ok(()) => {
                    this.metrics.storage_bytes_written.inc_by(bytes as u64);
                    true
                }
                Err(e) => {
                    this.metrics.storage_error("put");
                    tracing::error!(%key, error = %e, "chunk was not stored");
                    false
                }
            };
            this.durable.put_finished(&key, &data, committed);
            this.guard.put_finished(&doc, committed);
            this.metrics
                .storage_op("put", started.elapsed().as_secs_f64());
        }
    }

    fn delete(&self, key: StorageKey) -> impl Future<Output = ()> + Send {
        let this = self.clone();
        async move {
            let started = Instant::now();
            if !this.guard.may_delete(&document_of(&key)).await {
                this.metrics.storage_error("delete_skipped");
                tracing::warn!(%key, "not deleting: a put for this document failed, so this chunk may hold the only copy");
                return;
            }
            let k = key.to_string();
            let result = this
                .db
                .write(0, move |conn| {
                    conn.prepare_cached("DELETE FROM chunks WHERE key = ?1")?
                        .execute([&k])?;
                    Ok(())
                })
                .await;
            if let Err(e) = result {
                // A failed delete leaves superseded data behind; samod cleans
                // it up on the next compaction.
                this.metrics.storage_error("delete");
                tracing::warn!(%key, error = %e, "chunk was not deleted");
            }
            this.metrics
                .storage_op("delete", started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_put_keeps_its_documents_chunks_from_deletion() {
        let guard = DeleteGuard::default();
        assert!(guard.may_delete("doc-a").await);
        guard.put_started("doc-a");
        // A delete waits for the put in flight…
        let waiting = guard.may_delete("doc-a");
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        // …and, the put having failed, refuses.
        guard.put_finished("doc-a", false);
        assert!(!waiting.await);
        assert!(!guard.may_delete("doc-a").await);
        // Other documents are not affected.
        guard.put_started("doc-b");
        guard.put_finished("doc-b", true);
        assert!(guard.may_delete("doc-b").await);
    }
    use crate::db::DbConfig;

    fn key(parts: &[&str]) -> StorageKey {
        StorageKey::from_parts(parts).unwrap()
    }

    #[tokio::test]
    async fn prefix_ranges_are_component_wise() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let db = Database::open(DbConfig::new(dir.path().join("t.db")), metrics.clone()).unwrap();
        let s = SqliteStorage::new(db.clone(), metrics);
        s.put(key(&["a", "b", "c"]), b"1".to_vec()).await;
        s.put(key(&["a", "b"]), b"2".to_vec()).await;
        s.put(key(&["a", "bc", "d"]), b"3".to_vec()).await;
        s.put(key(&["a", "b0"]), b"4".to_vec()).await;
        s.put(key(&["ab"]), b"5".to_vec()).await;
        let got = s.load_range(key(&["a", "b"])).await;
        let mut keys: Vec<String> = got.keys().map(|k| k.to_string()).collect();
        keys.sort();
        assert_eq!(keys, vec!["a/b", "a/b/c"]);
        assert_eq!(s.load(key(&["a", "bc", "d"])).await, Some(b"3".to_vec()));
        s.put(key(&["a", "bc", "d"]), b"33".to_vec()).await;
        assert_eq!(s.load(key(&["a", "bc", "d"])).await, Some(b"33".to_vec()));
        s.delete(key(&["a", "bc", "d"])).await;
        assert_eq!(s.load(key(&["a", "bc", "d"])).await, None);
        assert_eq!(s.load_range(key(&["a"])).await.len(), 3);
        db.close().await;
    }

    #[tokio::test]
    async fn concurrent_puts_are_grouped_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let db = Database::open(DbConfig::new(dir.path().join("t.db")), metrics.clone()).unwrap();
        let s = SqliteStorage::new(db.clone(), metrics.clone());
        let puts = (0..500).map(|i| {
            let s = s.clone();
            async move {
                s.put(
                    key(&["doc", "incremental", &format!("{i:04}")]),
                    vec![7; 100],
                )
                .await
            }
        });
        futures::future::join_all(puts).await;
        assert_eq!(s.load_range(key(&["doc"])).await.len(), 500);
        let rendered = metrics.render();
        let batches: u64 = rendered
            .lines()
            .find_map(|l| l.strip_prefix("canopy_storage_batch_jobs_count "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            batches < 500,
            "500 concurrent puts should share transactions, got {batches} commits"
        );
        db.close().await;
    }
}
