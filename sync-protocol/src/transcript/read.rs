//! Readers: the whole transcript, or one message.
//!
//! They are lenient like the Feature readers (see [`crate::value`]): a
//! message or part that is not a map or has no id is skipped, a repeated id
//! keeps its first occurrence, missing or ill-typed fields take their
//! defaults, and strings may be scalars or Text. The whole-document readers
//! fail only when the root is not a schema-1 transcript.

use std::collections::BTreeSet;

use automerge::{ChangeHash, ObjId, ROOT, ReadDoc};

use super::SCHEMA_VERSION;
use super::types::{Message, Part, PartKind, Role, ToolState, TranscriptDoc, Usage};
use crate::error::SchemaError;
use crate::value::DocView;

/// The current transcript.
///
/// # Errors
/// [`SchemaError::UnsupportedSchema`] if the transcript is newer than this
/// build, [`SchemaError::InvalidValue`] if the root is not a transcript
/// (no `schema: 1` or no `session_id`).
pub fn read<D: ReadDoc + ?Sized>(doc: &D) -> Result<TranscriptDoc, SchemaError> {
    read_view(DocView::new(doc, None))
}

/// The transcript as it was at `heads`.
///
/// # Errors
/// [`SchemaError::UnknownHeads`] if `doc` lacks any of `heads`; otherwise
/// as [`read`], for the document at that point.
pub fn read_at<D: ReadDoc + ?Sized>(
    doc: &D,
    heads: &[ChangeHash],
) -> Result<TranscriptDoc, SchemaError> {
    // `get_missing_deps` also reports dependencies of queued changes; only
    // the requested heads matter here.
    let unknown: Vec<ChangeHash> = doc
        .get_missing_deps(heads)
        .into_iter()
        .filter(|h| heads.contains(h))
        .collect();
    if !unknown.is_empty() {
        return Err(SchemaError::UnknownHeads(unknown));
    }
    read_view(DocView::new(doc, Some(heads)))
}

fn read_view<D: ReadDoc + ?Sized>(v: DocView<'_, D>) -> Result<TranscriptDoc, SchemaError> {
    let schema = check_root(v)?;
    let mut seen = BTreeSet::new();
    let messages = v
        .maps_in(&ROOT, "messages")
        .iter()
        .filter_map(|m| message(v, m))
        .filter(|m| seen.insert(m.id.clone()))
        .collect();
    Ok(TranscriptDoc {
        schema,
        session_id: v.string(&ROOT, "session_id"),
        feature_id: v.string(&ROOT, "feature_id"),
        messages,
    })
}

/// The schema of a transcript root, or why the root is not one.
pub(super) fn check_root<D: ReadDoc + ?Sized>(v: DocView<'_, D>) -> Result<u64, SchemaError> {
    match v.u64(&ROOT, "schema") {
        Some(found) if found > SCHEMA_VERSION => Err(SchemaError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        }),
        Some(SCHEMA_VERSION) if v.str(&ROOT, "session_id").is_some() => Ok(SCHEMA_VERSION),
        Some(SCHEMA_VERSION) => Err(SchemaError::InvalidValue {
            field: "session_id",
            reason: "missing: the document is not a transcript",
        }),
        _ => Err(SchemaError::InvalidValue {
            field: "schema",
            reason: "not 1: the document is not a transcript",
        }),
    }
}

