//! What the dispatcher keeps in SQLite: the OpenCode session and transcript
//! document of each Canopy session, the OpenCode message each dispatched
//! queue entry became (so a restarted server re-attaches instead of
//! prompting twice), full tool outputs, and each session's last diff.

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};

/// A dispatched queue entry and the OpenCode message it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `q_…`
    pub queue_entry: String,
    /// The OpenCode session it runs in.
    pub opencode_session: String,
    /// The user message id Canopy chose for it (`msg_…`).
    pub message_id: String,
    /// The OpenCode process (the sidecar's instance id) it was prompted in;
    /// another one now means the run was lost with that process.
    pub opencode_instance: Option<String>,
}

/// The dispatcher's tables. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Over `db`.
    pub fn new(db: Database) -> Self {
        Store { db }
    }

    /// `(opencode_session, transcript_document)` of a session, as recorded.
    pub async fn agent_session(
        &self,
        session_id: &str,
    ) -> Result<(Option<String>, Option<String>), DbError> {
        let sid = session_id.to_owned();
        self.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT opencode_session, transcript_document FROM agent_sessions WHERE session_id = ?1",
                    [sid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map(Option::unwrap_or_default)
            })
            .await
    }

    /// Record the OpenCode session serving `session_id`.
    pub async fn set_opencode_session(
        &self,
        feature_id: &str,
        session_id: &str,
        opencode_session: &str,
    ) -> Result<(), DbError> {
        let (f, s, o) = (
            feature_id.to_owned(),
            session_id.to_owned(),
            opencode_session.to_owned(),
        );
        self.db
            .write(128, move |conn| {
                conn.execute(
                    "INSERT INTO agent_sessions (session_id, feature_id, opencode_session, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id) DO UPDATE SET opencode_session = ?3, updated_at = ?4",
                    params![s, f, o, canopy_protocol::unix_ms_now()],
                )?;
                Ok(())
            })
            .await
    }

    /// Record the transcript document of `session_id`.
    pub async fn set_transcript(
        &self,
        feature_id: &str,
        session_id: &str,
        document_id: &str,
    ) -> Result<(), DbError> {
        let (f, s, d) = (
            feature_id.to_owned(),
            session_id.to_owned(),
            document_id.to_owned(),
        );
        self.db
            .write(128, move |conn| {
                conn.execute(
                    "INSERT INTO agent_sessions (session_id, feature_id, transcript_document, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id) DO UPDATE SET transcript_document = ?3, updated_at = ?4",
                    params![s, f, d, canopy_protocol::unix_ms_now()],
                )?;
                Ok(())
            })
            .await
    }

    /// Record that `run.queue_entry` was handed to OpenCode as
    /// `run.message_id`, before the prompt is sent.
    pub async fn record_run(
        &self,
        feature_id: &str,
        session_id: &str,
        run: &Run,
    ) -> Result<(), DbError> {
        let (f, s, r) = (feature_id.to_owned(), session_id.to_owned(), run.clone());
        self.db
            .write(192, move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO runs
                     (queue_entry, feature_id, session_id, opencode_session, message_id, started_at,
                      opencode_instance)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        r.queue_entry,
                        f,
                        s,
                        r.opencode_session,
                        r.message_id,
                        canopy_protocol::unix_ms_now(),
                        r.opencode_instance
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// The run recorded for a queue entry.
    pub async fn run(&self, queue_entry: &str) -> Result<Option<Run>, DbError> {
        let q = queue_entry.to_owned();
        self.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT queue_entry, opencode_session, message_id, opencode_instance
                     FROM runs WHERE queue_entry = ?1",
                    [q],
                    |r| {
                        Ok(Run {
                            queue_entry: r.get(0)?,
                            opencode_session: r.get(1)?,
                            message_id: r.get(2)?,
                            opencode_instance: r.get(3)?,
                        })
                    },
                )
                .optional()
            })
            .await
    }

    /// Keep a tool call's full output.
    pub async fn put_tool_output(
        &self,
        feature_id: &str,
        session_id: &str,
        part_id: &str,
        tool: &str,
        output: &str,
    ) -> Result<(), DbError> {
        let (f, s, p, t, o) = (
            feature_id.to_owned(),
            session_id.to_owned(),
            part_id.to_owned(),
            tool.to_owned(),
            output.to_owned(),
        );
        self.db
            .write(o.len() + 128, move |conn| {
                conn.execute(
                    "INSERT INTO tool_outputs (session_id, part_id, feature_id, tool, output, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (session_id, part_id) DO UPDATE SET output = ?5, tool = ?4, updated_at = ?6
                     WHERE output <> ?5",
                    params![s, p, f, t, o, canopy_protocol::unix_ms_now()],
                )?;
                Ok(())
            })
            .await
    }

    /// A tool call's full output: `(tool, output)`.
    pub async fn tool_output(
        &self,
        feature_id: &str,
        session_id: &str,
        part_id: &str,
    ) -> Result<Option<(String, String)>, DbError> {
        let (f, s, p) = (
            feature_id.to_owned(),
            session_id.to_owned(),
            part_id.to_owned(),
        );
        self.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT tool, output FROM tool_outputs
                     WHERE session_id = ?1 AND part_id = ?2 AND feature_id = ?3",
                    params![s, p, f],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .await
    }

    /// Keep `diff` (the sidecar's JSON answer) as the session's diff.
    pub async fn put_diff(
        &self,
        feature_id: &str,
        session_id: &str,
        diff: &str,
    ) -> Result<(), DbError> {
        let (f, s, d) = (
            feature_id.to_owned(),
            session_id.to_owned(),
            diff.to_owned(),
        );
        self.db
            .write(d.len() + 128, move |conn| {
                conn.execute(
                    "INSERT INTO session_diffs (session_id, feature_id, diff, saved_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id) DO UPDATE SET diff = ?3, saved_at = ?4",
                    params![s, f, d, canopy_protocol::unix_ms_now()],
                )?;
                Ok(())
            })
            .await
    }

    /// The session's kept diff and when it was kept (Unix ms).
    pub async fn saved_diff(
        &self,
        feature_id: &str,
        session_id: &str,
    ) -> Result<Option<(String, i64)>, DbError> {
        let (f, s) = (feature_id.to_owned(), session_id.to_owned());
        self.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT diff, saved_at FROM session_diffs WHERE session_id = ?1 AND feature_id = ?2",
                    params![s, f],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .await
    }
}
