//! Writers: the constructor, and two upserts generic over [`Transactable`]
//! (they run inside `Automerge::transact_with`, the server's way through
//! samod, and on an `AutoCommit` alike).
//!
//! Only the server writes transcripts, following OpenCode's event stream,
//! and it may replay the same events (after a reconnect, or a reconcile that
//! re-upserts everything). So the upserts are:
//!
//! - **sorted**: a message or part whose id is new is inserted at its
//!   position in ASCII order of ids (OpenCode's ids sort in creation order),
//!   so learning late about an earlier message cannot misorder the list;
//! - **idempotent and minimal**: a field is written only if its value
//!   differs (by meaning: a scalar string equal to the wanted value, or an
//!   `Int` where a float of the same value is stored, is left alone), and
//!   Text is edited with `update_text`, so writing the same values again
//!   adds no operation, and an empty transaction commits no change;
//! - **validated first**: inputs are checked before anything is written, so
//!   a refused upsert leaves the transaction untouched.
//!
//! Layout conventions are the Feature document's: prose (`text`) is Text;
//! machine values (ids, roles, kinds, states, tool names, inputs, outputs,
//! errors) are scalar strings; times and token counts are `Int`, cost is
//! `F64`.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

use super::SCHEMA_VERSION;
use super::read::check_root;
use super::types::{MessageUpsert, NewTranscript, PartUpsert, Usage};
use crate::change::ChangeMeta;
use crate::error::SchemaError;
use crate::feature::write::ensure_object;
use crate::ids;
use crate::value::DocView;

/// Longest tool output stored in a part, in characters (Unicode scalar
/// values); longer outputs are cut and the part is marked `truncated`.
pub const MAX_OUTPUT_CHARS: usize = 4000;

/// Largest `text`, `tool`, `input`, `finish` or `error` the writers accept,
/// in bytes (1 MiB). The server truncates long values before writing.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// Longest message or part id, in bytes.
pub const MAX_ID_BYTES: usize = 200;

/// Whether `id` can be a message or part id: 1 to [`MAX_ID_BYTES`] bytes of
/// ASCII letters, digits, `_` and `-` (OpenCode's `msg_…`, `prt_…`).
pub fn is_valid_transcript_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `output` cut to its first [`MAX_OUTPUT_CHARS`] characters, and whether
/// anything was cut. Never splits a character.
pub fn truncate_output(output: &str) -> (&str, bool) {
    match output.char_indices().nth(MAX_OUTPUT_CHARS) {
        Some((end, _)) => (&output[..end], true),
        None => (output, false),
    }
}

/// A new, empty schema-1 transcript for `new.session_id`, committed as one
/// change with the message `create transcript <session id>` and the current
/// time: `{ schema: 1, session_id, feature_id, messages: [] }`.
///
/// # Errors
/// [`SchemaError::InvalidId`] for a malformed session (`ses_…`) or feature
/// (`ftr_…`) id.
pub fn new_transcript_document(new: &NewTranscript) -> Result<Automerge, SchemaError> {
    check_prefixed("session_id", ids::SESSION_PREFIX, &new.session_id)?;
    check_prefixed("feature_id", ids::FEATURE_PREFIX, &new.feature_id)?;
    let meta = ChangeMeta::now(format!("create transcript {}", new.session_id));
    let mut doc = Automerge::new();
    doc.transact_with(
        |_| meta.commit_options(),
        |tx| {
            tx.put(ROOT, "schema", int(SCHEMA_VERSION))?;
            tx.put(ROOT, "session_id", new.session_id.as_str())?;
            tx.put(ROOT, "feature_id", new.feature_id.as_str())?;
            tx.put_object(ROOT, "messages", ObjType::List)?;
            Ok::<(), SchemaError>(())
        },
    )
    .map_err(|failure| failure.error)?;
    Ok(doc)
}

