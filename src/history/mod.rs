//! A document's past, for the history browser: its changes (newest first,
//! paged, with who made them and what they touched), the document as JSON
//! at any heads, the patches between two versions, and a value as it was
//! (to restore it as a new change; history is never rewritten).
//!
//! Everything here reads one `&Automerge` and runs inside the document's
//! `with_document` closure. What is expensive is kept in a [`HistoryCache`]:
//! the causal order of the changes (extended, not rebuilt, when new changes
//! arrive), change summaries (a change never changes) and the last few
//! documents rendered at some heads. Nothing calls `fork_at`: reads use the
//! `_at` forms and `hydrate(Some(heads))`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use automerge::{
    Automerge, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, hydrate,
    legacy::{self, ObjectId, OpType},
    transaction::Transactable,
};
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

mod patches;
mod render;

pub use patches::{apply_patch, diff};
pub use render::{at, json_at, to_json};

/// Most heads one request may name.
pub const MAX_HEADS: usize = 64;
/// Largest history page.
pub const MAX_PAGE: usize = 200;
/// Documents rendered at some heads kept per document.
const RENDERED_KEPT: usize = 8;
/// Documents whose history is kept in memory.
const DOCUMENTS_KEPT: usize = 32;

/// Why a history request cannot be answered; all are the caller's doing
/// (400) except `Document`.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A heads parameter is malformed or names a change the document lacks.
    #[error("{0}")]
    BadHeads(String),
    /// The cursor is malformed, from another document, or unknown.
    #[error("{0}")]
    BadCursor(String),
    /// The path is malformed or names nothing.
    #[error("{0}")]
    BadPath(String),
    /// The document could not be written.
    #[error("document error: {0}")]
    Document(String),
}

/// Parse `heads` (hex change hashes, comma-separated) and check that the
/// document has each of them.
pub fn parse_heads(doc: &Automerge, raw: &str) -> Result<Vec<ChangeHash>, HistoryError> {
    let parts: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(HistoryError::BadHeads(
            "heads is empty; give one or more change hashes (hex, comma-separated)".into(),
        ));
    }
    if parts.len() > MAX_HEADS {
        return Err(HistoryError::BadHeads(format!(
            "{} heads given; at most {MAX_HEADS}",
            parts.len()
        )));
    }
    let mut heads = Vec::with_capacity(parts.len());
    for p in parts {
        let hash: ChangeHash = p.parse().map_err(|_| {
            HistoryError::BadHeads(format!("{p:?} is not a change hash (64 hex digits)"))
        })?;
        if doc.get_change_by_hash(&hash).is_none() {
            return Err(HistoryError::BadHeads(format!(
                "this document has no change {hash}"
            )));
        }
        heads.push(hash);
    }
    heads.sort();
    heads.dedup();
    Ok(heads)
}

