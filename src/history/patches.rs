//! The patches between two versions of a document, each with the value it
//! replaced or removed.
//!
//! Automerge's `diff` walks every operation of the document, changed or not,
//! and a feature's notes alone can hold most of a long history's
//! operations. The walk is split: the root's own keys first, then each
//! top-level object (`diff_obj`, recursive) on workers, one per core,
//! heaviest first. `old` values are read from the earlier version only for
//! the patches that need one (a put over a value, a delete, an increment),
//! from the objects they name; the earlier version is never rendered whole.

use std::collections::{HashMap, HashSet};

use automerge::{Automerge, ChangeHash, ObjId, ObjType, Patch, PatchAction, Prop, ReadDoc};
use serde_json::{Map, Value, json};

use super::HistoryError;
use super::render::{object_json, scalar_json, spread, value_json};

/// The JSON value at `path` (props) inside `root`.
fn pointer_mut<'a>(root: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = root;
    for p in path {
        cur = match (cur, p) {
            (Value::Object(m), Value::String(k)) => m.get_mut(k)?,
            (Value::Array(a), Value::Number(n)) => a.get_mut(n.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Apply one JSON patch (as [`diff`] writes them) to `doc`; returns the
/// value(s) it replaced or removed (what [`diff`] gives as `old`). A
/// client's reference; the tests check [`diff`] against it.
pub fn apply_patch(doc: &mut Value, patch: &Value) -> Result<Value, String> {
    let path: Vec<Value> = patch["path"].as_array().cloned().unwrap_or_default();
    let target =
        pointer_mut(doc, &path).ok_or_else(|| format!("no value at {:?}", patch["path"]))?;
    let action = patch["action"].as_str().unwrap_or_default();
    let index = || patch["index"].as_u64().map(|i| i as usize);
    match (action, target) {
        ("put", Value::Object(m)) => {
            let key = patch["key"].as_str().ok_or("put without a key")?;
            Ok(m.insert(key.to_owned(), patch["value"].clone())
                .unwrap_or(Value::Null))
        }
        ("put", Value::Array(a)) => {
            let i = index().ok_or("put without an index")?;
            let slot = a.get_mut(i).ok_or("put past the end")?;
            Ok(std::mem::replace(slot, patch["value"].clone()))
        }
        ("insert", Value::Array(a)) => {
            let i = index().ok_or("insert without an index")?;
            if i > a.len() {
                return Err("insert past the end".into());
            }
            let values = patch["values"].as_array().ok_or("insert without values")?;
            a.splice(i..i, values.iter().cloned());
            Ok(Value::Null)
        }
        ("delete", Value::Object(m)) => {
            let key = patch["key"].as_str().ok_or("delete without a key")?;
            Ok(m.remove(key).unwrap_or(Value::Null))
        }
        ("delete", Value::Array(a)) => {
            let i = index().ok_or("delete without an index")?;
            let n = patch["length"].as_u64().unwrap_or(1) as usize;
            if i + n > a.len() {
                return Err("delete past the end".into());
            }
            Ok(Value::Array(a.drain(i..i + n).collect()))
        }
        ("delete", Value::String(s)) => {
            let i = index().ok_or("delete without an index")?;
            let n = patch["length"].as_u64().unwrap_or(1) as usize;
            let chars: Vec<char> = s.chars().collect();
            if i + n > chars.len() {
                return Err("delete past the end of the text".into());
            }
            let removed: String = chars[i..i + n].iter().collect();
            *s = chars[..i].iter().chain(&chars[i + n..]).collect();
            Ok(json!(removed))
        }
        ("splice_text", Value::String(s)) => {
            let i = index().ok_or("splice without an index")?;
            let text = patch["value"].as_str().ok_or("splice without text")?;
            let chars: Vec<char> = s.chars().collect();
            if i > chars.len() {
                return Err("splice past the end of the text".into());
            }
            let mut out: String = chars[..i].iter().collect();
            out.push_str(text);
            out.extend(&chars[i..]);
            *s = out;
            Ok(Value::Null)
        }
        ("increment", Value::Object(m)) => {
            let key = patch["key"].as_str().ok_or("increment without a key")?;
            let by = patch["by"].as_i64().unwrap_or(0);
            let slot = m.get_mut(key).ok_or("increment of nothing")?;
            let old = slot.clone();
            *slot = json!(slot.as_i64().unwrap_or(0) + by);
            Ok(old)
        }
        ("increment", Value::Array(a)) => {
            let i = index().ok_or("increment without an index")?;
            let by = patch["by"].as_i64().unwrap_or(0);
            let slot = a.get_mut(i).ok_or("increment past the end")?;
            let old = slot.clone();
            *slot = json!(slot.as_i64().unwrap_or(0) + by);
            Ok(old)
        }
        (action, _) => Err(format!("cannot apply {action:?} here")),
    }
}

/// The patches that turn the document at `from` into the document at `to`,
/// as JSON: `{path, action, key|index, value|values|length|by, old}`, to be
/// applied in order. Text indexes count Unicode code points. `old` is what
/// the patch replaced or removed.
pub fn diff(
    doc: &Automerge,
    from: &[ChangeHash],
    to: &[ChangeHash],
) -> Result<Vec<Value>, HistoryError> {
    let failed = |e: automerge::AutomergeError| HistoryError::Document(format!("diff: {e}"));
    // The root's own keys: a top-level value set, replaced or removed.
    let root = doc
        .diff_obj(&ObjId::Root, from, to, false)
        .map_err(failed)?;
    let mut out: Vec<Value> = {
        let mut before = Before::new(doc, from);
        root.iter().filter_map(|p| before.patch(p)).collect()
    };
    // A value that was there all along but hidden (a conflict's loser, now
    // the winner) comes with its whole content already ("exposed").
    let exposed: HashSet<&str> = root
        .iter()
        .filter(|p| p.obj != ObjId::Root)
        .filter_map(|p| match p.path.first() {
            Some((_, Prop::Map(key))) => Some(key.as_str()),
            _ => None,
        })
        .collect();
    // The other top-level objects at `to`. One that is not the same object
    // as at `from` was put by a root patch above as an empty value: all of
    // it is new (a diff from no heads at all).
    let tops: Vec<(ObjId, ObjType, bool)> = doc
        .map_range_at(ObjId::Root, .., to)
        .filter_map(|item| {
            let automerge::ValueRef::Object(typ) = item.value else {
                return None;
            };
            if exposed.contains(item.key.as_ref()) {
                return None;
            }
            let id = item.id();
            let same = matches!(
                doc.get_at(ObjId::Root, item.key.as_ref(), from),
                Ok(Some((_, was))) if was == id
            );
            Some((id, typ, !same))
        })
        .collect();
    let weight = |(id, typ, _): &(ObjId, ObjType, bool)| {
        // Read at the current heads (indexed, cheap): a proxy for how many
        // operations the walk will read. Items of lists and maps hold text.
        let n = doc.length(id);
        if *typ == ObjType::Text {
            n
        } else {
            n.saturating_mul(32)
        }
    };
    let parts = spread(&tops, weight, |(id, _, fresh)| {
        let patches = if *fresh {
            doc.diff_obj(id, &[], to, true)
        } else {
            doc.diff_obj(id, from, to, true)
        }
        .map_err(failed)?;
        let mut before = Before::new(doc, from);
        if *fresh {
            before.fresh.insert(id.clone());
        }
        Ok::<_, HistoryError>(
            patches
                .iter()
                .filter_map(|p| before.patch(p))
                .collect::<Vec<_>>(),
        )
    });
    for part in parts {
        out.extend(part.ok_or_else(|| HistoryError::Document("diff: a worker failed".into()))??);
    }
    Ok(out)
}

/// What the objects patched looked like before the patches, worked out as
/// the patches go: each patch's `old` is the earlier version's value unless
/// an earlier patch of the same diff changed it.
struct Before<'a> {
    doc: &'a Automerge,
    from: &'a [ChangeHash],
    /// Objects put or inserted by a patch of this diff: they start empty.
    fresh: HashSet<ObjId>,
    /// Map keys set (`Some`) or removed (`None`) by an earlier patch.
    keys: HashMap<ObjId, HashMap<String, Option<Value>>>,
    /// Lists and texts an earlier patch changed, or whose `old` was asked.
    seqs: HashMap<ObjId, Seq>,
}

impl<'a> Before<'a> {
    fn new(doc: &'a Automerge, from: &'a [ChangeHash]) -> Self {
        Before {
            doc,
            from,
            fresh: HashSet::new(),
            keys: HashMap::new(),
            seqs: HashMap::new(),
        }
    }

    /// The patch as JSON, with `old`; `None` for patches that change no
    /// JSON value (marks, conflict notices).
    fn patch(&mut self, p: &Patch) -> Option<Value> {
        let path: Vec<Value> = p
            .path
            .iter()
            .map(|(_, prop)| match prop {
                Prop::Map(k) => json!(k),
                Prop::Seq(i) => json!(i),
            })
            .collect();
        let obj = &p.obj;
        let mut patch = Map::new();
        patch.insert("path".into(), Value::Array(path));
        let old = match &p.action {
            PatchAction::PutMap {
                key,
                value,
                conflict,
            } => {
                let new = self.put(&mut patch, ("key", json!(key)), value, *conflict);
                self.set_key(obj, key, Some(new))
            }
            PatchAction::PutSeq {
                index,
                value,
                conflict,
            } => {
                let new = self.put(&mut patch, ("index", json!(index)), value, *conflict);
                self.replace_item(obj, *index, |_| new)
            }
            PatchAction::Insert { index, values } => {
                let values: Vec<Value> = values
                    .iter()
                    .map(|(v, id, _)| self.made(&(v.clone(), id.clone())))
                    .collect();
                patch.insert("action".into(), json!("insert"));
                patch.insert("index".into(), json!(index));
                patch.insert("values".into(), Value::Array(values.clone()));
                self.seq(obj).insert(*index, values);
                Value::Null
            }
            PatchAction::SpliceText { index, value, .. } => {
                let text = value.make_string();
                patch.insert("action".into(), json!("splice_text"));
                patch.insert("index".into(), json!(index));
                patch.insert("value".into(), json!(text));
                let chars = text.chars().map(|c| json!(c.to_string())).collect();
                self.seq(obj).insert(*index, chars);
                Value::Null
            }
            PatchAction::Increment { prop, value } => {
                patch.insert("action".into(), json!("increment"));
                let by = *value;
                let bump = |old: &Value| json!(old.as_i64().unwrap_or(0).saturating_add(by));
                let old = match prop {
                    Prop::Map(k) => {
                        patch.insert("key".into(), json!(k));
                        let old = self.key_before(obj, k);
                        self.set_key(obj, k, Some(bump(&old)));
                        old
                    }
                    Prop::Seq(i) => {
                        patch.insert("index".into(), json!(i));
                        self.replace_item(obj, *i, bump)
                    }
                };
                patch.insert("by".into(), json!(by));
                old
            }
            PatchAction::DeleteMap { key } => {
                patch.insert("action".into(), json!("delete"));
                patch.insert("key".into(), json!(key));
                self.set_key(obj, key, None)
            }
            PatchAction::DeleteSeq { index, length } => {
                patch.insert("action".into(), json!("delete"));
                patch.insert("index".into(), json!(index));
                patch.insert("length".into(), json!(length));
                let taken = self.seq(obj).remove(*index, *length);
                self.render(obj, taken, true)
            }
            PatchAction::Mark { .. } | PatchAction::Conflict { .. } => return None,
        };
        if !old.is_null() {
            patch.insert("old".into(), old);
        }
        Some(Value::Object(patch))
    }

    /// Write a put's fields (`at` is its key or index); returns its value.
    fn put(
        &mut self,
        patch: &mut Map<String, Value>,
        (name, at): (&str, Value),
        value: &(automerge::Value<'static>, ObjId),
        conflict: bool,
    ) -> Value {
        let new = self.made(value);
        patch.insert("action".into(), json!("put"));
        patch.insert(name.into(), at);
        patch.insert("value".into(), new.clone());
        if conflict {
            patch.insert("conflict".into(), json!(true));
        }
        new
    }

    /// A patch's new value as JSON; an object it makes starts empty.
    fn made(&mut self, (value, id): &(automerge::Value<'static>, ObjId)) -> Value {
        if let automerge::Value::Object(_) = value {
            self.fresh.insert(id.clone());
        }
        value_json(value)
    }

    /// What `obj[key]` holds before this patch.
    fn key_before(&self, obj: &ObjId, key: &str) -> Value {
        if let Some(set) = self.keys.get(obj).and_then(|m| m.get(key)) {
            return set.clone().unwrap_or(Value::Null);
        }
        if self.fresh.contains(obj) {
            return Value::Null;
        }
        match self.doc.get_at(obj, key, self.from) {
            Ok(Some((automerge::Value::Object(t), id))) => {
                object_json(self.doc, &id, t, Some(self.from))
            }
            Ok(Some((automerge::Value::Scalar(s), _))) => scalar_json(&s),
            _ => Value::Null,
        }
    }

    /// Set (or remove) `obj[key]`; returns what it held.
    fn set_key(&mut self, obj: &ObjId, key: &str, value: Option<Value>) -> Value {
        let old = self.key_before(obj, key);
        self.keys
            .entry(obj.clone())
            .or_default()
            .insert(key.to_owned(), value);
        old
    }

    /// Replace item `index` of a list by `new(old)`; returns the old item.
    fn replace_item(
        &mut self,
        obj: &ObjId,
        index: usize,
        new: impl FnOnce(&Value) -> Value,
    ) -> Value {
        let taken = self.seq(obj).remove(index, 1);
        let old = self.render(obj, taken, false);
        let value = new(&old);
        self.seq(obj).insert(index, vec![value]);
        old
    }

    fn seq(&mut self, obj: &ObjId) -> &mut Seq {
        let fresh = self.fresh.contains(obj);
        self.seqs
            .entry(obj.clone())
            .or_insert_with(|| Seq::new(fresh))
    }

    /// Pieces taken out of `obj` as JSON: a string for text; for a list,
    /// the items (`many`) or the one item.
    fn render(&mut self, obj: &ObjId, taken: Vec<Piece>, many: bool) -> Value {
        let text = matches!(self.doc.object_type(obj), Ok(ObjType::Text));
        let (doc, from) = (self.doc, self.from);
        let seq = self.seq(obj);
        let needs_base = taken.iter().any(|p| matches!(p, Piece::Base(..)));
        if needs_base && seq.base.is_none() {
            seq.base = Some(if text {
                Base::Chars(doc.text_at(obj, from).unwrap_or_default().chars().collect())
            } else {
                Base::Items(
                    doc.list_range_at(obj, .., from)
                        .map(|item| match item.value {
                            automerge::ValueRef::Object(t) => Item::Obj(item.id(), t),
                            scalar => match scalar.into_value() {
                                automerge::Value::Scalar(s) => Item::Scalar(scalar_json(&s)),
                                automerge::Value::Object(_) => Item::Scalar(Value::Null),
                            },
                        })
                        .collect(),
                )
            });
        }
        let mut values: Vec<Value> = Vec::new();
        let mut chars = String::new();
        for piece in taken {
            match (piece, &seq.base) {
                (Piece::Added(v), _) if text => {
                    chars.extend(v.iter().filter_map(Value::as_str));
                }
                (Piece::Added(v), _) => values.extend(v),
                (Piece::Base(start, n), Some(Base::Chars(c))) => {
                    chars.extend(c.iter().skip(start).take(n));
                }
                (Piece::Base(start, n), Some(Base::Items(items))) => {
                    values.extend(items.iter().skip(start).take(n).map(|i| match i {
                        Item::Scalar(v) => v.clone(),
                        Item::Obj(id, t) => object_json(doc, id, *t, Some(from)),
                    }));
                }
                (Piece::Base(..), None) => {}
            }
        }
        if text {
            json!(chars)
        } else if many {
            Value::Array(values)
        } else {
            values.into_iter().next().unwrap_or(Value::Null)
        }
    }
}

/// Where the first [`Seq::OPEN`] items come from, once read.
enum Base {
    Items(Vec<Item>),
    Chars(Vec<char>),
}

/// A list item at `from`: objects are rendered only when taken.
enum Item {
    Scalar(Value),
    Obj(ObjId, ObjType),
}

/// A run of a sequence: items `start..start + n` of the earlier version,
/// or items a patch inserted.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Base(usize, usize),
    Added(Vec<Value>),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Base(_, n) => *n,
            Piece::Added(v) => v.len(),
        }
    }
}

/// A list or text as the patches leave it, in runs; the earlier version's
/// items are read only if a patch takes some out.
struct Seq {
    pieces: Vec<Piece>,
    base: Option<Base>,
}

impl Seq {
    /// The earlier version's length is not read (that is a scan of the
    /// object at old heads); an open-ended run stands for it.
    const OPEN: usize = usize::MAX / 4;

    fn new(fresh: bool) -> Self {
        Seq {
            pieces: if fresh {
                Vec::new()
            } else {
                vec![Piece::Base(0, Self::OPEN)]
            },
            base: None,
        }
    }

    /// Split the runs so one starts at `index`; returns its position.
    fn cut(&mut self, index: usize) -> usize {
        let mut at = 0;
        for k in 0..self.pieces.len() {
            let len = self.pieces[k].len();
            if index == at {
                return k;
            }
            if index < at + len {
                let off = index - at;
                let tail = match &mut self.pieces[k] {
                    Piece::Base(start, n) => {
                        let tail = Piece::Base(*start + off, *n - off);
                        *n = off;
                        tail
                    }
                    Piece::Added(v) => Piece::Added(v.split_off(off)),
                };
                self.pieces.insert(k + 1, tail);
                return k + 1;
            }
            at += len;
        }
        self.pieces.len()
    }

    fn insert(&mut self, index: usize, values: Vec<Value>) {
        if values.is_empty() {
            return;
        }
        let k = self.cut(index);
        self.pieces.insert(k, Piece::Added(values));
    }

    fn remove(&mut self, index: usize, len: usize) -> Vec<Piece> {
        let a = self.cut(index);
        let b = self.cut(index.saturating_add(len));
        self.pieces.drain(a..b).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use automerge::{AutoCommit, ROOT, ScalarValue, transaction::Transactable};

    use super::*;
    use crate::history::json_at;

    /// Check [`diff`] between every pair of `points`, both ways: applied in
    /// order to the earlier version the patches give the later one, and
    /// each `old` is what applying the patch replaced or removed.
    fn check_all(doc: &Automerge, points: &[Vec<ChangeHash>]) {
        for a in points {
            for b in points {
                let patches = diff(doc, a, b).unwrap();
                let mut state = json_at(doc, Some(a));
                for p in &patches {
                    let replaced = apply_patch(&mut state, p)
                        .unwrap_or_else(|e| panic!("{p} does not apply ({a:?} → {b:?}): {e}"));
                    assert_eq!(
                        p.get("old").cloned().unwrap_or(Value::Null),
                        replaced,
                        "old of {p} ({a:?} → {b:?})"
                    );
                }
                assert_eq!(state, json_at(doc, Some(b)), "{a:?} → {b:?}: {patches:#?}");
            }
        }
    }

    fn text(doc: &AutoCommit, obj: &ObjId, key: &str) -> ObjId {
        doc.get(obj, key).unwrap().unwrap().1
    }

    #[test]
    fn patches_and_old_values_between_any_two_versions() {
        let mut doc = AutoCommit::new();
        let mut points = vec![];
        let notes = doc.put_object(ROOT, "notes", ObjType::Text).unwrap();
        doc.splice_text(&notes, 0, 0, "héllo 🌍 world, notes")
            .unwrap();
        let list = doc.put_object(ROOT, "learnings", ObjType::List).unwrap();
        for i in 0..4 {
            let item = doc.insert_object(&list, i, ObjType::Map).unwrap();
            doc.put(&item, "id", format!("lrn_{i}")).unwrap();
            let t = doc.put_object(&item, "text", ObjType::Text).unwrap();
            doc.splice_text(&t, 0, 0, &format!("fact number {i}"))
                .unwrap();
        }
        doc.put(ROOT, "count", ScalarValue::counter(1)).unwrap();
        let tags = doc.put_object(ROOT, "tags", ObjType::List).unwrap();
        for (i, t) in ["a", "b", "c"].iter().enumerate() {
            doc.insert(&tags, i, *t).unwrap();
        }
        doc.put(ROOT, "title", "first").unwrap();
        doc.commit();
        points.push(doc.get_heads());

        // Plain edits, each its own version.
        doc.splice_text(&notes, 6, 3, "").unwrap();
        doc.commit();
        points.push(doc.get_heads());
        let first = doc.get(&list, 1).unwrap().unwrap().1;
        let first_text = text(&doc, &first, "text");
        doc.splice_text(&first_text, 5, 0, "really ").unwrap();
        doc.delete(&list, 2).unwrap();
        doc.increment(ROOT, "count", 5).unwrap();
        doc.put(&tags, 1, "B").unwrap();
        doc.commit();
        points.push(doc.get_heads());

        // Concurrent: one side edits a learning the other deletes, both
        // set the title and the same new key to different objects.
        let mut other = doc.fork();
        let doomed = doc.get(&list, 0).unwrap().unwrap().1;
        let doomed_text = text(&doc, &doomed, "text");
        doc.splice_text(&doomed_text, 0, 4, "FACT").unwrap();
        doc.put(ROOT, "title", "mine").unwrap();
        let mine = doc.put_object(ROOT, "extra", ObjType::Map).unwrap();
        doc.put(&mine, "by", "doc").unwrap();
        doc.commit();
        points.push(doc.get_heads());
        other.delete(&list, 0).unwrap();
        other.put(ROOT, "title", "theirs").unwrap();
        let theirs = other.put_object(ROOT, "extra", ObjType::List).unwrap();
        other.insert(&theirs, 0, "by other").unwrap();
        other.splice_text(&notes, 0, 0, ">> ").unwrap();
        other.increment(ROOT, "count", 2).unwrap();
        other.commit();
        points.push(other.get_heads());
        doc.merge(&mut other).unwrap();
        points.push(doc.get_heads());

        // A top-level object replaced by a new one, another removed, a
        // learning added and its text typed in.
        let fresh = doc.put_object(ROOT, "notes", ObjType::Text).unwrap();
        doc.splice_text(&fresh, 0, 0, "new notes").unwrap();
        doc.delete(ROOT, "tags").unwrap();
        let added = doc.insert_object(&list, 0, ObjType::Map).unwrap();
        doc.put(&added, "id", "lrn_new").unwrap();
        let files = doc.put_object(&added, "files", ObjType::List).unwrap();
        doc.insert(&files, 0, "src/lib.rs").unwrap();
        doc.commit();
        points.push(doc.get_heads());
        doc.splice_text(&fresh, 3, 1, "").unwrap();
        doc.delete(&files, 0).unwrap();
        doc.commit();
        points.push(doc.get_heads());

        check_all(doc.document(), &points);
    }

    /// Random edits by two writers who merge now and then.
    #[test]
    fn random_histories_diff_both_ways() {
        for seed in 1..=5u64 {
            let mut rng = seed;
            let mut next = move |n: usize| {
                rng = rng
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((rng >> 33) as usize) % n.max(1)
            };
            let mut a = AutoCommit::new();
            let notes = a.put_object(ROOT, "notes", ObjType::Text).unwrap();
            let list = a.put_object(ROOT, "items", ObjType::List).unwrap();
            a.commit();
            let mut b = a.fork();
            let mut points = vec![a.get_heads()];
            for step in 0..40 {
                let doc = if next(2) == 0 { &mut a } else { &mut b };
                let len = doc.length(&notes);
                let items = doc.length(&list);
                match next(9) {
                    0 | 1 => {
                        let at = next(len + 1);
                        doc.splice_text(&notes, at, 0, &format!("w{step} "))
                            .unwrap();
                    }
                    2 if len > 0 => {
                        let at = next(len);
                        let n = 1 + next((len - at).min(4));
                        doc.splice_text(&notes, at, n as isize, "").unwrap();
                    }
                    3 => {
                        let item = doc
                            .insert_object(&list, next(items + 1), ObjType::Map)
                            .unwrap();
                        doc.put(&item, "n", step as i64).unwrap();
                        let t = doc.put_object(&item, "t", ObjType::Text).unwrap();
                        doc.splice_text(&t, 0, 0, "item text").unwrap();
                    }
                    4 if items > 0 => doc.delete(&list, next(items)).unwrap(),
                    5 if items > 0 => {
                        let item = doc.get(&list, next(items)).unwrap().unwrap().1;
                        let t = text(doc, &item, "t");
                        doc.splice_text(&t, 0, 1, "I").unwrap();
                        doc.put(&item, "n", -(step as i64)).unwrap();
                    }
                    // Objects set at one key by both writers: conflicts
                    // whose winner changes as they merge.
                    6 => {
                        let typ = if next(2) == 0 {
                            ObjType::Map
                        } else {
                            ObjType::List
                        };
                        let o = doc.put_object(ROOT, "o", typ).unwrap();
                        match typ {
                            ObjType::Map => doc.put(&o, "step", step as i64).unwrap(),
                            _ => doc.insert(&o, 0, step as i64).unwrap(),
                        }
                    }
                    7 if items > 0 => {
                        let item = doc.get(&list, next(items)).unwrap().unwrap().1;
                        let meta = doc.put_object(&item, "meta", ObjType::Map).unwrap();
                        doc.put(&meta, "by", step as i64).unwrap();
                    }
                    _ => doc.put(ROOT, "k", format!("v{step}")).unwrap(),
                }
                doc.commit();
                if next(4) == 0 {
                    a.merge(&mut b).unwrap();
                    b.merge(&mut a).unwrap();
                }
                points.push(a.get_heads());
            }
            a.merge(&mut b).unwrap();
            points.push(a.get_heads());
            // Every third version keeps the pairs few.
            let picked: Vec<_> = points.into_iter().step_by(3).collect();
            check_all(a.document(), &picked);
        }
    }

    #[test]
    fn runs_split_insert_and_remove() {
        let mut seq = Seq::new(false);
        seq.insert(2, vec![json!("x"), json!("y")]);
        assert_eq!(
            seq.remove(1, 3),
            vec![
                Piece::Base(1, 1),
                Piece::Added(vec![json!("x"), json!("y")])
            ]
        );
        assert_eq!(seq.remove(0, 2), vec![Piece::Base(0, 1), Piece::Base(2, 1)]);
        let mut fresh = Seq::new(true);
        fresh.insert(0, vec![json!(1)]);
        fresh.insert(5, vec![json!(2)]);
        assert_eq!(
            fresh.remove(0, 2),
            vec![Piece::Added(vec![json!(1)]), Piece::Added(vec![json!(2)])]
        );
    }
}
