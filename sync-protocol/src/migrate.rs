//! Schema versions of the Feature document, and migrations between them.
//!
//! The root key `schema` holds the version. Readers and writers refuse a
//! document whose version is newer than [`SCHEMA_VERSION`]: this build would
//! silently drop or overwrite fields it does not know. Older documents are
//! brought up to date by [`migrate`], which applies the steps of an ordered
//! table; schema 2 is one more entry in that table.
//!
//! Only one peer (the server) should migrate a given document: two peers
//! that concurrently create the same missing container produce a conflict in
//! which one container, and whatever was put in it, loses.

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};

use crate::error::SchemaError;
use crate::feature::write::ensure_object;
use crate::value::DocView;

/// The Feature document schema this crate reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// The root containers of schema 1. The constructor and the migration create
/// them all, so that clients never race to create one.
pub const ROOT_CONTAINERS: [(&str, ObjType); 9] = [
    ("title", ObjType::Text),
    ("description", ObjType::Text),
    ("participants", ObjType::Map),
    ("sessions", ObjType::Map),
    ("queue", ObjType::List),
    ("learnings", ObjType::List),
    ("decisions", ObjType::List),
    ("key_files", ObjType::Map),
    ("notes", ObjType::Text),
];

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version found (0: the document had no `schema`).
    pub from: u64,
    /// The version now ([`SCHEMA_VERSION`]).
    pub to: u64,
}

impl Migration {
    /// Whether the migration changed the document.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// One step of the migration table: how to turn a document of version
/// `to - 1` (or older, for the first step) into version `to`.
struct Step<T> {
    to: u64,
    apply: fn(&mut T) -> Result<(), SchemaError>,
}

/// The steps, oldest first. The last `to` must equal [`SCHEMA_VERSION`].
fn steps<T: Transactable>() -> [Step<T>; 1] {
    [Step {
        to: 1,
        apply: initial_layout::<T>,
    }]
}

/// Schema 1: every root container present. Values already in the document
/// are kept; only missing or ill-typed containers are (re)created.
fn initial_layout<T: Transactable>(tx: &mut T) -> Result<(), SchemaError> {
    for (key, ty) in ROOT_CONTAINERS {
        ensure_object(tx, &ROOT, key, ty)?;
    }
    Ok(())
}

/// The document's `schema`, or `None` if it has none.
pub fn schema_version<D: ReadDoc + ?Sized>(doc: &D) -> Option<u64> {
    DocView::new(doc, None).u64(&ROOT, "schema")
}

/// The document's version (0 if it has none).
///
/// # Errors
/// [`SchemaError::UnsupportedSchema`] if it is newer than [`SCHEMA_VERSION`].
pub fn check_supported<D: ReadDoc + ?Sized>(doc: &D) -> Result<u64, SchemaError> {
    check_view(DocView::new(doc, None))
}

pub(crate) fn check_view<D: ReadDoc + ?Sized>(v: DocView<'_, D>) -> Result<u64, SchemaError> {
    let found = v.u64(&ROOT, "schema").unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(SchemaError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Bring the document in `tx` up to [`SCHEMA_VERSION`]. A current document
/// is left untouched (no operations, so no change is committed).
///
/// # Errors
/// [`SchemaError::UnsupportedSchema`] for a newer document.
pub fn migrate<T: Transactable>(tx: &mut T) -> Result<Migration, SchemaError> {
    let from = check_supported(tx)?;
    for step in steps::<T>() {
        if step.to > from {
            (step.apply)(tx)?;
            tx.put(ROOT, "schema", i64::try_from(step.to).unwrap_or(i64::MAX))?;
        }
    }
    Ok(Migration {
        from,
        to: SCHEMA_VERSION,
    })
}
