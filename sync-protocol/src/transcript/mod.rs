//! The Transcript document, schema 1: what one session's agent did.
//!
//! Each agent session has one Transcript document, separate from the
//! Feature document so that clients sync it only when they open the
//! session. The server's dispatcher follows OpenCode's event stream and is
//! the only writer; every client renders it:
//!
//! ```text
//! { schema: 1, session_id, feature_id,
//!   messages: [ { id, role, author?, queue_entry?, created_at,
//!                 parts: [ { id, type, text?, tool?, state?, input?,
//!                            output?, error?, truncated? } ],
//!                 finish?, error?, usage? } ] }
//! ```
//!
//! [`new_transcript_document`] creates one; [`upsert_message`] and
//! [`upsert_part`] write what the agent does, keeping messages and parts
//! sorted by OpenCode's ids and writing nothing when nothing changed (so a
//! reconcile that re-upserts everything commits no change); [`read`],
//! [`read_at`], [`message_ids`], [`find_message`] and [`find_part`] read it
//! back as leniently as the Feature readers. `sync-protocol/README.md`
//! documents the layout field by field.
//!
//! ```
//! use canopy_protocol::{ChangeMeta, ids, transcript};
//! use canopy_protocol::transcript::{MessageUpsert, PartKind, PartUpsert, Role, ToolState};
//!
//! let mut doc = transcript::new_transcript_document(&transcript::NewTranscript {
//!     session_id: ids::new_session_id(),
//!     feature_id: ids::new_feature_id(),
//! })?;
//! doc.transact_with(
//!     |_| ChangeMeta::now("agent message msg_002").commit_options(),
//!     |tx| {
//!         transcript::upsert_message(tx, &MessageUpsert {
//!             id: "msg_002".into(),
//!             role: Role::Assistant,
//!             created_at: 1_763_000_000_000,
//!             ..MessageUpsert::default()
//!         })?;
//!         transcript::upsert_part(tx, "msg_002", &PartUpsert {
//!             id: "prt_001".into(),
//!             kind: PartKind::Tool,
//!             tool: Some("bash".into()),
//!             state: Some(ToolState::Completed),
//!             input: Some(r#"{"command":"cargo test"}"#.into()),
//!             output: Some("test result: ok".into()),
//!             ..PartUpsert::default()
//!         })
//!     },
//! )
//! .map_err(|failure| failure.error)?;
//!
//! // The prompt that started it arrives late: it still lands first.
//! doc.transact_with(
//!     |_| ChangeMeta::now("user message msg_001").commit_options(),
//!     |tx| {
//!         transcript::upsert_message(tx, &MessageUpsert {
//!             id: "msg_001".into(),
//!             role: Role::User,
//!             author: Some("alice".into()),
//!             created_at: 1_762_999_999_000,
//!             ..MessageUpsert::default()
//!         })
//!     },
//! )
//! .map_err(|failure| failure.error)?;
//!
//! let read = transcript::read(&doc)?;
//! assert_eq!(transcript::message_ids(&doc), ["msg_001", "msg_002"]);
//! assert_eq!(read.messages[1].parts[0].output.as_deref(), Some("test result: ok"));
//! # Ok::<(), canopy_protocol::SchemaError>(())
//! ```

mod read;
mod types;
mod write;

/// The Transcript document schema this crate reads and writes (the root
/// key `schema`; versioned separately from the Feature document's
/// [`crate::SCHEMA_VERSION`]).
pub const SCHEMA_VERSION: u64 = 1;

pub use read::{find_message, find_part, message_ids, read, read_at, total_usage};
pub use types::{
    Message, MessageUpsert, NewTranscript, Part, PartKind, PartUpsert, Role, ToolState,
    TranscriptDoc, Usage,
};
pub use write::{
    MAX_ID_BYTES, MAX_OUTPUT_CHARS, MAX_TEXT_BYTES, is_valid_transcript_id,
    new_transcript_document, truncate_output, upsert_message, upsert_part,
};
