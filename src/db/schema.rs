//! SQLite schema and its migrations, tracked with `PRAGMA user_version`.

use rusqlite::Connection;

/// Ordered migrations; entry `i` moves the database from version `i` to `i + 1`.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: document chunks (samod storage) and the features registry.
    "
    -- WITHOUT ROWID: one b-tree keyed by the storage key, so writing a
    -- chunk touches one tree, not a table plus its key index.
    CREATE TABLE chunks (
        key  TEXT PRIMARY KEY NOT NULL,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE features (
        feature_id  TEXT PRIMARY KEY NOT NULL,
        document_id TEXT NOT NULL UNIQUE,
        title       TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX features_by_created ON features (created_at, feature_id);
    -- Every document the server shares. Feature documents now, session
    -- transcripts later; a document id missing here does not exist for peers.
    CREATE TABLE documents (
        document_id TEXT PRIMARY KEY NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('feature', 'transcript')),
        feature_id  TEXT NOT NULL REFERENCES features (feature_id),
        created_at  INTEGER NOT NULL
    );
    ",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Errors from opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file was written by a newer Canopy.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade Canopy"
    )]
    TooNew {
        /// Version in the file.
        found: usize,
        /// Version this build knows.
        supported: usize,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Bring the database to [`SCHEMA_VERSION`], one transaction per step.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(SchemaError::TooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}
