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
    // 2: identity and access: users, API tokens (hashes only), per-feature
    // memberships (the ACL), and the append-only audit log.
    "
    CREATE TABLE users (
        user_id      TEXT PRIMARY KEY NOT NULL,
        handle       TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        email        TEXT,
        created_at   INTEGER NOT NULL,
        disabled     INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
    );
    CREATE TABLE api_tokens (
        token_id    TEXT PRIMARY KEY NOT NULL,
        user_id     TEXT NOT NULL REFERENCES users (user_id),
        -- SHA-256 of the token's secret; the secret itself is never stored.
        secret_hash BLOB NOT NULL,
        label       TEXT NOT NULL,
        scope       TEXT NOT NULL CHECK (scope IN ('user', 'agent')),
        feature_id  TEXT,
        session_id  TEXT,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER,
        CHECK (scope = 'user' OR (feature_id IS NOT NULL AND session_id IS NOT NULL))
    );
    CREATE INDEX api_tokens_by_user ON api_tokens (user_id, created_at);
    CREATE TABLE members (
        feature_id TEXT NOT NULL REFERENCES features (feature_id),
        user_id    TEXT NOT NULL REFERENCES users (user_id),
        role       TEXT NOT NULL CHECK (role IN ('owner', 'contributor', 'viewer')),
        added_by   TEXT NOT NULL,
        added_at   INTEGER NOT NULL,
        PRIMARY KEY (feature_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_by_user ON members (user_id, feature_id);
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        user_id    TEXT,
        feature_id TEXT,
        action     TEXT NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE INDEX audit_by_feature ON audit (feature_id, seq);
    -- The audit log is append-only: the database itself refuses edits.
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    ",
    // 3: verified attribution: every Automerge actor id belongs to the user
    // who first used it, and the peer that delivered each change is known.
    "
    CREATE TABLE actors (
        actor_id TEXT PRIMARY KEY NOT NULL,
        user_id  TEXT NOT NULL,
        bound_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE change_origins (
        document_id TEXT NOT NULL,
        change_hash TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        peer_id     TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (document_id, change_hash)
    ) WITHOUT ROWID;
    ",
    // 4: agent sessions. Which OpenCode session and transcript document serve
    // a Canopy session, which OpenCode message each dispatched queue entry
    // became (what a restarted server needs to re-attach to a run), and the
    // full tool outputs that transcripts only keep the start of.
    "
    CREATE TABLE agent_sessions (
        session_id          TEXT PRIMARY KEY NOT NULL,
        feature_id          TEXT NOT NULL REFERENCES features (feature_id),
        opencode_session    TEXT,
        transcript_document TEXT,
        updated_at          INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        queue_entry      TEXT PRIMARY KEY NOT NULL,
        feature_id       TEXT NOT NULL,
        session_id       TEXT NOT NULL,
        opencode_session TEXT NOT NULL,
        message_id       TEXT NOT NULL,
        started_at       INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE tool_outputs (
        session_id TEXT NOT NULL,
        part_id    TEXT NOT NULL,
        feature_id TEXT NOT NULL,
        tool       TEXT NOT NULL,
        output     TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (session_id, part_id)
    ) WITHOUT ROWID;
    ",
    // 5: tokens that expire (sandbox tokens; NULL never expires), and the
    // OpenCode process a run began under, so a run lost with a restarted
    // process is told from a slow one.
    "
    ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
    ALTER TABLE runs ADD COLUMN opencode_instance TEXT;
    ",
    // 6: each session's diff as of its last recorded commit (the sidecar's
    // JSON answer), so it can be shown while the sandbox is stopped.
    "
    CREATE TABLE session_diffs (
        session_id TEXT PRIMARY KEY NOT NULL,
        feature_id TEXT NOT NULL,
        diff       TEXT NOT NULL,
        saved_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 7: GitHub webhook deliveries acted on (a redelivery is refused).
    "
    CREATE TABLE github_deliveries (
        delivery_id TEXT PRIMARY KEY NOT NULL,
        event       TEXT NOT NULL,
        received_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 8: Canopy users linked to GitHub accounts; `token` is the user's
    // GitHub token sealed with AES-256-GCM (key outside the database).
    "
    CREATE TABLE github_accounts (
        user_id    TEXT PRIMARY KEY NOT NULL REFERENCES users (user_id),
        github_id  INTEGER NOT NULL UNIQUE,
        login      TEXT NOT NULL,
        token      BLOB,
        linked_at  INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 9: expiring GitHub user tokens: when `token` expires, its sealed
    // single-use refresh token and its expiry; `token_version` grows with
    // every new token (a refresh stores its result only over the version
    // it refreshed).
    "
    ALTER TABLE github_accounts ADD COLUMN token_expires_at INTEGER;
    ALTER TABLE github_accounts ADD COLUMN refresh_token BLOB;
    ALTER TABLE github_accounts ADD COLUMN refresh_expires_at INTEGER;
    ALTER TABLE github_accounts ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
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