/// Parse a path: JSON Pointer style (`learnings/lrn_…`, `sessions/ses_…/title`,
/// `/` inside a segment written `~1`, `~` written `~0`). List items are named
/// by their `id`, map entries by their key.
pub fn parse_path(raw: &str) -> Result<Vec<String>, HistoryError> {
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    if raw.is_empty() {
        return Err(HistoryError::BadPath("the path is empty".into()));
    }
    if raw.len() > 1024 {
        return Err(HistoryError::BadPath(
            "the path is longer than 1024 bytes".into(),
        ));
    }
    raw.split('/')
        .map(|seg| {
            if seg.is_empty() {
                return Err(HistoryError::BadPath(format!(
                    "path {raw:?} has an empty segment"
                )));
            }
            if seg.chars().any(char::is_control) {
                return Err(HistoryError::BadPath(
                    "the path has control characters".into(),
                ));
            }
            Ok(seg.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

/// One segment of a path, escaped.
fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

// ------------------------------------------------------------ summaries

/// What one change touched.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// One entry per thing touched, in the order first seen.
    pub touched: Vec<Touch>,
    /// Operations in the change.
    pub ops: usize,
}

/// One thing a change touched: a top-level field, or one item of a
/// top-level list or map.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Touch {
    /// The top-level key: `learnings`, `notes`, `sessions`, `title`, …
    pub kind: String,
    /// The item: a list item's `id`, a map entry's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `added`, `edited` or `deleted`.
    pub action: &'static str,
    /// Fields of the item changed (for `edited`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Characters inserted into text.
    #[serde(skip_serializing_if = "is_zero")]
    pub inserted: usize,
    /// Characters deleted from text.
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Touch {
    /// Whether this touch is at or under `path` (segments).
    pub fn matches(&self, path: &[String]) -> bool {
        match path {
            [] => true,
            [kind] => *kind == self.kind,
            [kind, id] => *kind == self.kind && self.id.as_deref() == Some(id),
            [kind, id, field, ..] => {
                *kind == self.kind
                    && self.id.as_deref() == Some(id)
                    && (self.action != "edited" || self.fields.iter().any(|f| f == field))
            }
        }
    }
}

/// The object a legacy op names, as this document's id.
fn import(doc: &Automerge, obj: &ObjectId) -> Option<(ObjId, ObjType)> {
    doc.import(&obj.to_string()).ok()
}

/// `(kind, item)` of an object: its path's first prop and, for an item of
/// a top-level list or map, the item's name and the item object itself.
/// None of it changes over an object's life (items are named by their
/// `id`), so it is worked out once per object and kept.
#[derive(Debug, Clone)]
struct Place {
    kind: String,
    item: Option<(String, ObjId)>,
    /// The first prop below the item, if any.
    field: Option<String>,
}

fn prop_str(p: &Prop) -> String {
    match p {
        Prop::Map(k) => k.clone(),
        Prop::Seq(i) => i.to_string(),
    }
}

/// The `id` of a list item object (or its index as text). Read at the
/// current heads: an item's fields outlive its removal from the list.
fn item_name(doc: &Automerge, item: &ObjId, index: usize) -> String {
    match doc.get(item, "id") {
        Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            other => other.to_string(),
        },
        Ok(Some((automerge::Value::Object(ObjType::Text), id))) => {
            doc.text(&id).unwrap_or_else(|_| index.to_string())
        }
        _ => index.to_string(),
    }
}

/// Where `obj` sits. Its chain of containers is structural (an object
/// never moves), so it is read at the current heads, where automerge finds
/// a list element's position from its index instead of scanning the list
/// as every read at older heads must; an object deleted since is still
/// found, only its index may be off, and items are named by `id`.
fn place_of(doc: &Automerge, obj: &ObjId) -> Option<Place> {
    if *obj == ObjId::Root {
        return None;
    }
    // Innermost first: (container, prop in it) for obj, its container, ….
    let mut chain: Vec<(ObjId, Prop)> = Vec::new();
    for parent in doc.parents(obj).ok()? {
        chain.push((parent.obj, parent.prop));
    }
    // `chain[len-1]` is (root, kind); `chain[len-2]` is (top container,
    // item prop), whose object is the item: `obj` itself or the container
    // named by `chain[len-3]`.
    let n = chain.len();
    let kind = prop_str(&chain.get(n.checked_sub(1)?)?.1);
    if n == 1 {
        return Some(Place {
            kind,
            item: None,
            field: None,
        });
    }
    let (_, second) = &chain[n - 2];
    let item_obj = if n >= 3 {
        chain[n - 3].0.clone()
    } else {
        obj.clone()
    };
    let name = match second {
        Prop::Map(k) => k.clone(),
        Prop::Seq(i) => item_name(doc, &item_obj, *i),
    };
    let field = (n >= 3).then(|| prop_str(&chain[n - 3].1));
    Some(Place {
        kind,
        item: Some((name, item_obj)),
        field,
    })
}

/// Objects' places by their id as a change names them, and their types.
type Places = HashMap<String, Option<(Place, ObjType)>>;

/// What change `hash` touched, from its own operations (no diff).
pub fn summarize(doc: &Automerge, hash: &ChangeHash) -> Summary {
    summarize_with(doc, hash, &mut Places::new())
}

/// [`summarize`], with the places of objects already looked up.
fn summarize_with(doc: &Automerge, hash: &ChangeHash, places: &mut Places) -> Summary {
    let Some(change) = doc.get_change_by_hash(hash) else {
        return Summary::default();
    };
    let expanded: legacy::Change = change.decode();
    let mut summary = Summary {
        ops: expanded.operations.len(),
        ..Summary::default()
    };
    for (index, op) in expanded.operations.iter().enumerate() {
        let key = op.obj.to_string();
        let place = places.entry(key).or_insert_with(|| {
            let (obj, typ) = import(doc, &op.obj)?;
            let place = place_of(doc, &obj);
            match (obj, place) {
                (ObjId::Root, _) => Some((
                    Place {
                        kind: String::new(),
                        item: None,
                        field: None,
                    },
                    ObjType::Map,
                )),
                (_, Some(p)) => Some((p, typ)),
                (_, None) => None,
            }
        });
        let Some((place, typ)) = place else { continue };
        let (kind, id, action, field) = if place.kind.is_empty() {
            // An op on the root: a top-level key set, made or deleted.
            let legacy::Key::Map(k) = &op.key else {
                continue;
            };
            let action = match op.action {
                OpType::Delete => "deleted",
                OpType::Make(_) => "added",
                _ => "edited",
            };
            (k.to_string(), None, action, None)
        } else if place.item.is_none() {
            // An op on a top-level object: items added or removed, or text.
            match (&typ, &op.key) {
                (ObjType::Text, _) => (place.kind.clone(), None, "edited", None),
                (_, legacy::Key::Map(k)) => {
                    let action = match op.action {
                        OpType::Delete => "deleted",
                        OpType::Make(_) => "added",
                        _ => "edited",
                    };
                    (place.kind.clone(), Some(k.to_string()), action, None)
                }
                (_, legacy::Key::Seq(elem)) => {
                    // Inserted items are named by the object they create;
                    // deleted ones by the element (the object's id too).
                    let target = if op.insert {
                        legacy::ObjectId::Id(legacy::OpId(
                            expanded.start_op.get() + index as u64,
                            expanded.actor_id.clone(),
                        ))
                    } else {
                        match elem.as_opid() {
                            Some(id) => legacy::ObjectId::Id(id.clone()),
                            None => continue,
                        }
                    };
                    let name = import(doc, &target)
                        .map(|(o, _)| item_name(doc, &o, 0))
                        .unwrap_or_else(|| target.to_string());
                    let action = match (op.insert, &op.action) {
                        (_, OpType::Delete) => "deleted",
                        (true, _) => "added",
                        _ => "edited",
                    };
                    (place.kind.clone(), Some(name), action, None)
                }
            }
        } else {
            let (name, _) = place.item.as_ref().expect("checked");
            let field = match (&place.field, &op.key) {
                (Some(f), _) => Some(f.clone()),
                (None, legacy::Key::Map(k)) => Some(k.to_string()),
                (None, _) => None,
            };
            (place.kind.clone(), Some(name.clone()), "edited", field)
        };
        let touch = match summary
            .touched
            .iter_mut()
            .find(|t| t.kind == kind && t.id == id)
        {
            Some(t) => t,
            None => {
                summary.touched.push(Touch {
                    kind,
                    id,
                    action,
                    fields: Vec::new(),
                    inserted: 0,
                    deleted: 0,
                });
                summary.touched.last_mut().expect("pushed")
            }
        };
        // `added`/`deleted` win over `edited` for the same item.
        if touch.action == "edited" && action != "edited" {
            touch.action = action;
        }
        if let Some(f) = field
            && !touch.fields.contains(&f)
        {
            touch.fields.push(f);
        }
        if *typ == ObjType::Text {
            match &op.action {
                OpType::Put(ScalarValue::Str(s)) if op.insert => {
                    touch.inserted += s.chars().count();
                }
                OpType::Delete => touch.deleted += 1,
                _ => {}
            }
        }
    }
    // Fields listed only say what was edited in an item that stays.
    for t in &mut summary.touched {
        if t.action != "edited" {
            t.fields.clear();
        }
    }
    summary
}

// ------------------------------------------------------------ the index

/// One change as the history lists it.
#[derive(Debug, Clone)]
struct Entry {
    hash: ChangeHash,
    parents: Vec<ChangeHash>,
    actor: String,
    seq: u64,
    /// Unix seconds, as stamped by the writer.
    time: i64,
    message: Option<String>,
}

/// The changes of one document in causal order, and what has been worked
/// out about them.
#[derive(Debug, Default)]
pub struct DocHistory {
    heads: Vec<ChangeHash>,
    entries: Vec<Entry>,
    position: HashMap<ChangeHash, usize>,
    summaries: HashMap<ChangeHash, Summary>,
    places: Places,
    rendered: Vec<(Vec<ChangeHash>, Arc<Value>)>,
}

impl DocHistory {
    /// Take in the changes made since the last look.
    fn catch_up(&mut self, doc: &Automerge) {
        let heads = doc.get_heads();
        if heads == self.heads {
            return;
        }
        for meta in doc.get_changes_meta(&self.heads) {
            if self.position.contains_key(&meta.hash) {
                continue;
            }
            self.position.insert(meta.hash, self.entries.len());
            self.entries.push(Entry {
                hash: meta.hash,
                parents: meta.deps.clone(),
                actor: meta.actor.to_hex_string(),
                seq: meta.seq,
                time: meta.timestamp,
                message: meta.message.as_deref().map(str::to_owned),
            });
        }
        self.heads = heads;
    }

    fn summary(&mut self, doc: &Automerge, hash: &ChangeHash) -> &Summary {
        let places = &mut self.places;
        self.summaries
            .entry(*hash)
            .or_insert_with(|| summarize_with(doc, hash, places))
    }
}

/// One document's history, shared by the requests that read it.
pub type SharedHistory = Arc<Mutex<DocHistory>>;

/// Histories of recently browsed documents, least recently used first.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HistoryCache {
    docs: Arc<Mutex<Vec<(String, SharedHistory)>>>,
}

impl HistoryCache {
    /// The history kept for document `key` (made if new; the least recently
    /// used one is dropped past [`DOCUMENTS_KEPT`]).
    pub fn of(&self, key: &str) -> SharedHistory {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = docs.iter().position(|(k, _)| k == key) {
            let entry = docs.remove(i);
            let history = entry.1.clone();
            docs.push(entry);
            return history;
        }
        if docs.len() >= DOCUMENTS_KEPT {
            docs.remove(0);
        }
        let history = Arc::new(Mutex::new(DocHistory::default()));
        docs.push((key.to_owned(), history.clone()));
        history
    }
}

// ------------------------------------------------------------ pages

/// What a history page asks for.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Entries per page (1..=[`MAX_PAGE`]).
    pub limit: usize,
    /// Continue below this change (from a cursor).
    pub before: Option<ChangeHash>,
    /// Only changes by this author.
    pub author: Option<String>,
    /// Only changes touching this path.
    pub path: Option<Vec<String>>,
}

