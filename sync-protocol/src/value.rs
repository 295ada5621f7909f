//! A tolerant, read-only view of an Automerge document, now or at past heads.
//!
//! Canopy documents are written by Rust (the server, the sidecar) and by JS
//! clients, old and new. The view therefore reads *meaning*, not
//! representation:
//!
//! - a string may be a scalar `Str` **or** a `Text` object: JS Automerge 3
//!   stores every plain JS string as `Text`, ids and statuses included;
//! - a number may be `Int`, `Uint`, `F64`, `Timestamp` or `Counter`;
//! - a missing or ill-typed value reads as absent (`None`), and the typed
//!   readers in [`crate::feature`] substitute their defaults.
//!
//! Every getter honours the view's heads, so the same code renders the
//! current document and any past version (the history browser).

use std::borrow::Cow;
use std::fmt;

use automerge::{ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value};

/// A document (or transaction) seen at `heads`, or at its current state when
/// `heads` is `None`.
pub struct DocView<'a, D: ?Sized> {
    doc: &'a D,
    heads: Option<&'a [ChangeHash]>,
}

impl<D: ?Sized> Clone for DocView<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: ?Sized> Copy for DocView<'_, D> {}

impl<D: ?Sized> fmt::Debug for DocView<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocView")
            .field("heads", &self.heads)
            .finish_non_exhaustive()
    }
}

impl<'a, D: ReadDoc + ?Sized> DocView<'a, D> {
    /// A view of `doc` at `heads` (`None`: the current state).
    pub fn new(doc: &'a D, heads: Option<&'a [ChangeHash]>) -> Self {
        Self { doc, heads }
    }

    /// The heads this view reads at, or `None` for the current state.
    pub fn heads(&self) -> Option<&'a [ChangeHash]> {
        self.heads
    }

    /// The raw value at `obj[prop]`, or `None` if it is missing or `obj` is
    /// not an object of this document.
    pub fn get(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<(Value<'a>, ObjId)> {
        let got = match self.heads {
            None => self.doc.get(obj, prop),
            Some(heads) => self.doc.get_at(obj, prop, heads),
        };
        got.ok().flatten()
    }

    /// The object at `obj[prop]` if it is of type `ty` (`Map` also accepts the
    /// legacy `Table`).
    pub fn object(&self, obj: &ObjId, prop: impl Into<Prop>, ty: ObjType) -> Option<ObjId> {
        match self.get(obj, prop)? {
            (Value::Object(found), id) if same_kind(found, ty) => Some(id),
            _ => None,
        }
    }

    /// The map at `obj[prop]`.
    pub fn map(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<ObjId> {
        self.object(obj, prop, ObjType::Map)
    }

    /// The list at `obj[prop]`.
    pub fn list(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<ObjId> {
        self.object(obj, prop, ObjType::List)
    }

    /// The scalar at `obj[prop]`, if it is one.
    pub fn scalar(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<Cow<'a, ScalarValue>> {
        match self.get(obj, prop)? {
            (Value::Scalar(s), _) => Some(s),
            (Value::Object(_), _) => None,
        }
    }

    /// The string at `obj[prop]`, whether a scalar `Str` or a `Text` object.
    pub fn str(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<String> {
        match self.get(obj, prop)? {
            (Value::Scalar(s), _) => s.as_str().map(str::to_owned),
            (Value::Object(ObjType::Text), id) => self.text(&id),
            (Value::Object(_), _) => None,
        }
    }

    /// [`Self::str`], or `""` when absent.
    pub fn string(&self, obj: &ObjId, prop: impl Into<Prop>) -> String {
        self.str(obj, prop).unwrap_or_default()
    }

    /// The content of the text object `obj`.
    pub fn text(&self, obj: &ObjId) -> Option<String> {
        match self.heads {
            None => self.doc.text(obj),
            Some(heads) => self.doc.text_at(obj, heads),
        }
        .ok()
    }

    /// A signed integer from any numeric type. Floats are truncated;
    /// non-finite floats and out-of-range unsigned values read as absent.
    pub fn i64(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<i64> {
        scalar_i64(&*self.scalar(obj, prop)?)
    }

    /// A non-negative integer from any numeric type; negatives read as
    /// absent.
    pub fn u64(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<u64> {
        scalar_u64(&*self.scalar(obj, prop)?)
    }

    /// A float from any numeric type.
    pub fn f64(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<f64> {
        self.scalar(obj, prop)?.as_f64()
    }

    /// A boolean.
    pub fn bool(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<bool> {
        self.scalar(obj, prop)?.as_bool()
    }

    /// The number of entries of a map or items of a list.
    pub fn len(&self, obj: &ObjId) -> usize {
        match self.heads {
            None => self.doc.length(obj),
            Some(heads) => self.doc.length_at(obj, heads),
        }
    }

    /// The keys of a map, sorted.
    pub fn keys(&self, obj: &ObjId) -> Vec<String> {
        match self.heads {
            None => self.doc.keys(obj).collect(),
            Some(heads) => self.doc.keys_at(obj, heads).collect(),
        }
    }

    /// The items of a list, in order.
    pub fn items(&self, list: &ObjId) -> Vec<(Value<'a>, ObjId)> {
        match self.heads {
            None => self.doc.values(list).collect(),
            Some(heads) => self.doc.values_at(list, heads).collect(),
        }
    }

    /// The items of the list at `obj[prop]` that are maps; other items are
    /// skipped. A missing list reads as empty.
    pub fn maps_in(&self, obj: &ObjId, prop: impl Into<Prop>) -> Vec<ObjId> {
        let Some(list) = self.list(obj, prop) else {
            return Vec::new();
        };
        self.items(&list)
            .into_iter()
            .filter_map(|(v, id)| match v {
                Value::Object(ty) if same_kind(ty, ObjType::Map) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// The strings (scalar or Text) in the list at `obj[prop]`; other items
    /// are skipped. A missing list reads as empty.
    pub fn strings_in(&self, obj: &ObjId, prop: impl Into<Prop>) -> Vec<String> {
        let Some(list) = self.list(obj, prop) else {
            return Vec::new();
        };
        self.items(&list)
            .into_iter()
            .filter_map(|(v, id)| match v {
                Value::Scalar(s) => s.as_str().map(str::to_owned),
                Value::Object(ObjType::Text) => self.text(&id),
                Value::Object(_) => None,
            })
            .collect()
    }
}

fn same_kind(found: ObjType, wanted: ObjType) -> bool {
    match wanted {
        ObjType::Map | ObjType::Table => matches!(found, ObjType::Map | ObjType::Table),
        other => found == other,
    }
}

fn scalar_i64(s: &ScalarValue) -> Option<i64> {
    match s {
        ScalarValue::Uint(n) => i64::try_from(*n).ok(),
        ScalarValue::F64(f) if !f.is_finite() => None,
        // `as` saturates, which is the best a float can mean here.
        ScalarValue::F64(f) => Some(*f as i64),
        other => other.as_i64(),
    }
}

fn scalar_u64(s: &ScalarValue) -> Option<u64> {
    match s {
        ScalarValue::Uint(n) => Some(*n),
        ScalarValue::F64(f) if f.is_finite() && *f >= 0.0 => Some(*f as u64),
        ScalarValue::F64(_) => None,
        other => other.as_i64().and_then(|n| u64::try_from(n).ok()),
    }
}
