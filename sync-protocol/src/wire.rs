//! The automerge-repo protocol v1 envelope, as Canopy reads and writes it.
//!
//! Every frame on `/sync` is one binary WebSocket message holding one CBOR
//! map. samod parses frames itself; the server's gateway parses the
//! *envelope* first so that it can refuse malformed or hostile input with a
//! precise error before it reaches samod, answer requests for documents that
//! do not exist without creating state for them, count traffic by message
//! type, and find the heads a `sync` message announces (the durability
//! barrier). The decoder borrows from the frame and never allocates for the
//! payload.

use automerge::ChangeHash;
use minicbor::data::Type;

/// The only protocol version automerge-repo (and samod) speak.
pub const PROTOCOL_VERSION: &str = "1";

/// A document id as it appears on the wire: automerge-repo sends the bs58check
/// string; samod also accepts the raw 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireDocumentId<'a> {
    /// bs58check-encoded UUID (what JS clients send).
    Str(&'a str),
    /// The raw UUID bytes.
    Bytes(&'a [u8]),
}

/// The message types of automerge-repo protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Client → server handshake.
    Join,
    /// Server → client handshake answer.
    Peer,
    /// First sync message for a document; asks for `doc-unavailable` if the
    /// receiver does not have it.
    Request,
    /// An automerge sync message.
    Sync,
    /// The sender does not have (or will not share) the document.
    DocUnavailable,
    /// Opaque application payload relayed to the document's other peers.
    Ephemeral,
    /// Graceful goodbye.
    Leave,
    /// Protocol error; the sender closes afterwards.
    Error,
    /// Storage-id subscription changes (remote heads gossip).
    RemoteSubscriptionChange,
    /// Remote heads gossip.
    RemoteHeadsChanged,
}

impl MessageType {
    /// Every message type, for metrics labels.
    pub const ALL: [MessageType; 10] = [
        Self::Join,
        Self::Peer,
        Self::Request,
        Self::Sync,
        Self::DocUnavailable,
        Self::Ephemeral,
        Self::Leave,
        Self::Error,
        Self::RemoteSubscriptionChange,
        Self::RemoteHeadsChanged,
    ];

    /// The `type` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Peer => "peer",
            Self::Request => "request",
            Self::Sync => "sync",
            Self::DocUnavailable => "doc-unavailable",
            Self::Ephemeral => "ephemeral",
            Self::Leave => "leave",
            Self::Error => "error",
            Self::RemoteSubscriptionChange => "remote-subscription-change",
            Self::RemoteHeadsChanged => "remote-heads-changed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the message must name a document.
    pub fn needs_document(self) -> bool {
        matches!(
            self,
            Self::Request | Self::Sync | Self::DocUnavailable | Self::Ephemeral
        )
    }
}

/// The fields of a frame the server looks at. Everything else is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The message type.
    pub kind: MessageType,
    /// `senderId`.
    pub sender_id: Option<&'a str>,
    /// `targetId`.
    pub target_id: Option<&'a str>,
    /// `documentId`.
    pub document_id: Option<WireDocumentId<'a>>,
    /// `data` (sync message bytes or ephemeral payload).
    pub data: Option<&'a [u8]>,
    /// `supportedProtocolVersions` (join only).
    pub supported_protocol_versions: Vec<&'a str>,
    /// `message` (error only).
    pub message: Option<&'a str>,
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Not well-formed CBOR, or trailing bytes after the map.
    #[error("frame is not valid CBOR: {0}")]
    Cbor(String),
    /// Valid CBOR, but not a map.
    #[error("frame must be a CBOR map, found {0}")]
    NotAMap(String),
    /// The map has no `type` string.
    #[error("message has no \"type\" field")]
    MissingType,
    /// `type` names no protocol v1 message.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field the type requires is absent.
    #[error("{kind} message is missing the {field:?} field")]
    MissingField {
        /// The message type.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A known field has the wrong CBOR type.
    #[error("field {field:?} has the wrong type: expected {expected}, found {found}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What the protocol says.
        expected: &'static str,
        /// What arrived.
        found: String,
    },
    /// An automerge sync message whose header cannot be read.
    #[error("malformed automerge sync message: {0}")]
    BadSyncMessage(&'static str),
}