/// One listed change.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeView {
    /// Hex hash.
    pub hash: String,
    /// Hex hashes of the changes it follows.
    pub parents: Vec<String>,
    /// Unix ms (the writer's clock; Automerge keeps seconds).
    pub time: i64,
    /// The user, `agent:<session>`, or `@server`; `null` if unknown.
    pub author: Option<String>,
    /// The Automerge actor (hex).
    pub actor: String,
    /// The actor's change counter.
    pub seq: u64,
    /// The change's message.
    pub message: Option<String>,
    /// What it touched.
    pub summary: Summary,
}

/// A page of history, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The changes.
    pub changes: Vec<ChangeView>,
    /// Where the next page starts (the last change listed), if the scan
    /// stopped at the limit.
    pub next: Option<String>,
    /// Changes in the document.
    pub total: usize,
    /// The document's heads now.
    pub heads: Vec<String>,
}

/// A page of `doc`'s history. `author_of(hash, actor)` names the author of
/// a change.
pub fn page(
    doc: &Automerge,
    history: &mut DocHistory,
    query: &PageQuery,
    author_of: &dyn Fn(&ChangeHash, &str) -> Option<String>,
) -> Result<Page, HistoryError> {
    history.catch_up(doc);
    let start = match &query.before {
        Some(h) => *history.position.get(h).ok_or_else(|| {
            HistoryError::BadCursor(format!(
                "the cursor names change {h}, which this document does not have"
            ))
        })?,
        None => history.entries.len(),
    };
    let limit = query.limit.clamp(1, MAX_PAGE);
    let mut changes = Vec::new();
    let mut next = None;
    for i in (0..start).rev() {
        let entry = history.entries[i].clone();
        let author = author_of(&entry.hash, &entry.actor);
        if let Some(want) = &query.author
            && author.as_deref() != Some(want.as_str())
        {
            continue;
        }
        let summary = history.summary(doc, &entry.hash);
        if let Some(path) = &query.path
            && !summary.touched.iter().any(|t| t.matches(path))
        {
            continue;
        }
        if changes.len() == limit {
            next = changes.last().map(|c: &ChangeView| c.hash.clone());
            break;
        }
        changes.push(ChangeView {
            hash: entry.hash.to_string(),
            parents: entry.parents.iter().map(ToString::to_string).collect(),
            time: entry.time.saturating_mul(1000),
            author,
            actor: entry.actor,
            seq: entry.seq,
            message: entry.message,
            summary: summary.clone(),
        });
    }
    Ok(Page {
        changes,
        next,
        total: history.entries.len(),
        heads: history.heads.iter().map(ToString::to_string).collect(),
    })
}