/// Create message `message.id` at its sorted position (with an empty
/// `parts` list), or update the fields of the existing one that differ.
/// `None` fields leave stored values alone.
///
/// # Errors
/// [`SchemaError::InvalidId`] for a malformed message id, author or queue
/// entry id; [`SchemaError::InvalidValue`] for a value over
/// [`MAX_TEXT_BYTES`] or a non-finite cost; and the errors of
/// [`read`](super::read) if the document is not a schema-1 transcript.
pub fn upsert_message<T: Transactable>(
    tx: &mut T,
    message: &MessageUpsert,
) -> Result<(), SchemaError> {
    check_root(DocView::new(&*tx, None))?;
    check_transcript_id("message_id", &message.id)?;
    if let Some(author) = &message.author
        && !ids::is_valid_user_id(author)
    {
        return Err(SchemaError::InvalidId {
            field: "author",
            value: author.clone(),
        });
    }
    if let Some(entry) = &message.queue_entry {
        check_prefixed("queue_entry", ids::QUEUE_ENTRY_PREFIX, entry)?;
    }
    check_size("finish", message.finish.as_deref())?;
    check_size("error", message.error.as_deref())?;
    if let Some(usage) = &message.usage
        && !usage.cost_usd.is_finite()
    {
        return Err(SchemaError::InvalidValue {
            field: "usage.cost_usd",
            reason: "must be a finite number",
        });
    }

    let messages = ensure_object(tx, &ROOT, "messages", ObjType::List)?;
    let m = match locate(DocView::new(&*tx, None), &messages, &message.id) {
        Located::Found(m) => m,
        Located::InsertAt(index) => {
            let m = tx.insert_object(&messages, index, ObjType::Map)?;
            tx.put(&m, "id", message.id.as_str())?;
            tx.put_object(&m, "parts", ObjType::List)?;
            m
        }
    };
    put_str(tx, &m, "role", Some(message.role.as_str()))?;
    put_int(tx, &m, "created_at", message.created_at)?;
    put_str(tx, &m, "author", message.author.as_deref())?;
    put_str(tx, &m, "queue_entry", message.queue_entry.as_deref())?;
    put_str(tx, &m, "finish", message.finish.as_deref())?;
    put_str(tx, &m, "error", message.error.as_deref())?;
    if let Some(usage) = &message.usage {
        put_usage(tx, &m, usage)?;
    }
    Ok(())
}

/// Create part `part.id` of message `message_id` at its sorted position, or
/// update the fields of the existing one that differ. `None` fields leave
/// stored values alone. `text` is Text, edited with `update_text`; `output`
/// is cut to [`MAX_OUTPUT_CHARS`] characters and `truncated` set to whether
/// it was.
///
/// # Errors
/// [`SchemaError::NotFound`] if the message does not exist (upsert it
/// first); [`SchemaError::InvalidId`] for a malformed message or part id;
/// [`SchemaError::InvalidValue`] for a `text`, `tool`, `input` or `error`
/// over [`MAX_TEXT_BYTES`]; and the errors of [`read`](super::read) if the
/// document is not a schema-1 transcript.
pub fn upsert_part<T: Transactable>(
    tx: &mut T,
    message_id: &str,
    part: &PartUpsert,
) -> Result<(), SchemaError> {
    check_root(DocView::new(&*tx, None))?;
    check_transcript_id("message_id", message_id)?;
    check_transcript_id("part_id", &part.id)?;
    check_size("text", part.text.as_deref())?;
    check_size("tool", part.tool.as_deref())?;
    check_size("input", part.input.as_deref())?;
    check_size("error", part.error.as_deref())?;

    let v = DocView::new(&*tx, None);
    let m = v
        .list(&ROOT, "messages")
        .and_then(|messages| match locate(v, &messages, message_id) {
            Located::Found(m) => Some(m),
            Located::InsertAt(_) => None,
        })
        .ok_or_else(|| SchemaError::NotFound {
            kind: "message",
            id: message_id.to_owned(),
        })?;
    let parts = ensure_object(tx, &m, "parts", ObjType::List)?;
    let p = match locate(DocView::new(&*tx, None), &parts, &part.id) {
        Located::Found(p) => p,
        Located::InsertAt(index) => {
            let p = tx.insert_object(&parts, index, ObjType::Map)?;
            tx.put(&p, "id", part.id.as_str())?;
            p
        }
    };
    put_str(tx, &p, "type", Some(part.kind.as_str()))?;
    if let Some(text) = &part.text {
        put_text(tx, &p, "text", text)?;
    }
    put_str(tx, &p, "tool", part.tool.as_deref())?;
    put_str(tx, &p, "state", part.state.as_ref().map(|s| s.as_str()))?;
    put_str(tx, &p, "input", part.input.as_deref())?;
    if let Some(output) = &part.output {
        let (stored, truncated) = truncate_output(output);
        put_str(tx, &p, "output", Some(stored))?;
        // Absent means false: write `false` only over a stored `true`.
        let stored_flag = DocView::new(&*tx, None).get(&p, "truncated").is_some();
        if truncated || stored_flag {
            put_bool(tx, &p, "truncated", truncated)?;
        }
    }
    put_str(tx, &p, "error", part.error.as_deref())?;
    Ok(())
}

