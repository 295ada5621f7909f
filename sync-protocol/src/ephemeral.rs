//! Ephemeral messages: high-frequency state that must not enter document
//! history.
//!
//! Presence, typing indicators, sandbox heartbeats and token-by-token agent
//! output change many times a second and are worthless a minute later;
//! committing them would bloat every replica's history forever. They travel
//! instead as the `data` of automerge-repo `ephemeral` frames (JS:
//! `handle.broadcast(message)`), relayed to the document's other peers and
//! never stored. Only settled results (a finished transcript message, a
//! session status) go into the documents.
//!
//! Each message is one CBOR map with a `type` key and snake_case fields,
//! which is what JS `cbor-x` produces for a plain object. Decoding is
//! forward compatible: a message of a type this build does not know decodes
//! as [`Ephemeral::Unknown`], and unknown fields of known types are ignored.
//!
//! Integers follow JS: `cbor-x` encodes a number that does not fit in 32
//! bits (a `Date.now()` timestamp) as a float64, and decodes a 64-bit CBOR
//! integer as a `BigInt`, which breaks ordinary JS arithmetic. So integer
//! fields accept integral floats, and values beyond 32 bits are encoded as
//! float64, exactly as a JS peer would encode the same number.

use serde::{Deserialize, Serialize};

use crate::error::EphemeralError;
use crate::string_enum::string_enum;

/// Largest encoded message accepted (and produced): 64 KiB. Agent output is
/// streamed in small parts; anything bigger belongs in a document.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The `type`s this build knows.
pub const KNOWN_TYPES: [&str; 5] = ["presence", "typing", "heartbeat", "agent_output", "refused"];

/// One ephemeral message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ephemeral {
    /// Who is here and what they are looking at.
    Presence(Presence),
    /// Someone is typing a prompt for a session (the server may warm a
    /// sandbox on it).
    Typing(Typing),
    /// The sidecar is alive (sent by the sidecar, every few seconds).
    Heartbeat(Heartbeat),
    /// Streamed agent output, before the settled text lands in the
    /// transcript document.
    AgentOutput(AgentOutput),
    /// From the server to one peer: changes it sent were not accepted.
    Refused(Refused),
    /// A message from a newer peer; only its `type` is kept. It cannot be
    /// encoded.
    #[serde(skip)]
    Unknown {
        /// The message's `type`.
        kind: String,
    },
}

/// `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The user.
    pub user_id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Activity.
    pub status: PresenceStatus,
    /// The session the user is looking at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Where in the code the user is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
}

/// A position in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Repository-relative path.
    pub path: String,
    /// 1-based line number.
    #[serde(with = "js_int")]
    pub line: u32,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// The user.
    pub user_id: String,
    /// The session the prompt is for.
    pub session_id: String,
}

/// `heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sidecar's session.
    pub session_id: String,
    /// The sandbox's state as the sidecar sees it: OpenCode `starting`,
    /// `up`, `down` (restarting) or `failed`.
    pub sandbox_state: String,
    /// Unix milliseconds when sent.
    #[serde(with = "js_int")]
    pub at: i64,
    /// Which OpenCode process is running: a new value after every restart,
    /// so a run that began under an earlier one is known to be lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opencode_instance: Option<String>,
    /// How often the sidecar had to restart OpenCode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
}

/// `agent_output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOutput {
    /// The session.
    pub session_id: String,
    /// The transcript message being produced.
    pub message_id: String,
    /// The part of that message.
    pub part_id: String,
    /// What the part is.
    pub kind: OutputKind,
    /// The new text (a delta, appended to the part's earlier deltas).
    pub text: String,
    /// Sequence number per part, from 0, so receivers can order deltas and
    /// notice gaps.
    #[serde(with = "js_int")]
    pub seq: u64,
}

/// `refused`: sent by the server, to the peer whose changes it did not
/// accept. The changes stay in the peer's replica; nobody else receives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Why, for programs: `read_only` (the peer's role is viewer, or
    /// storage is refusing writes).
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

string_enum! {
    /// A user's activity.
    pub enum PresenceStatus {
        /// Interacting now.
        Active = "active",
        /// Tab open, no recent input.
        Idle = "idle",
        /// Tab hidden.
        Away = "away",
        /// The page closed or stopped showing the feature: offline now,
        /// not when the presence expires.
        Left = "left",
    }
    default = Active;
}