impl From<minicbor::decode::Error> for WireError {
    fn from(e: minicbor::decode::Error) -> Self {
        WireError::Cbor(e.to_string())
    }
}

/// Largest number of entries we accept in one CBOR map or array of the
/// envelope; real messages have fewer than ten.
const MAX_ENVELOPE_ENTRIES: u64 = 64;

fn type_name(t: Type) -> String {
    format!("{t:?}").to_lowercase()
}

fn expect_str<'a>(
    d: &mut minicbor::Decoder<'a>,
    field: &'static str,
) -> Result<&'a str, WireError> {
    match d.datatype()? {
        Type::String => Ok(d.str()?),
        other => Err(WireError::WrongType {
            field,
            expected: "text string",
            found: type_name(other),
        }),
    }
}

fn expect_bytes<'a>(
    d: &mut minicbor::Decoder<'a>,
    field: &'static str,
) -> Result<&'a [u8], WireError> {
    match d.datatype()? {
        Type::Bytes => Ok(d.bytes()?),
        other => Err(WireError::WrongType {
            field,
            expected: "byte string",
            found: type_name(other),
        }),
    }
}

/// Decode the envelope of one frame.
///
/// Strict about the shape of the fields the protocol defines (a `senderId`
/// that is a number is an error, not a silently ignored field), lenient about
/// extra fields, which it skips.
pub fn decode_envelope(frame: &[u8]) -> Result<Envelope<'_>, WireError> {
    let mut d = minicbor::Decoder::new(frame);
    let len = match d.datatype()? {
        Type::Map => d.map()?,
        Type::MapIndef => d.map()?,
        other => return Err(WireError::NotAMap(type_name(other))),
    };
    if let Some(n) = len
        && n > MAX_ENVELOPE_ENTRIES
    {
        return Err(WireError::Cbor(format!("map with {n} entries")));
    }

    let mut kind = None;
    let mut env = Envelope {
        kind: MessageType::Error,
        sender_id: None,
        target_id: None,
        document_id: None,
        data: None,
        supported_protocol_versions: Vec::new(),
        message: None,
    };
    let mut seen = 0u64;
    loop {
        match len {
            Some(n) if seen == n => break,
            None if d.datatype()? == Type::Break => {
                d.skip()?;
                break;
            }
            _ => {}
        }
        seen += 1;
        if seen > MAX_ENVELOPE_ENTRIES {
            return Err(WireError::Cbor("map has too many entries".into()));
        }
        if d.datatype()? != Type::String {
            // Non-string keys are not part of the protocol; skip key and value.
            d.skip()?;
            d.skip()?;
            continue;
        }
        match d.str()? {
            "type" => {
                let t = expect_str(&mut d, "type")?;
                kind = Some(
                    MessageType::parse(t).ok_or_else(|| WireError::UnknownType(t.to_owned()))?,
                );
            }
            "senderId" => env.sender_id = Some(expect_str(&mut d, "senderId")?),
            "targetId" => env.target_id = Some(expect_str(&mut d, "targetId")?),
            "documentId" => {
                env.document_id = Some(match d.datatype()? {
                    Type::String => WireDocumentId::Str(d.str()?),
                    Type::Bytes => WireDocumentId::Bytes(d.bytes()?),
                    other => {
                        return Err(WireError::WrongType {
                            field: "documentId",
                            expected: "text or byte string",
                            found: type_name(other),
                        });
                    }
                })
            }
            "data" => env.data = Some(expect_bytes(&mut d, "data")?),
            "message" => env.message = Some(expect_str(&mut d, "message")?),
            "supportedProtocolVersions" => {
                let n = match d.datatype()? {
                    Type::Array | Type::ArrayIndef => d.array()?,
                    other => {
                        return Err(WireError::WrongType {
                            field: "supportedProtocolVersions",
                            expected: "array of text strings",
                            found: type_name(other),
                        });
                    }
                };
                let mut i = 0u64;
                loop {
                    match n {
                        Some(n) if i == n => break,
                        None if d.datatype()? == Type::Break => {
                            d.skip()?;
                            break;
                        }
                        _ => {}
                    }
                    i += 1;
                    if i > MAX_ENVELOPE_ENTRIES {
                        return Err(WireError::Cbor("too many protocol versions".into()));
                    }
                    env.supported_protocol_versions
                        .push(expect_str(&mut d, "supportedProtocolVersions")?);
                }
            }
            _ => d.skip()?,
        }
    }
    if d.position() != frame.len() {
        return Err(WireError::Cbor(format!(
            "{} trailing bytes after the message",
            frame.len() - d.position()
        )));
    }
    env.kind = kind.ok_or(WireError::MissingType)?;
    env.validate()?;
    Ok(env)
}

