//! Verified attribution: who wrote what.
//!
//! Every Automerge actor id belongs to the user who first used it; the
//! binding is persisted before the first change that uses it is accepted,
//! and a change by an actor bound to someone else is refused. The peer that
//! delivered each change is recorded (`change_origins`). The server's own
//! actors are bound to [`SERVER`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};

/// The owner recorded for actors the server itself writes with.
pub const SERVER: &str = "@server";

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// The actor belongs to another user.
    #[error("actor {actor} belongs to another user")]
    Foreign {
        /// The actor id (hex).
        actor: String,
        /// Its owner.
        owner: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Actor bindings (cached in memory) and change origins. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Attribution {
    db: Database,
    actors: Arc<RwLock<HashMap<String, String>>>,
    origins: tokio::sync::mpsc::UnboundedSender<Origin>,
    pending: Pending,
}

/// Origins queued for the batch writer and not yet written, `(document,
/// hash) → user`: read alongside the table, so a history read right after
/// a write (a restore, an API call) already names its author.
type Pending = Arc<Mutex<HashMap<(String, String), String>>>;

/// One `change_origins` row.
#[derive(Debug)]
struct Origin {
    document: String,
    hash: String,
    user: String,
    peer: String,
    at: i64,
}

/// How long origin rows wait to be written together: one write job for a
/// burst of changes, instead of one (and often one commit) per message on
/// the sync hot path.
const ORIGIN_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Write origin rows in batches until every sender is gone.
async fn write_origins(
    db: Database,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Origin>,
    pending: Pending,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        tokio::time::sleep(ORIGIN_BATCH_WINDOW).await;
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let batch = Arc::new(batch);
        let rows = batch.clone();
        let result = db
            .write(96 * rows.len(), move |conn| {
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO change_origins (document_id, change_hash, user_id, peer_id, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?;
                for o in rows.iter() {
                    stmt.execute(params![o.document, o.hash, o.user, o.peer, o.at])?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, rows = batch.len(), "cannot record change origins");
        }
        let mut waiting = pending.lock().unwrap_or_else(|p| p.into_inner());
        for o in batch.iter() {
            waiting.remove(&(o.document.clone(), o.hash.clone()));
        }
    }
}

impl Attribution {
    /// Load every binding.
    pub async fn load(db: Database) -> Result<Attribution, DbError> {
        let rows = db
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT actor_id, user_id FROM actors")?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<rusqlite::Result<HashMap<_, _>>>()?;
                Ok(rows)
            })
            .await?;
        let (origins, rx) = tokio::sync::mpsc::unbounded_channel();
        let pending = Pending::default();
        tokio::spawn(write_origins(db.clone(), rx, pending.clone()));
        Ok(Attribution {
            db,
            actors: Arc::new(RwLock::new(rows)),
            origins,
            pending,
        })
    }

    /// Who an actor (hex id) belongs to, if anyone yet.
    pub fn owner(&self, actor: &str) -> Option<String> {
        self.actors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(actor)
            .cloned()
    }

    /// Bind `actors` to `user`, persisted before this returns. An actor
    /// already bound to `user` is fine; one bound to anyone else is an error
    /// and nothing is bound.
    pub async fn bind(&self, actors: &[String], user: &str) -> Result<(), AttributionError> {
        let unbound: Vec<String> = {
            let known = self.actors.read().unwrap_or_else(|p| p.into_inner());
            let mut unbound = Vec::new();
            for a in actors {
                match known.get(a) {
                    Some(owner) if owner == user => {}
                    Some(owner) => {
                        return Err(AttributionError::Foreign {
                            actor: a.clone(),
                            owner: owner.clone(),
                        });
                    }
                    None => unbound.push(a.clone()),
                }
            }
            unbound
        };
        if unbound.is_empty() {
            return Ok(());
        }
        let (list, who) = (unbound.clone(), user.to_owned());
        let now = canopy_protocol::unix_ms_now();
        // One transaction; the single writer serialises racing binds, so the
        // first user to use an actor wins and the second sees the owner.
        let owners: Vec<(String, String)> = self
            .db
            .write_returning(64 * list.len(), move |conn| {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO actors (actor_id, user_id, bound_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (actor_id) DO NOTHING",
                )?;
                let mut owner =
                    conn.prepare_cached("SELECT user_id FROM actors WHERE actor_id = ?1")?;
                let mut out = Vec::with_capacity(list.len());
                for a in &list {
                    insert.execute(params![a, who, now])?;
                    out.push((a.clone(), owner.query_row([a], |r| r.get(0))?));
                }
                Ok(out)
            })
            .await?;
        let mut known = self.actors.write().unwrap_or_else(|p| p.into_inner());
        let mut foreign = None;
        for (actor, owner) in owners {
            if owner != user && foreign.is_none() {
                foreign = Some(AttributionError::Foreign {
                    actor: actor.clone(),
                    owner: owner.clone(),
                });
            }
            known.insert(actor, owner);
        }
        foreign.map_or(Ok(()), Err)
    }

    /// Record that `peer` (of `user`) delivered these changes of `document`.
    /// Queued and written in batches, so it adds no latency: a crash in the
    /// moment between a change being stored and its origin being stored
    /// loses the origin record, never the change.
    pub fn record_origins(&self, document: &str, user: &str, peer: &str, hashes: Vec<String>) {
        let now = canopy_protocol::unix_ms_now();
        for hash in hashes {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((document.to_owned(), hash.clone()))
                .or_insert_with(|| user.to_owned());
            // The writer lives as long as any handle; a send fails only
            // while the server shuts down.
            let _ = self.origins.send(Origin {
                document: document.to_owned(),
                hash,
                user: user.to_owned(),
                peer: peer.to_owned(),
                at: now,
            });
        }
    }

    /// Who delivered (or, for the server's own writes, asked for) changes
    /// of `document`: `hash → user`, for `hashes` or, with `None`, all.
    pub async fn origins(
        &self,
        document: &str,
        hashes: Option<Vec<String>>,
    ) -> Result<HashMap<String, String>, DbError> {
        let doc = document.to_owned();
        let wanted = hashes.clone();
        let mut found = self
            .db
            .read(move |conn| {
                let mut out = HashMap::new();
                match hashes {
                    Some(hashes) => {
                        let mut stmt = conn.prepare_cached(
                            "SELECT user_id FROM change_origins WHERE document_id = ?1 AND change_hash = ?2",
                        )?;
                        for h in hashes {
                            if let Some(user) = stmt
                                .query_row(params![doc, h], |r| r.get::<_, String>(0))
                                .optional()?
                            {
                                out.insert(h, user);
                            }
                        }
                    }
                    None => {
                        let mut stmt = conn.prepare_cached(
                            "SELECT change_hash, user_id FROM change_origins WHERE document_id = ?1",
                        )?;
                        let rows = stmt.query_map([&doc], |r| Ok((r.get(0)?, r.get(1)?)))?;
                        for row in rows {
                            let (h, u) = row?;
                            out.insert(h, u);
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        // Queued, not yet written; the first recorded origin wins, as in
        // the table.
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match wanted {
            Some(hashes) => {
                for h in hashes {
                    if let Some(user) = pending.get(&(document.to_owned(), h.clone())) {
                        found.entry(h).or_insert_with(|| user.clone());
                    }
                }
            }
            None => {
                for ((d, h), user) in pending.iter() {
                    if d == document {
                        found.entry(h.clone()).or_insert_with(|| user.clone());
                    }
                }
            }
        }
        Ok(found)
    }
}
