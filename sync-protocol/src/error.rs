//! Errors of the schema layer and of the ephemeral codec.
//!
//! They are typed so that the server can map each one to a precise answer
//! (an HTTP status, a refused change, a log line) instead of parsing text.

use automerge::{AutomergeError, ChangeHash};

use crate::feature::{QueueStatus, Writer};

/// Why a document could not be read or a change could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The document was written by a newer Canopy. Reading or writing it
    /// with this build could lose or clobber fields it does not know.
    #[error(
        "document schema {found} is newer than this build supports ({supported}); upgrade canopy-protocol"
    )]
    UnsupportedSchema {
        /// The document's `schema` value.
        found: u64,
        /// [`crate::SCHEMA_VERSION`].
        supported: u64,
    },
    /// An id does not have the expected prefix, length or alphabet.
    #[error("{field}: {value:?} is not a valid id")]
    InvalidId {
        /// The field that held the id.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A value is not acceptable for its field (for example an empty path).
    #[error("{field}: {reason}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A write names a session or queue entry the document does not have.
    #[error("{kind} {id} does not exist in this document")]
    NotFound {
        /// `"session"` or `"queue entry"`.
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A write would create something that already exists.
    #[error("{kind} {id} already exists in this document")]
    AlreadyExists {
        /// `"session"`, `"queue entry"`, `"learning"` or `"decision"`.
        kind: &'static str,
        /// The duplicate id.
        id: String,
    },
    /// A queue entry status change that the concurrency rules forbid.
    #[error("queue entry {id}: {source}")]
    Transition {
        /// The queue entry.
        id: String,
        /// The refused transition.
        #[source]
        source: TransitionError,
    },
    /// `read_at` was given heads this document does not contain.
    #[error("the document has no change {0:?}")]
    UnknownHeads(Vec<ChangeHash>),
    /// Automerge refused an operation.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
}

/// A queue status change that the rules in
/// [`QueueStatus::check_transition`] do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{by} may not move a queue entry from {from} to {to}")]
pub struct TransitionError {
    /// The current status.
    pub from: QueueStatus,
    /// The requested status.
    pub to: QueueStatus,
    /// Who asked.
    pub by: Writer,
}

/// Why an ephemeral message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EphemeralError {
    /// The message is larger than [`crate::ephemeral::MAX_MESSAGE_BYTES`].
    #[error("ephemeral message is {len} bytes; the limit is {max}")]
    TooLarge {
        /// The message size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not one well-formed CBOR item.
    #[error("ephemeral message is not valid CBOR: {0}")]
    Cbor(String),
    /// The CBOR item is not a map with a text `type` entry.
    #[error("ephemeral message is not a map with a string `type`")]
    MissingType,
    /// A message of a known type lacks a field or has one of the wrong type.
    #[error("malformed {kind:?} ephemeral message: {reason}")]
    Malformed {
        /// The message type.
        kind: String,
        /// What serde reported.
        reason: String,
    },
    /// Serialization failed (a bug: every known message is serializable).
    #[error("cannot encode ephemeral message: {0}")]
    Encode(String),
    /// [`crate::ephemeral::Ephemeral::Unknown`] only records the type of a
    /// message from a newer peer; there is nothing to re-encode.
    #[error("cannot encode an ephemeral message of unknown type {0:?}")]
    EncodeUnknown(String),
}
