//! Readers: the whole document, or just the part a hot path needs.
//!
//! All of them are lenient (see [`crate::value`]): list items that are not
//! maps are skipped, missing or ill-typed scalars take their defaults, and
//! strings may be scalars or Text. Only a schema newer than this build is an
//! error, because guessing at a future layout would mislead.

use std::collections::BTreeMap;

use automerge::{ChangeHash, ObjId, ROOT, ReadDoc};

use super::types::{
    Decision, FeatureDoc, FeatureStatus, Importance, KeyFile, Learning, Participant, PullRequest,
    QueueEntry, QueueStatus, RepoRef, Sandbox, Session, SessionStatus, Usage,
};
use crate::error::SchemaError;
use crate::migrate;
use crate::value::DocView;

/// The current document.
///
/// # Errors
/// [`SchemaError::UnsupportedSchema`] if the document is newer than this build.
pub fn read<D: ReadDoc + ?Sized>(doc: &D) -> Result<FeatureDoc, SchemaError> {
    read_view(DocView::new(doc, None))
}

/// The feature's repository, if it has one (without reading the rest).
pub fn read_repo<D: ReadDoc + ?Sized>(doc: &D) -> Option<RepoRef> {
    let v = DocView::new(doc, None);
    v.map(&ROOT, "repo").map(|r| repo_at(&v, &r))
}

fn repo_at<D: ReadDoc + ?Sized>(v: &DocView<'_, D>, r: &ObjId) -> RepoRef {
    RepoRef {
        url: v.string(r, "url"),
        base_branch: v.string(r, "base_branch"),
        feature_branch: v.str(r, "feature_branch"),
        full_clone: v.bool(r, "full_clone").unwrap_or(false),
    }
}