/// Where an id is in a sorted list of maps with `id` keys.
enum Located {
    /// The map with that id (the first, if merged concurrent inserts left
    /// duplicates: the one readers show).
    Found(ObjId),
    /// Not there: insert a new map at this index to keep the order.
    InsertAt(usize),
}

/// Binary search for `id` in `list`, which the writers keep sorted by id:
/// O(log n) lookups (each Automerge lookup costs microseconds, so a linear
/// scan of a long transcript on every upsert would not do), and O(1) for
/// the common cases: an id after the last one, or the last one. Items that are not maps or
/// have no id are skipped (they sort like the next well-formed item).
///
/// Only the server writes transcripts, so the order holds. A list that is
/// not sorted (concurrent inserts by two writers) is still read and written
/// without error, but an upsert may then add a duplicate id that readers
/// hide.
fn locate<D: ReadDoc + ?Sized>(v: DocView<'_, D>, list: &ObjId, id: &str) -> Located {
    let len = v.len(list);
    let id_at = |i: usize| v.map(list, i).and_then(|m| Some((v.str(&m, "id")?, m)));
    // The first well-formed item at `i` or after.
    let next = |mut i: usize| {
        while i < len {
            if let Some((item_id, item)) = id_at(i) {
                return Some((i, item_id, item));
            }
            i += 1;
        }
        None
    };
    // Fast paths: a new last item, or an update of the last one.
    if let Some(last) = len.checked_sub(1)
        && let Some((last_id, item)) = id_at(last)
    {
        if last_id.as_str() < id {
            return Located::InsertAt(len);
        }
        if last_id == id
            && last
                .checked_sub(1)
                .and_then(id_at)
                .is_none_or(|(prev, _)| prev != id)
        {
            return Located::Found(item);
        }
    }
    // Lower bound: the first index whose item (or next well-formed item)
    // has an id >= `id`.
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match next(mid) {
            Some((j, item_id, _)) if item_id.as_str() < id => lo = j + 1,
            _ => hi = mid,
        }
    }
    match next(lo) {
        Some((_, item_id, item)) if item_id == id => Located::Found(item),
        _ => Located::InsertAt(lo),
    }
}

/// A scalar string at `obj[key]` unless it already reads as `value`
/// (scalar or Text); `None` writes nothing.
fn put_str<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: Option<&str>,
) -> Result<(), SchemaError> {
    let Some(value) = value else {
        return Ok(());
    };
    if DocView::new(&*tx, None).str(obj, key).as_deref() != Some(value) {
        tx.put(obj, key, value)?;
    }
    Ok(())
}

