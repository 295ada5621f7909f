//! The typed Feature document (schema 1) and the inputs of its writers.
//!
//! Field names are the document's keys, and serde uses the same names, so
//! the JSON the server's HTTP API returns has the shape of the document
//! itself. Every struct defaults field by field, because readers are
//! lenient: a missing field means its default, not an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::TransitionError;
use crate::string_enum::string_enum;

/// A whole Feature document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureDoc {
    /// Schema version; 0 if the document has none (not yet migrated).
    pub schema: u64,
    /// `ftr_…`.
    pub feature_id: String,
    /// Text.
    pub title: String,
    /// Text.
    pub description: String,
    /// Lifecycle of the whole feature.
    pub status: FeatureStatus,
    /// The repository the feature changes, if any.
    pub repo: Option<RepoRef>,
    /// User id of the creator.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Mirror of the access list, for display, keyed by user id.
    pub participants: BTreeMap<String, Participant>,
    /// Agent sessions, keyed by session id.
    pub sessions: BTreeMap<String, Session>,
    /// Prompts, first in first out in the list's merged order.
    pub queue: Vec<QueueEntry>,
    /// Things learned while working on the feature.
    pub learnings: Vec<Learning>,
    /// Decisions taken, with their reasons.
    pub decisions: Vec<Decision>,
    /// Files that matter, keyed by repository-relative path.
    pub key_files: BTreeMap<String, KeyFile>,
    /// Shared free-form notes (Text).
    pub notes: String,
}

/// The repository a feature works on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RepoRef {
    /// Clone URL.
    pub url: String,
    /// Branch the feature starts from and merges into.
    pub base_branch: String,
    /// Branch holding the feature's work, once created.
    pub feature_branch: Option<String>,
    /// Sandboxes clone the whole history instead of the server's shallow
    /// default (for work that needs `git log`, `blame` or old tags).
    /// Absent in documents written before server API 11: `false`.
    pub full_clone: bool,
}

/// A member of the feature, as shown in the UI.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Participant {
    /// Display name.
    pub name: String,
    /// `owner`, `contributor`, `viewer` or `agent` (the access list is the
    /// authority; this is a display copy).
    pub role: String,
}

/// One agent session.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Session {
    /// Text.
    pub title: String,
    /// Text: what this session should and should not do.
    pub scope: String,
    /// Lifecycle of the session's agent and sandbox.
    pub status: SessionStatus,
    /// Sessions that must finish first.
    pub depends_on: Vec<String>,
    /// User id.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The sandbox, once one is assigned.
    pub sandbox: Option<Sandbox>,
    /// `automerge:` URL of the session's transcript document.
    pub transcript: Option<String>,
    /// Repository-relative paths the session changed.
    pub files_changed: Vec<String>,
    /// The pull request, once opened.
    pub pr: Option<PullRequest>,
    /// Token and cost totals.
    pub usage: Usage,
}

/// Where a session runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Sandbox {
    /// `docker`, `local`, … (the orchestrator's name for its backend).
    pub backend: String,
    /// The orchestrator's state name (free-form, for display).
    pub state: String,
    /// Whether the repository is checked out and ready for the agent.
    pub workspace_ready: bool,
    /// Branch checked out in the workspace.
    pub branch: Option<String>,
    /// Commit at the head of that branch.
    pub head: Option<String>,
    /// Why the state is what it is, for people: the error of a failed
    /// start, the wait for a free sandbox (schema 1, server API 5; absent
    /// before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A pull request opened for a session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    /// Web URL.
    pub url: String,
    /// Number in the repository.
    pub number: u64,
    /// Forge state (`open`, `closed`, `merged`).
    pub state: String,
}

/// What a session has consumed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// A prompt waiting for, or given to, a session's agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueEntry {
    /// `q_…`.
    pub id: String,
    /// The session that should run it.
    pub session_id: String,
    /// User id of the person who wrote it.
    pub author: String,
    /// Text: the prompt.
    pub text: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Where the entry is in its lifecycle.
    pub status: QueueStatus,
    /// When the agent started it (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When it reached a terminal status (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Why it failed, was rejected or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The workspace commit made after the prompt ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Something learned while working on the feature.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Learning {
    /// `lrn_…`.
    pub id: String,
    /// Text.
    pub text: String,
    /// User id (or the agent's user id).
    pub author: String,
    /// The session it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_session: Option<String>,
    /// How much it should weigh in the agent's context.
    pub importance: Importance,
    /// Repository-relative paths it concerns.
    pub files: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A decision and why it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Decision {
    /// `dec_…`.
    pub id: String,
    /// Text: what was decided.
    pub decision: String,
    /// Text: why.
    pub rationale: String,
    /// Text each: what else was considered.
    pub alternatives: Vec<String>,
    /// User id.
    pub author: String,
    /// The session it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_session: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A file that matters to the feature.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyFile {
    /// Text: why it matters.
    pub note: String,
    /// Sessions that marked it.
    pub sessions: Vec<String>,
}

string_enum! {
    /// Lifecycle of a feature.
    pub enum FeatureStatus {
        /// Being worked on.
        Active = "active",
        /// Done.
        Completed = "completed",
        /// Put away.
        Archived = "archived",
    }
    default = Active;
}

string_enum! {
    /// Lifecycle of a session's agent and sandbox. The server writes it.
    pub enum SessionStatus {
        /// Created, no sandbox yet.
        Pending = "pending",
        /// Sandbox starting.
        Starting = "starting",
        /// Sandbox up, agent ready.
        Ready = "ready",
        /// Agent working on a prompt.
        Running = "running",
        /// Agent waiting for the next prompt.
        Idle = "idle",
        /// Work finished.
        Completed = "completed",
        /// Sandbox or agent failed.
        Failed = "failed",
        /// Stopped on request.
        Stopped = "stopped",
    }
    default = Pending;
}