/// A message, or `None` if it has no id.
fn message<D: ReadDoc + ?Sized>(v: DocView<'_, D>, m: &ObjId) -> Option<Message> {
    let id = v.str(m, "id").filter(|id| !id.is_empty())?;
    let mut seen = BTreeSet::new();
    Some(Message {
        id,
        role: v.str(m, "role").map(Role::from).unwrap_or_default(),
        author: v.str(m, "author"),
        queue_entry: v.str(m, "queue_entry"),
        created_at: v.i64(m, "created_at").unwrap_or_default(),
        parts: v
            .maps_in(m, "parts")
            .iter()
            .filter_map(|p| part(v, p))
            .filter(|p| seen.insert(p.id.clone()))
            .collect(),
        finish: v.str(m, "finish"),
        error: v.str(m, "error"),
        usage: v.map(m, "usage").map(|u| Usage {
            input_tokens: v.u64(&u, "input_tokens").unwrap_or_default(),
            output_tokens: v.u64(&u, "output_tokens").unwrap_or_default(),
            cost_usd: v.f64(&u, "cost_usd").unwrap_or_default(),
        }),
    })
}

/// A part, or `None` if it has no id.
fn part<D: ReadDoc + ?Sized>(v: DocView<'_, D>, p: &ObjId) -> Option<Part> {
    let id = v.str(p, "id").filter(|id| !id.is_empty())?;
    Some(Part {
        id,
        kind: v.str(p, "type").map(PartKind::from).unwrap_or_default(),
        text: v.str(p, "text"),
        tool: v.str(p, "tool"),
        state: v.str(p, "state").map(ToolState::from),
        input: v.str(p, "input"),
        output: v.str(p, "output"),
        error: v.str(p, "error"),
        truncated: v.bool(p, "truncated").unwrap_or_default(),
    })
}

// Partial readers: current state only, no schema check (the server checks a
// document when it loads it), touching only what they need.

/// The ids of all messages, in document order (sorted, as the writers keep
/// them). Malformed messages are skipped; a repeated id is listed once.
pub fn message_ids<D: ReadDoc + ?Sized>(doc: &D) -> Vec<String> {
    let v = DocView::new(doc, None);
    let mut seen = BTreeSet::new();
    v.maps_in(&ROOT, "messages")
        .iter()
        .filter_map(|m| v.str(m, "id").filter(|id| !id.is_empty()))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// The tokens and cost of every assistant message, summed (each id once).
/// Reads only roles and usage, so it stays cheap on a long transcript.
pub fn total_usage<D: ReadDoc + ?Sized>(doc: &D) -> Usage {
    let v = DocView::new(doc, None);
    let mut seen = BTreeSet::new();
    let mut total = Usage::default();
    for m in v.maps_in(&ROOT, "messages") {
        let Some(id) = v.str(&m, "id").filter(|id| !id.is_empty()) else {
            continue;
        };
        if v.str(&m, "role").map(Role::from) != Some(Role::Assistant) || !seen.insert(id) {
            continue;
        }
        if let Some(u) = v.map(&m, "usage") {
            total.input_tokens += v.u64(&u, "input_tokens").unwrap_or_default();
            total.output_tokens += v.u64(&u, "output_tokens").unwrap_or_default();
            total.cost_usd += v.f64(&u, "cost_usd").unwrap_or_default();
        }
    }
    total
}

/// The message with id `id` (its first occurrence), parts included.
pub fn find_message<D: ReadDoc + ?Sized>(doc: &D, id: &str) -> Option<Message> {
    let v = DocView::new(doc, None);
    let m = find_by_id(v, &ROOT, "messages", id)?;
    message(v, &m)
}

/// Part `part_id` of message `message_id`.
pub fn find_part<D: ReadDoc + ?Sized>(doc: &D, message_id: &str, part_id: &str) -> Option<Part> {
    let v = DocView::new(doc, None);
    let m = find_by_id(v, &ROOT, "messages", message_id)?;
    let p = find_by_id(v, &m, "parts", part_id)?;
    part(v, &p)
}

/// The first map in the list `parent[key]` whose `id` is `id`.
fn find_by_id<D: ReadDoc + ?Sized>(
    v: DocView<'_, D>,
    parent: &ObjId,
    key: &str,
    id: &str,
) -> Option<ObjId> {
    v.maps_in(parent, key)
        .into_iter()
        .find(|item| v.str(item, "id").as_deref() == Some(id))
}