impl Envelope<'_> {
    fn validate(&self) -> Result<(), WireError> {
        let kind = self.kind.as_str();
        let need = |present: bool, field: &'static str| {
            if present {
                Ok(())
            } else {
                Err(WireError::MissingField { kind, field })
            }
        };
        match self.kind {
            MessageType::Join => {
                need(self.sender_id.is_some(), "senderId")?;
                need(
                    !self.supported_protocol_versions.is_empty(),
                    "supportedProtocolVersions",
                )?;
            }
            MessageType::Request | MessageType::Sync => {
                need(self.sender_id.is_some(), "senderId")?;
                need(self.target_id.is_some(), "targetId")?;
                need(self.document_id.is_some(), "documentId")?;
                need(self.data.is_some(), "data")?;
            }
            MessageType::Ephemeral => {
                need(self.target_id.is_some(), "targetId")?;
                need(self.document_id.is_some(), "documentId")?;
                need(self.data.is_some(), "data")?;
            }
            MessageType::DocUnavailable => {
                need(self.sender_id.is_some(), "senderId")?;
                need(self.target_id.is_some(), "targetId")?;
                need(self.document_id.is_some(), "documentId")?;
            }
            MessageType::Peer => {
                need(self.sender_id.is_some(), "senderId")?;
                need(self.target_id.is_some(), "targetId")?;
            }
            MessageType::Leave => need(self.sender_id.is_some(), "senderId")?,
            MessageType::Error
            | MessageType::RemoteSubscriptionChange
            | MessageType::RemoteHeadsChanged => {}
        }
        Ok(())
    }

    /// Whether a `join` offers the protocol version we speak.
    pub fn offers_supported_version(&self) -> bool {
        self.supported_protocol_versions.contains(&PROTOCOL_VERSION)
    }
}

/// Encode `{type: "error", message}`: the protocol's way to say why we close.
pub fn encode_error(message: &str) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = e
        .map(2)
        .and_then(|e| e.str("type")?.str("error")?.str("message")?.str(message));
    e.into_writer()
}

/// Encode `{type: "doc-unavailable", senderId, targetId, documentId}`.
pub fn encode_doc_unavailable(sender_id: &str, target_id: &str, document_id: &str) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let _ = e.map(4).and_then(|e| {
        e.str("type")?
            .str("doc-unavailable")?
            .str("senderId")?
            .str(sender_id)?
            .str("targetId")?
            .str(target_id)?
            .str("documentId")?
            .str(document_id)
    });
    e.into_writer()
}

/// Encode a client `join`. Used by tests and tools that speak the protocol
/// by hand.
pub fn encode_join(sender_id: &str, versions: &[&str]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let _ = e.map(4).and_then(|e| {
        e.str("type")?
            .str("join")?
            .str("senderId")?
            .str(sender_id)?
            .str("supportedProtocolVersions")?
            .array(versions.len() as u64)?;
        for v in versions {
            e.str(v)?;
        }
        e.str("peerMetadata")?
            .map(1)?
            .str("isEphemeral")?
            .bool(true)?;
        Ok(())
    });
    e.into_writer()
}

