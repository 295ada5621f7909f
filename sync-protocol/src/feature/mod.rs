//! The Feature document, schema 1: typed values, readers and writers.
//!
//! One Feature is one Automerge document shared by every person and agent
//! working on it. This module is a thin typed layer over Automerge (no
//! reconciliation framework): [`read`] hydrates a [`FeatureDoc`], partial
//! readers such as [`read_session`] and [`find_queue_entry`] serve hot
//! paths, and one writer per kind of edit (for example
//! [`append_queue_entry`], [`set_queue_status`], [`splice_notes`]) produces
//! exactly the representation the protocol specifies, which
//! `sync-protocol/README.md` documents field by field.
//!
//! ```
//! use canopy_protocol::{ChangeMeta, feature, ids, unix_ms_now};
//!
//! let mut doc = feature::new_feature_document(&feature::NewFeature {
//!     feature_id: ids::new_feature_id(),
//!     title: "Add OAuth login".into(),
//!     description: String::new(),
//!     repo: None,
//!     created_by: "alice".into(),
//!     created_by_name: "Alice".into(),
//!     created_at: unix_ms_now(),
//! })?;
//! let session_id = ids::new_session_id();
//! doc.transact_with(
//!     |_| ChangeMeta::now("add session").commit_options(),
//!     |tx| {
//!         feature::add_session(tx, &feature::NewSession {
//!             session_id: session_id.clone(),
//!             title: "Implement the provider".into(),
//!             scope: String::new(),
//!             depends_on: vec![],
//!             created_by: "alice".into(),
//!             created_at: unix_ms_now(),
//!         })
//!     },
//! )
//! .map_err(|failure| failure.error)?;
//! let read = feature::read(&doc)?;
//! assert_eq!(read.sessions[&session_id].title, "Implement the provider");
//! # Ok::<(), canopy_protocol::SchemaError>(())
//! ```

mod read;
mod types;
pub(crate) mod write;

pub use read::{
    decisions_len, find_queue_entry, learnings_len, next_queued, open_queue_entries_with_objects,
    queue_entries_with_objects, queue_len, read, read_at, read_repo, read_session, read_summary,
    session_ids, unfinished_queue_entries, unfinished_queue_entries_by,
};
pub use types::{
    Decision, FeatureDoc, FeatureStatus, Importance, KeyFile, Learning, NewDecision, NewFeature,
    NewLearning, NewQueueEntry, NewSession, Participant, PullRequest, QueueEntry, QueueStatus,
    QueueUpdate, RepoRef, Sandbox, Session, SessionStatus, Usage, Writer,
};
pub use write::{
    MAX_PATH_BYTES, OWNER_ROLE, add_decision, add_learning, add_session, append_queue_entry,
    mark_key_file, new_feature_document, record_commit, remove_participant, set_description,
    set_notes, set_participant, set_queue_commit, set_queue_status, set_repo,
    set_session_files_changed, set_session_pr, set_session_sandbox, set_session_status,
    set_session_transcript, set_session_usage, set_status, set_title, splice_notes,
    unmark_key_file,
};