/// Text at `obj[key]` reading as `value`: nothing if it already does,
/// otherwise the existing Text (or a scalar string, converted) is edited
/// with `update_text`, or a new Text is created.
fn put_text<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &str,
) -> Result<(), SchemaError> {
    if DocView::new(&*tx, None).str(obj, key).as_deref() == Some(value) {
        return Ok(());
    }
    let text = ensure_object(tx, obj, key, ObjType::Text)?;
    tx.update_text(&text, value)?;
    Ok(())
}

/// An `Int` at `obj[key]` unless an integer or float of that value is there.
fn put_int<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: i64,
) -> Result<(), SchemaError> {
    let same = DocView::new(&*tx, None)
        .scalar(obj, key)
        .is_some_and(|s| match s.as_ref() {
            ScalarValue::Int(n) | ScalarValue::Timestamp(n) => *n == value,
            ScalarValue::Uint(n) => i64::try_from(*n) == Ok(value),
            ScalarValue::F64(f) => *f == value as f64,
            _ => false,
        });
    if !same {
        tx.put(obj, key, value)?;
    }
    Ok(())
}

/// An `F64` at `obj[key]` unless a number of that value is there.
fn put_f64<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: f64,
) -> Result<(), SchemaError> {
    if DocView::new(&*tx, None).f64(obj, key) != Some(value) {
        tx.put(obj, key, value)?;
    }
    Ok(())
}

fn put_bool<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: bool,
) -> Result<(), SchemaError> {
    if DocView::new(&*tx, None).bool(obj, key) != Some(value) {
        tx.put(obj, key, value)?;
    }
    Ok(())
}

fn put_usage<T: Transactable>(tx: &mut T, m: &ObjId, usage: &Usage) -> Result<(), SchemaError> {
    let u = ensure_object(tx, m, "usage", ObjType::Map)?;
    put_int(tx, &u, "input_tokens", int(usage.input_tokens))?;
    put_int(tx, &u, "output_tokens", int(usage.output_tokens))?;
    put_f64(tx, &u, "cost_usd", usage.cost_usd)
}

/// Integers are `Int` (what JS numbers become), saturating the unreachable
/// top half of `u64`.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn check_prefixed(field: &'static str, prefix: &str, value: &str) -> Result<(), SchemaError> {
    if ids::is_valid_id(prefix, value) {
        Ok(())
    } else {
        Err(SchemaError::InvalidId {
            field,
            value: value.to_owned(),
        })
    }
}

fn check_transcript_id(field: &'static str, value: &str) -> Result<(), SchemaError> {
    if is_valid_transcript_id(value) {
        Ok(())
    } else {
        Err(SchemaError::InvalidId {
            field,
            value: value.to_owned(),
        })
    }
}

fn check_size(field: &'static str, value: Option<&str>) -> Result<(), SchemaError> {
    match value {
        Some(s) if s.len() > MAX_TEXT_BYTES => Err(SchemaError::InvalidValue {
            field,
            reason: "is larger than 1 MiB (MAX_TEXT_BYTES); truncate it before writing",
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_ids() {
        assert!(is_valid_transcript_id("msg_01JABCdef-xyz"));
        assert!(is_valid_transcript_id(&"a".repeat(MAX_ID_BYTES)));
        assert!(!is_valid_transcript_id(&"a".repeat(MAX_ID_BYTES + 1)));
        for bad in ["", "msg 1", "msg/1", "msg.1", "msgé", "msg\n"] {
            assert!(!is_valid_transcript_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn truncation_counts_characters() {
        let short = "é".repeat(MAX_OUTPUT_CHARS);
        assert_eq!(truncate_output(&short), (short.as_str(), false));
        let long = format!("{short}🚀");
        assert_eq!(truncate_output(&long), (short.as_str(), true));
        assert_eq!(truncate_output(""), ("", false));
    }
}
