//! The registry of shared documents: which automerge documents exist for
//! peers, and the feature summaries the API lists.
//!
//! samod picks document ids at random, so SQLite maps feature ids to
//! document ids. The set of shared document ids is also held in memory:
//! the sync gateway consults it for every message that names a document.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use rusqlite::{OptionalExtension, Row, params};
use samod::DocumentId;
use serde::Serialize;
use tokio::sync::watch;

use crate::db::{Database, DbError};

/// What a shared document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// A Feature document.
    Feature,
    /// A session transcript.
    Transcript,
}

impl DocKind {
    fn as_str(self) -> &'static str {
        match self {
            DocKind::Feature => "feature",
            DocKind::Transcript => "transcript",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "feature" => Some(DocKind::Feature),
            "transcript" => Some(DocKind::Transcript),
            _ => None,
        }
    }
}

/// A shared document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDoc {
    /// Its kind.
    pub kind: DocKind,
    /// The feature it belongs to.
    pub feature_id: String,
}

/// A feature as listed by the API (the document is the source of truth for
/// everything else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureRecord {
    /// `ftr_…`
    pub feature_id: String,
    /// samod document id (bs58check).
    pub document_id: String,
    /// Title at the last sync of the summary.
    pub title: String,
    /// Status at the last sync of the summary.
    pub status: String,
    /// Creator's user id.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl FeatureRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(FeatureRecord {
            feature_id: r.get(0)?,
            document_id: r.get(1)?,
            title: r.get(2)?,
            status: r.get(3)?,
            created_by: r.get(4)?,
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
        })
    }
}

const FEATURE_COLUMNS: &str =
    "feature_id, document_id, title, status, created_by, created_at, updated_at";

/// Registry errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored document id does not parse.
    #[error("stored document id {0:?} is invalid")]
    BadDocumentId(String),
}

/// The registry handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    db: Database,
    shared: Arc<RwLock<HashMap<DocumentId, SharedDoc>>>,
    version: Arc<watch::Sender<u64>>,
}

impl Registry {
    /// Load the set of shared documents.
    pub async fn load(db: Database) -> Result<Registry, RegistryError> {
        let rows = db
            .read(|conn| {
                let mut stmt =
                    conn.prepare("SELECT document_id, kind, feature_id FROM documents")?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        let mut shared = HashMap::with_capacity(rows.len());
        for (doc, kind, feature_id) in rows {
            let id: DocumentId = doc
                .parse()
                .map_err(|_| RegistryError::BadDocumentId(doc.clone()))?;
            let kind = DocKind::parse(&kind).ok_or(RegistryError::BadDocumentId(doc))?;
            shared.insert(id, SharedDoc { kind, feature_id });
        }
        tracing::info!(documents = shared.len(), "loaded document registry");
        Ok(Registry {
            db,
            shared: Arc::new(RwLock::new(shared)),
            version: Arc::new(watch::channel(0).0),
        })
    }

    /// Whether (and as what) a document is shared.
    pub fn lookup(&self, doc: &DocumentId) -> Option<SharedDoc> {
        self.shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(doc)
            .cloned()
    }

    /// Number of shared documents.
    pub fn len(&self) -> usize {
        self.shared.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no document is shared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notified whenever the set of shared documents changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Record a new feature, make `record.created_by` its owner, and share
    /// its document, in one transaction: a feature never exists without an
    /// owner.
    pub async fn register_feature(
        &self,
        record: FeatureRecord,
        doc: DocumentId,
    ) -> Result<(), RegistryError> {
        let r = record.clone();
        self.db
            .write(256, move |conn| {
                conn.execute(
                    &format!("INSERT INTO features ({FEATURE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                    params![
                        r.feature_id,
                        r.document_id,
                        r.title,
                        r.status,
                        r.created_by,
                        r.created_at,
                        r.updated_at
                    ],
                )?;
                conn.execute(
                    "INSERT INTO members (feature_id, user_id, role, added_by, added_at)
                     VALUES (?1, ?2, 'owner', ?2, ?3)",
                    params![r.feature_id, r.created_by, r.created_at],
                )?;
                conn.execute(
                    "INSERT INTO documents (document_id, kind, feature_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![r.document_id, DocKind::Feature.as_str(), r.feature_id, r.created_at],
                )?;
                Ok(())
            })
            .await?;
        self.shared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                doc,
                SharedDoc {
                    kind: DocKind::Feature,
                    feature_id: record.feature_id,
                },
            );
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Share a session's transcript document with the feature's members
    /// (the same ACL as the feature).
    pub async fn register_transcript(
        &self,
        feature_id: &str,
        doc: DocumentId,
        created_at: i64,
    ) -> Result<(), RegistryError> {
        let (f, d) = (feature_id.to_owned(), doc.to_string());
        self.db
            .write(128, move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO documents (document_id, kind, feature_id, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![d, DocKind::Transcript.as_str(), f, created_at],
                )?;
                Ok(())
            })
            .await?;
        self.shared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                doc,
                SharedDoc {
                    kind: DocKind::Transcript,
                    feature_id: feature_id.to_owned(),
                },
            );
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Every shared document of `kind`, with its feature.
    pub fn documents_of_kind(&self, kind: DocKind) -> Vec<(DocumentId, String)> {
        self.shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, s)| s.kind == kind)
            .map(|(d, s)| (d.clone(), s.feature_id.clone()))
            .collect()
    }