/// Encode a `request` or `sync` message. Used by tests and tools.
pub fn encode_sync(
    kind: MessageType,
    sender_id: &str,
    target_id: &str,
    document_id: &str,
    data: &[u8],
) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let _ = e.map(5).and_then(|e| {
        e.str("type")?
            .str(kind.as_str())?
            .str("senderId")?
            .str(sender_id)?
            .str("targetId")?
            .str(target_id)?
            .str("documentId")?
            .str(document_id)?
            .str("data")?
            .bytes(data)
    });
    e.into_writer()
}

/// Encode an `ephemeral` message. Used by tests and tools.
pub fn encode_ephemeral(
    sender_id: &str,
    target_id: &str,
    document_id: &str,
    session_id: &str,
    count: u64,
    data: &[u8],
) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let _ = e.map(7).and_then(|e| {
        e.str("type")?
            .str("ephemeral")?
            .str("senderId")?
            .str(sender_id)?
            .str("targetId")?
            .str(target_id)?
            .str("documentId")?
            .str(document_id)?
            .str("sessionId")?
            .str(session_id)?
            .str("count")?
            .u64(count)?
            .str("data")?
            .bytes(data)
    });
    e.into_writer()
}

fn read_uleb(bytes: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or(WireError::BadSyncMessage("truncated length"))?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::BadSyncMessage("length overflows 64 bits"))
}

/// The heads an automerge sync message announces.
///
/// A sync message starts with a version byte (0x42 or 0x43) followed by the
/// sender's heads as a LEB128 count and 32-byte hashes. Announcing heads is
/// what tells a peer that we hold its changes, so the server holds an
/// outgoing message until these heads are durable.
pub fn sync_message_heads(data: &[u8]) -> Result<Vec<ChangeHash>, WireError> {
    match data.first() {
        Some(0x42 | 0x43) => {}
        Some(_) => return Err(WireError::BadSyncMessage("unknown version byte")),
        None => return Err(WireError::BadSyncMessage("empty")),
    }
    let mut pos = 1;
    let count = read_uleb(data, &mut pos)?;
    let count = usize::try_from(count).map_err(|_| WireError::BadSyncMessage("head count"))?;
    let end = count
        .checked_mul(32)
        .and_then(|n| n.checked_add(pos))
        .ok_or(WireError::BadSyncMessage("head count"))?;
    if end > data.len() {
        return Err(WireError::BadSyncMessage("truncated heads"));
    }
    data[pos..end]
        .chunks_exact(32)
        .map(|c| ChangeHash::try_from(c).map_err(|_| WireError::BadSyncMessage("bad change hash")))
        .collect()
}