/// An opaque cursor for `document` continuing below change `hash`.
pub fn encode_cursor(document: &str, hash: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{document}.{hash}"))
}

/// The change a cursor continues below; it must be `document`'s.
pub fn decode_cursor(document: &str, cursor: &str) -> Result<ChangeHash, HistoryError> {
    let bad = || HistoryError::BadCursor("the cursor is not one this server gave out".into());
    if cursor.len() > 512 {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (doc, hash) = raw.rsplit_once('.').ok_or_else(bad)?;
    if doc != document {
        return Err(HistoryError::BadCursor(
            "the cursor belongs to another document's history".into(),
        ));
    }
    hash.parse().map_err(|_| bad())
}

// ------------------------------------------------------------ restore

/// Top-level keys whose values may be restored: what people write. The
/// queue, sessions and participants are the server's to keep.
pub const RESTORABLE: &[&str] = &[
    "learnings",
    "decisions",
    "key_files",
    "notes",
    "title",
    "description",
];

/// Find the child of `value` named `seg`: a map key, or the list item whose
/// `id` is `seg`. Returns the prop and the child.
fn child<'a>(value: &'a hydrate::Value, seg: &str) -> Option<(Prop, &'a hydrate::Value)> {
    match value {
        hydrate::Value::Map(m) => m.get(seg).map(|v| (Prop::Map(seg.to_owned()), v)),
        hydrate::Value::List(l) => l.iter().enumerate().find_map(|(i, item)| {
            let hydrate::Value::Map(m) = &item.value else {
                return None;
            };
            let id = match m.get("id")? {
                hydrate::Value::Scalar(ScalarValue::Str(s)) => s.to_string(),
                hydrate::Value::Text(t) => t.to_string(),
                _ => return None,
            };
            (id == seg).then_some((Prop::Seq(i), &item.value))
        }),
        _ => None,
    }
}