/// The document as it was at `heads` (for example a single change hash from
/// the history).
///
/// # Errors
/// [`SchemaError::UnknownHeads`] if `doc` lacks any of `heads`, and
/// [`SchemaError::UnsupportedSchema`] if the document was newer than this
/// build at that point.
pub fn read_at<D: ReadDoc + ?Sized>(
    doc: &D,
    heads: &[ChangeHash],
) -> Result<FeatureDoc, SchemaError> {
    // `get_missing_deps` also reports dependencies of changes waiting in the
    // document's queue; only the requested heads matter here.
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

fn read_view<D: ReadDoc + ?Sized>(v: DocView<'_, D>) -> Result<FeatureDoc, SchemaError> {
    let schema = migrate::check_view(v)?;
    let root = &ROOT;
    Ok(FeatureDoc {
        schema,
        feature_id: v.string(root, "feature_id"),
        title: v.string(root, "title"),
        description: v.string(root, "description"),
        status: v
            .str(root, "status")
            .map(FeatureStatus::from)
            .unwrap_or_default(),
        repo: v.map(root, "repo").map(|r| repo_at(&v, &r)),
        created_by: v.string(root, "created_by"),
        created_at: v.i64(root, "created_at").unwrap_or_default(),
        participants: map_of(v, "participants", |p| Participant {
            name: v.string(p, "name"),
            role: v.string(p, "role"),
        }),
        sessions: map_of(v, "sessions", |s| session(v, s)),
        queue: v
            .maps_in(root, "queue")
            .iter()
            .map(|q| queue_entry(v, q))
            .collect(),
        learnings: v
            .maps_in(root, "learnings")
            .iter()
            .map(|l| learning(v, l))
            .collect(),
        decisions: v
            .maps_in(root, "decisions")
            .iter()
            .map(|d| decision(v, d))
            .collect(),
        key_files: map_of(v, "key_files", |k| KeyFile {
            note: v.string(k, "note"),
            sessions: v.strings_in(k, "sessions"),
        }),
        notes: v.string(root, "notes"),
    })
}

/// The entries of the root map `key` whose values are maps, read with `f`.
fn map_of<D: ReadDoc + ?Sized, T>(
    v: DocView<'_, D>,
    key: &str,
    f: impl Fn(&ObjId) -> T,
) -> BTreeMap<String, T> {
    let Some(map) = v.map(&ROOT, key) else {
        return BTreeMap::new();
    };
    v.keys(&map)
        .into_iter()
        .filter_map(|k| {
            let obj = v.map(&map, k.as_str())?;
            Some((k, f(&obj)))
        })
        .collect()
}

fn session<D: ReadDoc + ?Sized>(v: DocView<'_, D>, s: &ObjId) -> Session {
    Session {
        title: v.string(s, "title"),
        scope: v.string(s, "scope"),
        status: v
            .str(s, "status")
            .map(SessionStatus::from)
            .unwrap_or_default(),
        depends_on: v.strings_in(s, "depends_on"),
        created_by: v.string(s, "created_by"),
        created_at: v.i64(s, "created_at").unwrap_or_default(),
        sandbox: v.map(s, "sandbox").map(|b| Sandbox {
            backend: v.string(&b, "backend"),
            state: v.string(&b, "state"),
            workspace_ready: v.bool(&b, "workspace_ready").unwrap_or_default(),
            branch: v.str(&b, "branch"),
            head: v.str(&b, "head"),
            detail: v.str(&b, "detail"),
        }),
        transcript: v.str(s, "transcript"),
        files_changed: v.strings_in(s, "files_changed"),
        pr: v.map(s, "pr").map(|p| PullRequest {
            url: v.string(&p, "url"),
            number: v.u64(&p, "number").unwrap_or_default(),
            state: v.string(&p, "state"),
        }),
        usage: v
            .map(s, "usage")
            .map(|u| Usage {
                input_tokens: v.u64(&u, "input_tokens").unwrap_or_default(),
                output_tokens: v.u64(&u, "output_tokens").unwrap_or_default(),
                cost_usd: v.f64(&u, "cost_usd").unwrap_or_default(),
            })
            .unwrap_or_default(),
    }
}

fn queue_entry<D: ReadDoc + ?Sized>(v: DocView<'_, D>, q: &ObjId) -> QueueEntry {
    QueueEntry {
        id: v.string(q, "id"),
        session_id: v.string(q, "session_id"),
        author: v.string(q, "author"),
        text: v.string(q, "text"),
        created_at: v.i64(q, "created_at").unwrap_or_default(),
        status: queue_status(v, q),
        started_at: v.i64(q, "started_at"),
        finished_at: v.i64(q, "finished_at"),
        error: v.str(q, "error"),
        commit: v.str(q, "commit"),
    }
}

pub(super) fn queue_status<D: ReadDoc + ?Sized>(v: DocView<'_, D>, q: &ObjId) -> QueueStatus {
    v.str(q, "status")
        .map(QueueStatus::from)
        .unwrap_or_default()
}

fn learning<D: ReadDoc + ?Sized>(v: DocView<'_, D>, l: &ObjId) -> Learning {
    Learning {
        id: v.string(l, "id"),
        text: v.string(l, "text"),
        author: v.string(l, "author"),
        from_session: v.str(l, "from_session"),
        importance: v
            .str(l, "importance")
            .map(Importance::from)
            .unwrap_or_default(),
        files: v.strings_in(l, "files"),
        created_at: v.i64(l, "created_at").unwrap_or_default(),
    }
}

fn decision<D: ReadDoc + ?Sized>(v: DocView<'_, D>, d: &ObjId) -> Decision {
    Decision {
        id: v.string(d, "id"),
        decision: v.string(d, "decision"),
        rationale: v.string(d, "rationale"),
        alternatives: v.strings_in(d, "alternatives"),
        author: v.string(d, "author"),
        from_session: v.str(d, "from_session"),
        created_at: v.i64(d, "created_at").unwrap_or_default(),
    }
}

// Partial readers. They read the current state only, skip the schema check
// (the server checks a document once, when it loads it), and touch only the
// objects they need, so they stay cheap on hot paths.

/// One session, or `None` if the document has no session `session_id`.
pub fn read_session<D: ReadDoc + ?Sized>(doc: &D, session_id: &str) -> Option<Session> {
    let v = DocView::new(doc, None);
    let sessions = v.map(&ROOT, "sessions")?;
    let obj = v.map(&sessions, session_id)?;
    Some(session(v, &obj))
}

/// Title and status: what a listing shows, without reading the rest.
pub fn read_summary<D: ReadDoc + ?Sized>(doc: &D) -> (String, FeatureStatus) {
    let v = DocView::new(doc, None);
    let status = v
        .str(&ROOT, "status")
        .map(FeatureStatus::from)
        .unwrap_or_default();
    (v.string(&ROOT, "title"), status)
}

/// The ids of all sessions, sorted.
pub fn session_ids<D: ReadDoc + ?Sized>(doc: &D) -> Vec<String> {
    let v = DocView::new(doc, None);
    v.map(&ROOT, "sessions")
        .map(|s| v.keys(&s))
        .unwrap_or_default()
}

/// The number of items in `queue` (O(1); counts any malformed items that
/// [`read`] would skip, which is the right measure for size limits).
pub fn queue_len<D: ReadDoc + ?Sized>(doc: &D) -> usize {
    list_len(doc, "queue")
}

/// The number of items in `learnings` (see [`queue_len`]).
pub fn learnings_len<D: ReadDoc + ?Sized>(doc: &D) -> usize {
    list_len(doc, "learnings")
}

/// The number of items in `decisions` (see [`queue_len`]).
pub fn decisions_len<D: ReadDoc + ?Sized>(doc: &D) -> usize {
    list_len(doc, "decisions")
}

fn list_len<D: ReadDoc + ?Sized>(doc: &D, key: &str) -> usize {
    let v = DocView::new(doc, None);
    v.list(&ROOT, key).map_or(0, |l| v.len(&l))
}

/// The first queue entry with id `id`.
pub fn find_queue_entry<D: ReadDoc + ?Sized>(doc: &D, id: &str) -> Option<QueueEntry> {
    let v = DocView::new(doc, None);
    let obj = find_in_list(v, "queue", id)?;
    Some(queue_entry(v, &obj))
}

/// The first entry of the root list `key` whose `id` is `id`.
pub(super) fn find_in_list<D: ReadDoc + ?Sized>(
    v: DocView<'_, D>,
    key: &str,
    id: &str,
) -> Option<ObjId> {
    v.maps_in(&ROOT, key)
        .into_iter()
        .find(|item| v.str(item, "id").as_deref() == Some(id))
}

/// How many of `session_id`'s queue entries are not finished (terminal);
/// the server caps this per session.
pub fn unfinished_queue_entries<D: ReadDoc + ?Sized>(doc: &D, session_id: &str) -> usize {
    let v = DocView::new(doc, None);
    v.maps_in(&ROOT, "queue")
        .iter()
        .filter(|q| {
            v.str(q, "session_id").as_deref() == Some(session_id)
                && !queue_status(v, q).is_terminal()
        })
        .count()
}

/// Unfinished entries of `session_id` written by `author`: what a per-user
/// queue limit counts.
pub fn unfinished_queue_entries_by<D: ReadDoc + ?Sized>(
    doc: &D,
    session_id: &str,
    author: &str,
) -> usize {
    let v = DocView::new(doc, None);
    v.maps_in(&ROOT, "queue")
        .iter()
        .filter(|q| {
            v.str(q, "session_id").as_deref() == Some(session_id)
                && v.str(q, "author").as_deref() == Some(author)
                && !queue_status(v, q).is_terminal()
        })
        .count()
}

/// Every queue entry in list order with the id of its map object (whose
/// actor tells who created it): what the server checks authorship with.
pub fn queue_entries_with_objects<D: ReadDoc + ?Sized>(doc: &D) -> Vec<(ObjId, QueueEntry)> {
    let v = DocView::new(doc, None);
    v.maps_in(&ROOT, "queue")
        .into_iter()
        .map(|q| {
            let entry = queue_entry(v, &q);
            (q, entry)
        })
        .collect()
}

/// The entries still to run or running (`queued`, `dispatched`, `running`)
/// with their list items, in queue order. Settled entries cost one field
/// read each, so this stays cheap on a long queue.
pub fn open_queue_entries_with_objects<D: ReadDoc + ?Sized>(doc: &D) -> Vec<(ObjId, QueueEntry)> {
    let v = DocView::new(doc, None);
    v.maps_in(&ROOT, "queue")
        .into_iter()
        .filter(|q| {
            matches!(
                queue_status(v, q),
                QueueStatus::Queued | QueueStatus::Dispatched | QueueStatus::Running
            )
        })
        .map(|q| {
            let entry = queue_entry(v, &q);
            (q, entry)
        })
        .collect()
}

/// The first `queued` entry of `session_id` in queue order: the next prompt
/// to dispatch.
pub fn next_queued<D: ReadDoc + ?Sized>(doc: &D, session_id: &str) -> Option<QueueEntry> {
    let v = DocView::new(doc, None);
    v.maps_in(&ROOT, "queue")
        .into_iter()
        .find(|q| {
            v.str(q, "session_id").as_deref() == Some(session_id)
                && queue_status(v, q) == QueueStatus::Queued
        })
        .map(|q| queue_entry(v, &q))
}