/// Heads recorded in the header of a saved automerge document (`save()`
/// output): magic, checksum, chunk type 0, length, actors, then heads.
///
/// Reading the header is enough to learn which changes a snapshot makes
/// durable, without loading the document.
pub fn saved_document_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, WireError> {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return Err(WireError::BadSyncMessage("not an automerge document"));
    }
    if bytes[8] != 0 {
        return Err(WireError::BadSyncMessage(
            "first chunk is not a document chunk",
        ));
    }
    let mut pos = 9;
    let _chunk_len = read_uleb(bytes, &mut pos)?;
    let actors = read_uleb(bytes, &mut pos)?;
    for _ in 0..actors {
        let len = read_uleb(bytes, &mut pos)?;
        pos = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|p| *p <= bytes.len())
            .ok_or(WireError::BadSyncMessage("truncated actor"))?;
    }
    let count = read_uleb(bytes, &mut pos)?;
    let count = usize::try_from(count).map_err(|_| WireError::BadSyncMessage("head count"))?;
    let end = count
        .checked_mul(32)
        .and_then(|n| n.checked_add(pos))
        .filter(|e| *e <= bytes.len())
        .ok_or(WireError::BadSyncMessage("truncated heads"))?;
    bytes[pos..end]
        .chunks_exact(32)
        .map(|c| ChangeHash::try_from(c).map_err(|_| WireError::BadSyncMessage("bad change hash")))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use automerge::{Automerge, ROOT, transaction::Transactable};

    #[test]
    fn join_round_trips() {
        let frame = encode_join("peer-a", &["1"]);
        let env = decode_envelope(&frame).unwrap();
        assert_eq!(env.kind, MessageType::Join);
        assert_eq!(env.sender_id, Some("peer-a"));
        assert!(env.offers_supported_version());
        let old = encode_join("peer-a", &["0"]);
        assert!(!decode_envelope(&old).unwrap().offers_supported_version());
    }

    #[test]
    fn sync_round_trips() {
        let frame = encode_sync(MessageType::Sync, "a", "b", "doc", b"\x42\x00");
        let env = decode_envelope(&frame).unwrap();
        assert_eq!(env.kind, MessageType::Sync);
        assert_eq!(env.document_id, Some(WireDocumentId::Str("doc")));
        assert_eq!(env.data, Some(&b"\x42\x00"[..]));
    }

    #[test]
    fn refuses_bad_shapes() {
        assert!(matches!(
            decode_envelope(b"\xff\x00garbage"),
            Err(WireError::Cbor(_)) | Err(WireError::NotAMap(_))
        ));
        // An array, not a map.
        assert!(matches!(
            decode_envelope(&[0x82, 0x01, 0x02]),
            Err(WireError::NotAMap(_))
        ));
        // {"type": 7}
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(1).unwrap().str("type").unwrap().u8(7).unwrap();
        assert!(matches!(
            decode_envelope(e.writer()),
            Err(WireError::WrongType { field: "type", .. })
        ));
        // {"type": "sync"} without the rest
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(1).unwrap().str("type").unwrap().str("sync").unwrap();
        assert!(matches!(
            decode_envelope(e.writer()),
            Err(WireError::MissingField { .. })
        ));
        // {"type": "launch-missiles"}
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(1)
            .unwrap()
            .str("type")
            .unwrap()
            .str("launch")
            .unwrap();
        assert!(matches!(
            decode_envelope(e.writer()),
            Err(WireError::UnknownType(_))
        ));
        // trailing bytes
        let mut frame = encode_join("a", &["1"]);
        frame.push(0);
        assert!(matches!(decode_envelope(&frame), Err(WireError::Cbor(_))));
        // truncated
        let frame = encode_join("a", &["1"]);
        assert!(decode_envelope(&frame[..frame.len() - 3]).is_err());
    }

    #[test]
    fn error_and_unavailable_decode() {
        let frame = encode_error("nope");
        let env = decode_envelope(&frame).unwrap();
        assert_eq!(env.kind, MessageType::Error);
        assert_eq!(env.message, Some("nope"));
        let frame = encode_doc_unavailable("s", "t", "d");
        let env = decode_envelope(&frame).unwrap();
        assert_eq!(env.kind, MessageType::DocUnavailable);
    }

    #[test]
    fn reads_heads_of_real_sync_messages_and_documents() {
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "a", 1)?;
            Ok(())
        })
        .unwrap();
        let mut other = doc.fork();
        other
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, "b", 2)?;
                Ok(())
            })
            .unwrap();
        doc.merge(&mut other.clone()).unwrap();
        let heads = doc.get_heads();

        use automerge::sync::SyncDoc;
        let mut state = automerge::sync::State::new();
        let msg = doc.generate_sync_message(&mut state).unwrap();
        assert_eq!(sync_message_heads(&msg.encode()).unwrap(), heads);

        assert_eq!(saved_document_heads(&doc.save()).unwrap(), heads);
        assert_eq!(
            saved_document_heads(&other.save()).unwrap(),
            other.get_heads()
        );
        assert!(saved_document_heads(b"nope").is_err());
        assert!(sync_message_heads(&[0x42, 0x05, 0x00]).is_err());
        assert!(sync_message_heads(&[]).is_err());
    }
}