/// Write `value` at `obj[prop]` as new objects (text stays text).
fn put_value(
    tx: &mut impl Transactable,
    obj: &ObjId,
    prop: Prop,
    insert: bool,
    value: &hydrate::Value,
) -> Result<(), automerge::AutomergeError> {
    match value {
        hydrate::Value::Scalar(s) => match (insert, prop) {
            (true, Prop::Seq(i)) => tx.insert(obj, i, s.clone()),
            (_, prop) => tx.put(obj, prop, s.clone()),
        },
        other => {
            let t = match other {
                hydrate::Value::Map(_) => ObjType::Map,
                hydrate::Value::List(_) => ObjType::List,
                _ => ObjType::Text,
            };
            let new = match (insert, prop) {
                (true, Prop::Seq(i)) => tx.insert_object(obj, i, t)?,
                (_, prop) => tx.put_object(obj, prop, t)?,
            };
            match other {
                hydrate::Value::Map(m) => {
                    let mut keys: Vec<_> = m.iter().collect();
                    keys.sort_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in keys {
                        put_value(tx, &new, Prop::Map(k.clone()), false, &v.value)?;
                    }
                }
                hydrate::Value::List(l) => {
                    for (i, v) in l.iter().enumerate() {
                        put_value(tx, &new, Prop::Seq(i), true, &v.value)?;
                    }
                }
                hydrate::Value::Text(t) => {
                    tx.splice_text(&new, 0, 0, &t.to_string())?;
                }
                hydrate::Value::Scalar(_) => {}
            }
            Ok(())
        }
    }
}