string_enum! {
    /// Lifecycle of a queue entry. See [`QueueStatus::check_transition`].
    pub enum QueueStatus {
        /// Waiting; the only status a client may append.
        Queued = "queued",
        /// Handed to the session's agent.
        Dispatched = "dispatched",
        /// The agent is working on it.
        Running = "running",
        /// Finished successfully.
        Done = "done",
        /// Finished with an error.
        Failed = "failed",
        /// Withdrawn before it ran, or aborted while running.
        Cancelled = "cancelled",
        /// Refused by the server (unknown session, forged author, limits).
        Rejected = "rejected",
    }
    default = Queued;
}

string_enum! {
    /// How much a learning should weigh in the agent's context.
    pub enum Importance {
        /// Nice to know.
        Low = "low",
        /// Worth knowing.
        Medium = "medium",
        /// Must know.
        High = "high",
    }
    default = Medium;
}

/// Who makes a change: the rules for queue entries differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Writer {
    /// A person's client (browser, CLI, bot).
    Client,
    /// The Canopy server (its dispatcher).
    Server,
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Writer::Client => "a client",
            Writer::Server => "the server",
        })
    }
}

impl QueueStatus {
    /// Whether the entry is finished for good. Unknown statuses are not
    /// terminal: a newer peer may still act on them.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Done | Self::Failed | Self::Cancelled | Self::Rejected
        )
    }

    /// Whether `by` may move an entry from `self` to `to`.
    ///
    /// Clients append entries as `queued` and may only withdraw them
    /// (`queued → cancelled`). Everything else belongs to the server:
    /// `queued → dispatched → running → done | failed`, `queued → rejected`,
    /// `queued | dispatched | running → cancelled` (for a running entry, the
    /// server's answer to a cancel request is to abort the run, then record
    /// it), and `dispatched → failed` when the hand-over fails. Setting the
    /// same status again and anything involving an unknown status are
    /// refused, so an older server never overrides a newer peer's state.
    pub fn check_transition(&self, to: &QueueStatus, by: Writer) -> Result<(), TransitionError> {
        use QueueStatus::*;
        let allowed = match by {
            Writer::Client => matches!((self, to), (Queued, Cancelled)),
            Writer::Server => matches!(
                (self, to),
                (Queued, Dispatched | Rejected | Cancelled)
                    | (Dispatched, Running | Failed | Cancelled)
                    | (Running, Done | Failed | Cancelled)
            ),
        };
        if allowed {
            Ok(())
        } else {
            Err(TransitionError {
                from: self.clone(),
                to: to.clone(),
                by,
            })
        }
    }
}

/// Input of [`crate::feature::new_feature_document`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFeature {
    /// `ftr_…`.
    pub feature_id: String,
    /// Title (written as Text).
    pub title: String,
    /// Description (written as Text).
    pub description: String,
    /// Repository, if any.
    pub repo: Option<RepoRef>,
    /// User id of the creator; also recorded as the first participant
    /// (role `owner`).
    pub created_by: String,
    /// The creator's display name.
    pub created_by_name: String,
    /// Unix milliseconds; also the time of the document's first change.
    pub created_at: i64,
}

/// Input of [`crate::feature::add_session`]; the session starts `pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// `ses_…`.
    pub session_id: String,
    /// Title (Text).
    pub title: String,
    /// Scope (Text).
    pub scope: String,
    /// Sessions that must finish first.
    pub depends_on: Vec<String>,
    /// User id.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Input of [`crate::feature::append_queue_entry`]; the entry starts
/// `queued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueEntry {
    /// `q_…`.
    pub id: String,
    /// The session that should run it.
    pub session_id: String,
    /// User id of the author.
    pub author: String,
    /// The prompt (Text).
    pub text: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Input of [`crate::feature::set_queue_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUpdate {
    /// The new status.
    pub status: QueueStatus,
    /// Who makes the change (decides which transitions are allowed).
    pub by: Writer,
    /// Unix milliseconds; becomes `started_at` when the status is `running`
    /// and `finished_at` when it is terminal.
    pub at: i64,
    /// Written as `error` when present.
    pub error: Option<String>,
    /// Written as `commit` when present.
    pub commit: Option<String>,
}

impl QueueUpdate {
    /// A status change with no error and no commit.
    pub fn new(status: QueueStatus, by: Writer, at: i64) -> Self {
        Self {
            status,
            by,
            at,
            error: None,
            commit: None,
        }
    }

    /// Record why the entry failed, was rejected or was cancelled.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Record the workspace commit made after the prompt ran.
    pub fn with_commit(mut self, commit: impl Into<String>) -> Self {
        self.commit = Some(commit.into());
        self
    }
}

/// Input of [`crate::feature::add_learning`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLearning {
    /// `lrn_…`.
    pub id: String,
    /// Text.
    pub text: String,
    /// User id.
    pub author: String,
    /// Session it came from.
    pub from_session: Option<String>,
    /// Weight in the agent's context.
    pub importance: Importance,
    /// Repository-relative paths.
    pub files: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Input of [`crate::feature::add_decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDecision {
    /// `dec_…`.
    pub id: String,
    /// Text: what was decided.
    pub decision: String,
    /// Text: why.
    pub rationale: String,
    /// Text each: what else was considered.
    pub alternatives: Vec<String>,
    /// User id.
    pub author: String,
    /// Session it came from.
    pub from_session: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}