    /// One feature.
    pub async fn feature(&self, feature_id: &str) -> Result<Option<FeatureRecord>, RegistryError> {
        let id = feature_id.to_owned();
        Ok(self
            .db
            .read(move |conn| {
                conn.query_row(
                    &format!("SELECT {FEATURE_COLUMNS} FROM features WHERE feature_id = ?1"),
                    [id],
                    FeatureRecord::from_row,
                )
                .optional()
            })
            .await?)
    }

    /// Features, newest first, `limit` at a time; `before` is the
    /// `(created_at, feature_id)` of the last item of the previous page.
    pub async fn list_features(
        &self,
        limit: u32,
        before: Option<(i64, String)>,
    ) -> Result<Vec<FeatureRecord>, RegistryError> {
        Ok(self
            .db
            .read(move |conn| {
                let (at, id) = before.unwrap_or((i64::MAX, String::new()));
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {FEATURE_COLUMNS} FROM features
                     WHERE (created_at, feature_id) < (?1, ?2)
                     ORDER BY created_at DESC, feature_id DESC LIMIT ?3"
                ))?;
                let rows = stmt
                    .query_map(params![at, id, limit], FeatureRecord::from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// Features `user_id` is a member of, newest first, `limit` at a time;
    /// `before` as for [`Registry::list_features`].
    pub async fn list_features_for(
        &self,
        user_id: &str,
        limit: u32,
        before: Option<(i64, String)>,
    ) -> Result<Vec<FeatureRecord>, RegistryError> {
        let user = user_id.to_owned();
        Ok(self
            .db
            .read(move |conn| {
                let (at, id) = before.unwrap_or((i64::MAX, String::new()));
                let columns = FEATURE_COLUMNS
                    .split(", ")
                    .map(|c| format!("f.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {columns} FROM features f
                     JOIN members m ON m.feature_id = f.feature_id AND m.user_id = ?4
                     WHERE (f.created_at, f.feature_id) < (?1, ?2)
                     ORDER BY f.created_at DESC, f.feature_id DESC LIMIT ?3"
                ))?;
                let rows = stmt
                    .query_map(params![at, id, limit, user], FeatureRecord::from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// Refresh the listed title and status from the document.
    pub async fn update_summary(
        &self,
        feature_id: &str,
        title: &str,
        status: &str,
        updated_at: i64,
    ) -> Result<(), RegistryError> {
        let (id, title, status) = (feature_id.to_owned(), title.to_owned(), status.to_owned());
        self.db
            .write(title.len() + 64, move |conn| {
                conn.execute(
                    "UPDATE features SET title = ?2, status = ?3, updated_at = ?4
                     WHERE feature_id = ?1 AND (title <> ?2 OR status <> ?3)",
                    params![id, title, status, updated_at],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }
}
