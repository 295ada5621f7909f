//! Verified authorship of what people write into feature documents.
//!
//! A queue entry, learning or decision names its `author`; the server knows
//! who really wrote it: the object was created by an Automerge actor, and
//! every actor is bound to one user ([`crate::attribution`]). A queued
//! prompt whose `author` is not its writer is marked `rejected` with the
//! reason and is never executed; a learning or decision with a false author
//! gets its real author written in. Both are audited. Entries the server
//! itself wrote (through the API, which already knows the caller) are
//! trusted.

use automerge::{Automerge, ObjId, ROOT, ReadDoc, transaction::Transactable};
use canopy_protocol::{
    ChangeMeta,
    feature::{self, QueueStatus, QueueUpdate, Writer},
    unix_ms_now,
};

use crate::attribution::{Attribution, SERVER};

/// One correction made to a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// What was corrected (`queue entry q_…`, `learning lrn_…`).
    pub what: String,
    /// The author the entry claimed.
    pub claimed: String,
    /// Who wrote it (a user id), or why that is unknown.
    pub writer: String,
}

/// Who created `obj`, as the attribution knows it.
fn writer_of(obj: &ObjId, attribution: &Attribution) -> Option<String> {
    match obj {
        ObjId::Root => None,
        ObjId::Id(_, actor, _) => attribution.owner(&actor.to_hex_string()),
    }
}

fn str_field(doc: &Automerge, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        (automerge::Value::Object(_), id) => doc.text(&id).ok(),
    }
}

/// Find entries whose author is not their writer and correct them in one
/// change. Returns what was corrected (nothing: no change is made).
pub fn correct_forged_authors(
    doc: &mut Automerge,
    attribution: &Attribution,
) -> Result<Vec<Correction>, String> {
    let mut reject_queue = Vec::new();
    let mut fix_author = Vec::new();
    for (list, kind) in [
        ("queue", "queue entry"),
        ("learnings", "learning"),
        ("decisions", "decision"),
    ] {
        let Ok(Some((_, list_id))) = doc.get(ROOT, list) else {
            continue;
        };
        for i in 0..doc.length(&list_id) {
            let Ok(Some((_, item))) = doc.get(&list_id, i) else {
                continue;
            };
            let claimed = str_field(doc, &item, "author").unwrap_or_default();
            let writer = writer_of(&item, attribution);
            if writer.as_deref() == Some(SERVER) || writer.as_deref() == Some(claimed.as_str()) {
                continue;
            }
            let id = str_field(doc, &item, "id").unwrap_or_default();
            let correction = Correction {
                what: format!("{kind} {id}"),
                claimed,
                writer: writer.clone().unwrap_or_else(|| "an unknown writer".into()),
            };
            if list == "queue" {
                let status = str_field(doc, &item, "status").unwrap_or_default();
                if status == QueueStatus::Queued.as_str() {
                    reject_queue.push((id, correction));
                }
            } else if let Some(user) = writer {
                fix_author.push((item, user, correction));
            }
        }
    }
    if reject_queue.is_empty() && fix_author.is_empty() {
        return Ok(vec![]);
    }
    let mut corrections = Vec::new();
    doc.transact_with(
        |_| ChangeMeta::now("verify authors").commit_options(),
        |tx| {
            for (id, c) in &reject_queue {
                let update = QueueUpdate::new(QueueStatus::Rejected, Writer::Server, unix_ms_now())
                    .with_error(format!(
                        "refused: the entry names {:?} as its author, but {} wrote it",
                        c.claimed, c.writer
                    ));
                feature::set_queue_status(tx, id, &update)?;
            }
            for (obj, user, _) in &fix_author {
                tx.put(obj, "author", user.as_str())?;
            }
            Ok::<_, canopy_protocol::SchemaError>(())
        },
    )
    .map_err(|f| f.error.to_string())?;
    corrections.extend(reject_queue.into_iter().map(|(_, c)| c));
    corrections.extend(fix_author.into_iter().map(|(_, _, c)| c));
    Ok(corrections)
}
