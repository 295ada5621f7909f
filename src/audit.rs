//! The audit log: an append-only record of what people and agents did that
//! matters for trust (memberships, tokens, connections, refusals, limits).
//! The table refuses updates and deletes (triggers in the schema).

use rusqlite::params;
use serde::Serialize;

use crate::db::{Database, DbError};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A membership was added or its role changed.
    MemberSet,
    /// A membership was removed.
    MemberRemoved,
    /// An API token was created.
    TokenCreated,
    /// An API token was revoked.
    TokenRevoked,
    /// A user was added.
    UserCreated,
    /// A user was disabled or enabled.
    UserDisabled,
    /// A sync connection was opened.
    ConnectionOpened,
    /// A sync connection was closed.
    ConnectionClosed,
    /// A change or message was refused.
    ChangeRejected,
    /// A limit was hit.
    LimitHit,
    /// A prompt was queued.
    PromptQueued,
    /// A prompt was cancelled.
    PromptCancelled,
    /// A feature was created.
    FeatureCreated,
    /// A GitHub webhook delivery was refused (signature, replay, unknown
    /// repository) or a request in it ignored (a comment by a stranger).
    WebhookRefused,
    /// A GitHub webhook delivery changed a feature.
    WebhookApplied,
    /// A session's pull request was opened or updated (or a compare link
    /// given).
    PullRequest,
    /// A sandbox was handed a git credential of the forge.
    GitCredential,
    /// A Canopy user signed in with GitHub, or linked their account.
    GitHubSignIn,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::MemberSet => "member_set",
            AuditAction::MemberRemoved => "member_removed",
            AuditAction::TokenCreated => "token_created",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::UserCreated => "user_created",
            AuditAction::UserDisabled => "user_disabled",
            AuditAction::ConnectionOpened => "connection_opened",
            AuditAction::ConnectionClosed => "connection_closed",
            AuditAction::ChangeRejected => "change_rejected",
            AuditAction::LimitHit => "limit_hit",
            AuditAction::PromptQueued => "prompt_queued",
            AuditAction::PromptCancelled => "prompt_cancelled",
            AuditAction::FeatureCreated => "feature_created",
            AuditAction::WebhookRefused => "webhook_refused",
            AuditAction::WebhookApplied => "webhook_applied",
            AuditAction::PullRequest => "pull_request",
            AuditAction::GitCredential => "git_credential",
            AuditAction::GitHubSignIn => "github_sign_in",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the log.
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Who did it (absent for the server itself).
    pub user_id: Option<String>,
    /// Which feature, if any.
    pub feature_id: Option<String>,
    /// What.
    pub action: String,
    /// Free-form detail.
    pub detail: String,
}

/// Longest detail kept, in bytes; the rest is cut (a log line, not a dump).
const MAX_DETAIL: usize = 2048;

/// The audit log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    db: Database,
}

impl AuditLog {
    /// The log over `db`.
    pub fn new(db: Database) -> Self {
        AuditLog { db }
    }

    /// Append a record. Failures are logged, not returned: an audit write
    /// must not turn a refusal into a crash, and storage failures are
    /// already reported by the database's health.
    pub async fn record(
        &self,
        user_id: Option<&str>,
        feature_id: Option<&str>,
        action: AuditAction,
        detail: impl Into<String>,
    ) {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        tracing::info!(
            target: "canopy::audit",
            user_id,
            feature_id,
            action = action.as_str(),
            detail = %detail,
            "audit"
        );
        let (u, f) = (user_id.map(str::to_owned), feature_id.map(str::to_owned));
        let at = canopy_protocol::unix_ms_now();
        let result = self
            .db
            .write(64 + detail.len(), move |conn| {
                conn.execute(
                    "INSERT INTO audit (at, user_id, feature_id, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![at, u, f, action.as_str(), detail],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, action = action.as_str(), "cannot write the audit log");
        }
    }

    /// A feature's records, newest first, `limit` at a time, before `before`.
    pub async fn for_feature(
        &self,
        feature_id: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let f = feature_id.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, at, user_id, feature_id, action, detail FROM audit
                     WHERE feature_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![f, before.unwrap_or(i64::MAX), limit], |r| {
                        Ok(AuditEntry {
                            seq: r.get(0)?,
                            at: r.get(1)?,
                            user_id: r.get(2)?,
                            feature_id: r.get(3)?,
                            action: r.get(4)?,
                            detail: r.get(5)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }
}