/// Write the value `path` had in `then` (the document hydrated at some
/// heads) into the current document (in `tx`): text is edited to the old text, a list item is put back (at its
/// old place, or replaced if it still exists), anything else is put.
/// Returns a short description of what was done.
pub fn restore(
    then: &hydrate::Value,
    tx: &mut impl Transactable,
    path: &[String],
) -> Result<String, HistoryError> {
    let Some(top) = path.first() else {
        return Err(HistoryError::BadPath("the path is empty".into()));
    };
    if !RESTORABLE.contains(&top.as_str()) {
        return Err(HistoryError::BadPath(format!(
            "{top:?} cannot be restored; these can: {}",
            RESTORABLE.join(", ")
        )));
    }
    // Walk the old value and, alongside, the current object tree.
    let mut old = then;
    let mut obj = ObjId::Root;
    for (depth, seg) in path.iter().enumerate() {
        let parent_is_list = matches!(old, hydrate::Value::List(_));
        let (prop, value) = child(old, seg).ok_or_else(|| {
            HistoryError::BadPath(format!(
                "{} did not exist at those heads",
                path[..=depth]
                    .iter()
                    .map(|s| escape(s))
                    .collect::<Vec<_>>()
                    .join("/")
            ))
        })?;
        let last = depth + 1 == path.len();
        if last {
            // For people reading the history: unescaped.
            let place = path.join("/");
            let now = tx.get(&obj, prop.clone()).ok().flatten();
            // Already as it was: write nothing (no empty change either).
            let same = |id: &ObjId, index: Option<usize>| {
                let current = match index {
                    Some(i) => tx.get(id, i).ok().flatten(),
                    None => tx.get(id, prop.clone()).ok().flatten(),
                };
                let current = match current {
                    Some((automerge::Value::Object(_), child)) => tx.hydrate(&child, None).ok(),
                    Some((automerge::Value::Scalar(s), _)) => {
                        Some(hydrate::Value::Scalar(s.into_owned()))
                    }
                    None => None,
                };
                current.is_some_and(|c| to_json(&c) == to_json(value))
            };
            return match (parent_is_list, value, now) {
                // Text that still exists: edit it back (a CRDT edit, not a
                // replacement), so concurrent typing merges.
                (
                    false,
                    hydrate::Value::Text(t),
                    Some((automerge::Value::Object(ObjType::Text), id)),
                ) => {
                    tx.update_text(&id, t.to_string())
                        .map_err(|e| HistoryError::Document(e.to_string()))?;
                    Ok(format!("restore {place}"))
                }
                (true, _, _) => {
                    // A list item, found by id in the current list.
                    let len = tx.length(&obj);
                    let current = (0..len).find(|i| {
                        matches!(tx.get(&obj, *i), Ok(Some((automerge::Value::Object(ObjType::Map), ref item)))
                            if id_of(tx, item).as_deref() == Some(seg.as_str()))
                    });
                    match current {
                        Some(i) if same(&obj, Some(i)) => Ok(()),
                        Some(i) => put_value(tx, &obj, Prop::Seq(i), false, value),
                        None => {
                            let Prop::Seq(old_index) = prop else {
                                unreachable!()
                            };
                            put_value(tx, &obj, Prop::Seq(old_index.min(len)), true, value)
                        }
                    }
                    .map_err(|e| HistoryError::Document(e.to_string()))?;
                    Ok(format!("restore {place}"))
                }
                (false, _, _) => {
                    if !same(&obj, None) {
                        put_value(tx, &obj, prop, false, value)
                            .map_err(|e| HistoryError::Document(e.to_string()))?;
                    }
                    Ok(format!("restore {place}"))
                }
            };
        }
        // Descend in the current document too: by key, or by id in a list.
        let next = match (&prop, old) {
            (Prop::Map(k), _) => match tx.get(&obj, k.as_str()) {
                Ok(Some((automerge::Value::Object(_), id))) => Some(id),
                _ => None,
            },
            (Prop::Seq(_), _) => (0..tx.length(&obj)).find_map(|i| match tx.get(&obj, i) {
                Ok(Some((automerge::Value::Object(ObjType::Map), id)))
                    if id_of(tx, &id).as_deref() == Some(seg.as_str()) =>
                {
                    Some(id)
                }
                _ => None,
            }),
        };
        let Some(next) = next else {
            return Err(HistoryError::BadPath(format!(
                "{} no longer exists; restore it whole first",
                path[..=depth]
                    .iter()
                    .map(|s| escape(s))
                    .collect::<Vec<_>>()
                    .join("/")
            )));
        };
        obj = next;
        old = value;
    }
    unreachable!("the loop returns at the last segment")
}

/// The `id` field of a list item object.
fn id_of(doc: &impl ReadDoc, item: &ObjId) -> Option<String> {
    match doc.get(item, "id").ok()?? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        (automerge::Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}
