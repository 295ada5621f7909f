//! The typed Transcript document (schema 1) and the inputs of its writers.
//!
//! Field names are the document's keys (a part's kind is `type`), and serde
//! uses the same names, so the JSON the server returns has the shape of the
//! document itself. Absent optional fields are left out of that JSON.

use serde::{Deserialize, Serialize};

pub use crate::feature::Usage;
use crate::string_enum::string_enum;

/// A whole Transcript document: what one session's agent did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscriptDoc {
    /// Transcript schema version ([`crate::transcript::SCHEMA_VERSION`]).
    pub schema: u64,
    /// `ses_…`: the session this transcript belongs to.
    pub session_id: String,
    /// `ftr_…`: the feature of that session.
    pub feature_id: String,
    /// Messages, in document order (sorted by id, which the writers keep).
    pub messages: Vec<Message>,
}

/// One message of the conversation: a prompt or the agent's answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// OpenCode's message id (`msg_…`); ids sort in creation order.
    pub id: String,
    /// Who speaks.
    pub role: Role,
    /// User message: the Canopy user id who queued the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// User message: the feature queue entry (`q_…`) it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_entry: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The message's parts, sorted by id.
    pub parts: Vec<Part>,
    /// Assistant message: why the model stopped (`"tool-calls"`, `"stop"`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
    /// Assistant message: the provider's error message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Assistant message: tokens and cost of this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One part of a message: prose, reasoning, a tool call or a step marker.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Part {
    /// OpenCode's part id (`prt_…`); ids sort in creation order.
    pub id: String,
    /// What the part is (the document key is `type`).
    #[serde(rename = "type")]
    pub kind: PartKind,
    /// Text and reasoning parts: the settled text (Text); step parts: an
    /// optional short label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Tool parts: the tool's name (`write`, `bash`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Tool parts: where the call is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ToolState>,
    /// Tool parts: the tool input, as a JSON string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Tool parts: the output, at most
    /// [`MAX_OUTPUT_CHARS`](crate::transcript::MAX_OUTPUT_CHARS) characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Tool parts: why the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether `output` was cut; the server keeps the full output elsewhere.
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

string_enum! {
    /// Who speaks in a message.
    pub enum Role {
        /// A person's prompt.
        User = "user",
        /// The agent's answer.
        Assistant = "assistant",
    }
    default = Assistant;
}

string_enum! {
    /// What a part is.
    pub enum PartKind {
        /// Prose for the reader (`text` is Text).
        Text = "text",
        /// The model's reasoning (`text` is Text).
        Reasoning = "reasoning",
        /// A tool call (`tool`, `state`, `input`, `output`, `error`).
        Tool = "tool",
        /// A step boundary (OpenCode's step-start/step-finish collapsed);
        /// `text` may hold a short label.
        Step = "step",
    }
    default = Text;
}

string_enum! {
    /// Where a tool call is.
    pub enum ToolState {
        /// Announced, not started.
        Pending = "pending",
        /// Running.
        Running = "running",
        /// Finished; `output` holds the result.
        Completed = "completed",
        /// Failed; `error` says why.
        Error = "error",
    }
    default = Pending;
}

impl ToolState {
    /// Whether the call is over (`completed` or `error`). Unknown states are
    /// not terminal.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Error)
    }
}

/// Input of [`crate::transcript::new_transcript_document`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTranscript {
    /// `ses_…`.
    pub session_id: String,
    /// `ftr_…`.
    pub feature_id: String,
}

/// Input of [`crate::transcript::upsert_message`]. `None` fields leave the
/// stored value alone (and are not written for a new message).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageUpsert {
    /// OpenCode's message id (`msg_…`).
    pub id: String,
    /// Who speaks.
    pub role: Role,
    /// User message: the Canopy user id who queued the prompt.
    pub author: Option<String>,
    /// User message: the queue entry id (`q_…`).
    pub queue_entry: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Assistant message: why the model stopped.
    pub finish: Option<String>,
    /// Assistant message: the provider's error message.
    pub error: Option<String>,
    /// Assistant message: tokens and cost.
    pub usage: Option<Usage>,
}

/// Input of [`crate::transcript::upsert_part`]. `None` fields leave the
/// stored value alone (and are not written for a new part).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartUpsert {
    /// OpenCode's part id (`prt_…`).
    pub id: String,
    /// What the part is.
    pub kind: PartKind,
    /// The settled text (written as Text, edited with `update_text`).
    pub text: Option<String>,
    /// Tool name.
    pub tool: Option<String>,
    /// Tool state.
    pub state: Option<ToolState>,
    /// Tool input as a JSON string.
    pub input: Option<String>,
    /// Tool output in full; the writer stores at most
    /// [`MAX_OUTPUT_CHARS`](crate::transcript::MAX_OUTPUT_CHARS) characters
    /// and sets `truncated`.
    pub output: Option<String>,
    /// Tool error.
    pub error: Option<String>,
}
