//! The document as JSON at some heads, read object by object.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use automerge::{Automerge, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, hydrate};
use base64::Engine;
use serde_json::{Value, json};

use super::{DocHistory, RENDERED_KEPT};

/// A scalar as JSON: bytes as base64, counters and timestamps as numbers.
pub(super) fn scalar_json(s: &ScalarValue) -> Value {
    match s {
        ScalarValue::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ScalarValue::Str(s) => json!(s.as_str()),
        ScalarValue::Int(i) => json!(i),
        ScalarValue::Uint(u) => json!(u),
        ScalarValue::F64(f) => json!(f),
        ScalarValue::Counter(c) => json!(i64::from(c)),
        ScalarValue::Timestamp(t) => json!(t),
        ScalarValue::Boolean(b) => json!(b),
        ScalarValue::Null | ScalarValue::Unknown { .. } => Value::Null,
    }
}

/// A hydrated value as JSON (text as a string).
pub fn to_json(v: &hydrate::Value) -> Value {
    match v {
        hydrate::Value::Scalar(s) => scalar_json(s),
        hydrate::Value::Text(t) => json!(t.to_string()),
        hydrate::Value::List(l) => Value::Array(l.iter().map(|x| to_json(&x.value)).collect()),
        hydrate::Value::Map(m) => {
            let mut out: Vec<(&String, Value)> =
                m.iter().map(|(k, v)| (k, to_json(&v.value))).collect();
            out.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(out.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
    }
}

/// The document (at `heads`, or now) as JSON, the same as [`to_json`] of
/// its `hydrate`, read object by object: `hydrate` builds each text as a
/// tree of characters, several times slower than reading the string for a
/// feature whose notes have grown long.
///
/// The top-level objects are read on workers, one per core (see
/// [`spread`]): `&Automerge` reads are independent, and one long history
/// should not take one core's time on a machine with several.
pub fn json_at(doc: &Automerge, heads: Option<&[ChangeHash]>) -> Value {
    let items: Vec<(String, automerge::Value<'_>, ObjId)> = match heads {
        Some(h) => doc
            .map_range_at(ObjId::Root, .., h)
            .map(|i| (i.key.to_string(), i.value.clone().into_value(), i.id()))
            .collect(),
        None => doc
            .map_range(ObjId::Root, ..)
            .map(|i| (i.key.to_string(), i.value.clone().into_value(), i.id()))
            .collect(),
    };
    let values = spread(
        &items,
        |(_, value, id)| match value {
            automerge::Value::Object(ObjType::Text) => doc.length(id),
            automerge::Value::Object(_) => doc.length(id).saturating_mul(32),
            automerge::Value::Scalar(_) => 0,
        },
        |(_, value, id)| match value {
            automerge::Value::Object(t) => object_json(doc, id, *t, heads),
            automerge::Value::Scalar(s) => scalar_json(s),
        },
    );
    let values = values.into_iter().map(|v| v.unwrap_or(Value::Null));
    Value::Object(
        items
            .into_iter()
            .zip(values)
            .map(|((k, _, _), v)| (k, v))
            .collect(),
    )
}

pub(super) fn object_json(
    doc: &Automerge,
    obj: &ObjId,
    typ: ObjType,
    heads: Option<&[ChangeHash]>,
) -> Value {
    // An id is made only for objects: most values are scalars.
    let child = |value: automerge::ValueRef<'_>, id: &dyn Fn() -> ObjId| match value {
        automerge::ValueRef::Object(t) => object_json(doc, &id(), t, heads),
        scalar => match scalar.into_value() {
            automerge::Value::Scalar(s) => scalar_json(&s),
            automerge::Value::Object(_) => Value::Null,
        },
    };
    match typ {
        ObjType::Map | ObjType::Table => {
            let items: Box<dyn Iterator<Item = automerge::iter::MapRangeItem<'_>>> = match heads {
                Some(h) => Box::new(doc.map_range_at(obj, .., h)),
                None => Box::new(doc.map_range(obj, ..)),
            };
            Value::Object(
                items
                    .map(|item| {
                        let value = child(item.value.clone(), &|| item.id());
                        (item.key.into_owned(), value)
                    })
                    .collect(),
            )
        }
        ObjType::List => {
            let items: Box<dyn Iterator<Item = automerge::iter::ListRangeItem<'_>>> = match heads {
                Some(h) => Box::new(doc.list_range_at(obj, .., h)),
                None => Box::new(doc.list_range(obj, ..)),
            };
            Value::Array(
                items
                    .map(|item| child(item.value.clone(), &|| item.id()))
                    .collect(),
            )
        }
        ObjType::Text => Value::String(
            match heads {
                Some(h) => doc.text_at(obj, h),
                None => doc.text(obj),
            }
            .unwrap_or_default(),
        ),
    }
}

/// The document at `heads`, as JSON (kept for the next ask).
pub fn at(doc: &Automerge, history: &mut DocHistory, heads: &[ChangeHash]) -> Arc<Value> {
    if let Some((_, v)) = history.rendered.iter().find(|(h, _)| h == heads) {
        return v.clone();
    }
    let value = Arc::new(json_at(doc, Some(heads)));
    remember(history, heads, value.clone());
    value
}

/// Keep a rendered version (the last few are reused).
fn remember(history: &mut DocHistory, heads: &[ChangeHash], value: Arc<Value>) {
    if history.rendered.iter().any(|(h, _)| h == heads) {
        return;
    }
    if history.rendered.len() >= RENDERED_KEPT {
        history.rendered.remove(0);
    }
    history.rendered.push((heads.to_vec(), value));
}

/// An empty value of an object type, as JSON.
pub(super) fn empty(t: ObjType) -> Value {
    match t {
        ObjType::Map | ObjType::Table => json!({}),
        ObjType::List => json!([]),
        ObjType::Text => json!(""),
    }
}

pub(super) fn value_json(v: &automerge::Value<'_>) -> Value {
    match v {
        automerge::Value::Object(t) => empty(*t),
        automerge::Value::Scalar(s) => scalar_json(s),
    }
}

/// Run `job` over every item of `jobs` on workers, one per core, each
/// taking the heaviest job left (`weight`, a guess): longest first keeps
/// the cores evenly busy, where a thread per job would have them contend.
/// Results come in the jobs' order; `None` for a job whose worker panicked.
pub(super) fn spread<J: Sync, T: Send>(
    jobs: &[J],
    weight: impl Fn(&J) -> usize,
    job: impl Fn(&J) -> T + Sync,
) -> Vec<Option<T>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(&jobs[i])));
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let done: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        out.push((i, job(&jobs[i])));
                    }
                    out
                })
            })
            .collect();
        running
            .into_iter()
            .map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    let mut results: Vec<Option<T>> = jobs.iter().map(|_| None).collect();
    for (i, value) in done.into_iter().flatten() {
        results[i] = Some(value);
    }
    results
}