string_enum! {
    /// What a streamed part is.
    pub enum OutputKind {
        /// Answer text.
        Text = "text",
        /// Model reasoning.
        Reasoning = "reasoning",
        /// Tool call output.
        Tool = "tool",
    }
    default = Text;
}

impl Ephemeral {
    /// The message's `type`.
    pub fn kind(&self) -> &str {
        match self {
            Self::Presence(_) => "presence",
            Self::Typing(_) => "typing",
            Self::Heartbeat(_) => "heartbeat",
            Self::AgentOutput(_) => "agent_output",
            Self::Refused(_) => "refused",
            Self::Unknown { kind } => kind,
        }
    }

    /// CBOR bytes for the `data` of an `ephemeral` frame.
    ///
    /// # Errors
    /// [`EphemeralError::EncodeUnknown`] for [`Ephemeral::Unknown`] and
    /// [`EphemeralError::TooLarge`] above [`MAX_MESSAGE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EphemeralError> {
        if let Self::Unknown { kind } = self {
            return Err(EphemeralError::EncodeUnknown(kind.clone()));
        }
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).map_err(|e| EphemeralError::Encode(e.to_string()))?;
        check_size(out.len())?;
        Ok(out)
    }

    /// Decode the `data` of an `ephemeral` frame.
    ///
    /// # Errors
    /// [`EphemeralError::TooLarge`] above [`MAX_MESSAGE_BYTES`] (checked
    /// before parsing), [`EphemeralError::Cbor`] for bytes that are not
    /// exactly one CBOR item, [`EphemeralError::MissingType`] if it is not
    /// a map with a text `type`, and [`EphemeralError::Malformed`] for a
    /// known type with missing or ill-typed fields.
    pub fn decode(bytes: &[u8]) -> Result<Self, EphemeralError> {
        check_size(bytes.len())?;
        let mut rest = bytes;
        let value: ciborium::Value =
            ciborium::from_reader(&mut rest).map_err(|e| EphemeralError::Cbor(e.to_string()))?;
        if !rest.is_empty() {
            return Err(EphemeralError::Cbor(format!(
                "{} trailing bytes after the message",
                rest.len()
            )));
        }
        let kind = value
            .as_map()
            .and_then(|entries| {
                entries
                    .iter()
                    .find(|(k, _)| k.as_text() == Some("type"))
                    .and_then(|(_, v)| v.as_text())
            })
            .ok_or(EphemeralError::MissingType)?;
        if !KNOWN_TYPES.contains(&kind) {
            return Ok(Self::Unknown {
                kind: kind.to_owned(),
            });
        }
        value.deserialized().map_err(|e| EphemeralError::Malformed {
            kind: kind.to_owned(),
            reason: e.to_string(),
        })
    }
}

fn check_size(len: usize) -> Result<(), EphemeralError> {
    if len > MAX_MESSAGE_BYTES {
        return Err(EphemeralError::TooLarge {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// Serde adapter for integer fields shared with JS peers (see the module
/// docs): 32-bit values as CBOR integers, larger ones as float64 (exact up
/// to 2^53, JS's own limit); integral floats accepted on input.
mod js_int {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// 2^53: beyond it a float64 (and a JS number) is no longer exact.
    const MAX_EXACT: i64 = 1 << 53;

    pub(super) fn serialize<S, T>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Copy + TryInto<i64>,
    {
        let n: i64 = (*value)
            .try_into()
            .ok()
            .filter(|n| n.abs() <= MAX_EXACT)
            .ok_or_else(|| {
                serde::ser::Error::custom("integer is beyond what a JS number holds exactly")
            })?;
        if i64::from(i32::MIN) <= n && n <= i64::from(u32::MAX) {
            serializer.serialize_i64(n)
        } else {
            // Exact: |n| <= 2^53.
            serializer.serialize_f64(n as f64)
        }
    }

    pub(super) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64>,
    {
        let n = deserializer.deserialize_any(IntVisitor)?;
        T::try_from(n).map_err(|_| de::Error::custom(format!("{n} is out of range")))
    }

    struct IntVisitor;

    impl Visitor<'_> for IntVisitor {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer, or a float with an integral value")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() <= MAX_EXACT as f64 {
                // Exact: integral and within 2^53.
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
    }
}
