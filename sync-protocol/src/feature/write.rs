//! Writers: one function per kind of edit, generic over
//! [`Transactable`] so that they run inside `Automerge::transact_with` (the
//! server, through samod) and on an `AutoCommit` alike.
//!
//! Conventions, so that every Canopy writer produces the same document:
//!
//! - prose a person writes is a **Text** object (what JS Automerge 3 writes
//!   for a plain string), so concurrent edits merge character by character;
//!   an existing Text is edited in place with `update_text`;
//! - machine values (ids, statuses, authors, paths, URLs) are scalar
//!   strings; times are `Int` Unix milliseconds (what JS `Date.now()`
//!   becomes);
//! - a missing or ill-typed container is (re)created, so documents written
//!   by older or foreign clients can still be edited;
//! - ids are validated, and a document with a newer schema is refused.
//!
//! A writer that fails may have applied part of its edit to the transaction;
//! roll the transaction back (`transact_with` does so when the closure
//! returns an error).

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ScalarValue, Value};

use super::read::{find_in_list, queue_status};
use super::types::{
    FeatureStatus, NewDecision, NewFeature, NewLearning, NewQueueEntry, NewSession, Participant,
    PullRequest, QueueStatus, QueueUpdate, RepoRef, Sandbox, Session, SessionStatus, Usage,
};
use crate::change::ChangeMeta;
use crate::error::SchemaError;
use crate::ids;
use crate::migrate;
use crate::value::DocView;

/// Longest accepted key file path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Role recorded for the creator of a feature.
pub const OWNER_ROLE: &str = "owner";

/// A complete schema-1 document for a new feature, committed as one change
/// stamped with `new.created_at` and the message `create feature <id>`.
///
/// # Errors
/// [`SchemaError::InvalidId`] for a malformed feature id or creator.
pub fn new_feature_document(new: &NewFeature) -> Result<Automerge, SchemaError> {
    check_id("feature_id", ids::FEATURE_PREFIX, &new.feature_id)?;
    check_user("created_by", &new.created_by)?;
    if let Some(repo) = &new.repo {
        check_repo(repo)?;
    }
    let meta = ChangeMeta::at(
        format!("create feature {}", new.feature_id),
        new.created_at.div_euclid(1000),
    );
    let mut doc = Automerge::new();
    doc.transact_with(
        |_| meta.commit_options(),
        |tx| {
            migrate::migrate(tx)?;
            tx.put(ROOT, "feature_id", new.feature_id.as_str())?;
            put_text(tx, &ROOT, "title", &new.title)?;
            put_text(tx, &ROOT, "description", &new.description)?;
            tx.put(ROOT, "status", FeatureStatus::Active.as_str())?;
            put_repo(tx, new.repo.as_ref())?;
            tx.put(ROOT, "created_by", new.created_by.as_str())?;
            tx.put(ROOT, "created_at", new.created_at)?;
            set_participant(
                tx,
                &new.created_by,
                &Participant {
                    name: new.created_by_name.clone(),
                    role: OWNER_ROLE.to_owned(),
                },
            )
        },
    )
    .map_err(|failure| failure.error)?;
    Ok(doc)
}

/// Replace the title (edits the existing Text in place).
pub fn set_title<T: Transactable>(tx: &mut T, title: &str) -> Result<(), SchemaError> {
    writable(tx)?;
    put_text(tx, &ROOT, "title", title)
}

/// Replace the description.
pub fn set_description<T: Transactable>(tx: &mut T, description: &str) -> Result<(), SchemaError> {
    writable(tx)?;
    put_text(tx, &ROOT, "description", description)
}

/// Set the feature's status.
pub fn set_status<T: Transactable>(tx: &mut T, status: &FeatureStatus) -> Result<(), SchemaError> {
    writable(tx)?;
    tx.put(ROOT, "status", status.as_str())?;
    Ok(())
}

/// Set or clear (`null`) the repository.
pub fn set_repo<T: Transactable>(tx: &mut T, repo: Option<&RepoRef>) -> Result<(), SchemaError> {
    writable(tx)?;
    if let Some(repo) = repo {
        check_repo(repo)?;
    }
    put_repo(tx, repo)
}

/// Add or update a participant (the display mirror of the access list).
pub fn set_participant<T: Transactable>(
    tx: &mut T,
    user_id: &str,
    participant: &Participant,
) -> Result<(), SchemaError> {
    writable(tx)?;
    check_user("user_id", user_id)?;
    let participants = ensure_object(tx, &ROOT, "participants", ObjType::Map)?;
    let p = ensure_object(tx, &participants, user_id, ObjType::Map)?;
    tx.put(&p, "name", participant.name.as_str())?;
    tx.put(&p, "role", participant.role.as_str())?;
    Ok(())
}

/// Remove a participant; removing an absent one is not an error.
pub fn remove_participant<T: Transactable>(tx: &mut T, user_id: &str) -> Result<(), SchemaError> {
    writable(tx)?;
    let v = DocView::new(&*tx, None);
    if let Some(participants) = v.map(&ROOT, "participants")
        && v.get(&participants, user_id).is_some()
    {
        tx.delete(&participants, user_id)?;
    }
    Ok(())
}

/// Add a `pending` session and return it as written.
///
/// # Errors
/// Invalid ids, or [`SchemaError::AlreadyExists`] if the id is taken.
pub fn add_session<T: Transactable>(tx: &mut T, new: &NewSession) -> Result<Session, SchemaError> {
    writable(tx)?;
    check_id("session_id", ids::SESSION_PREFIX, &new.session_id)?;
    check_user("created_by", &new.created_by)?;
    for dep in &new.depends_on {
        check_id("depends_on", ids::SESSION_PREFIX, dep)?;
    }
    let sessions = ensure_object(tx, &ROOT, "sessions", ObjType::Map)?;
    if DocView::new(&*tx, None)
        .get(&sessions, new.session_id.as_str())
        .is_some()
    {
        return Err(SchemaError::AlreadyExists {
            kind: "session",
            id: new.session_id.clone(),
        });
    }
    let session = Session {
        title: new.title.clone(),
        scope: new.scope.clone(),
        status: SessionStatus::Pending,
        depends_on: new.depends_on.clone(),
        created_by: new.created_by.clone(),
        created_at: new.created_at,
        ..Session::default()
    };
    let s = tx.put_object(&sessions, new.session_id.as_str(), ObjType::Map)?;
    put_text(tx, &s, "title", &session.title)?;
    put_text(tx, &s, "scope", &session.scope)?;
    tx.put(&s, "status", session.status.as_str())?;
    put_strings(tx, &s, "depends_on", &session.depends_on)?;
    tx.put(&s, "created_by", session.created_by.as_str())?;
    tx.put(&s, "created_at", session.created_at)?;
    tx.put(&s, "sandbox", ScalarValue::Null)?;
    tx.put(&s, "transcript", ScalarValue::Null)?;
    put_strings(tx, &s, "files_changed", &session.files_changed)?;
    tx.put(&s, "pr", ScalarValue::Null)?;
    put_usage(tx, &s, &session.usage)?;
    Ok(session)
}

/// Set a session's status.
pub fn set_session_status<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    status: &SessionStatus,
) -> Result<(), SchemaError> {
    let s = session_obj(tx, session_id)?;
    tx.put(&s, "status", status.as_str())?;
    Ok(())
}

/// Set or clear (`null`) a session's sandbox.
pub fn set_session_sandbox<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    sandbox: Option<&Sandbox>,
) -> Result<(), SchemaError> {
    let s = session_obj(tx, session_id)?;
    let Some(sandbox) = sandbox else {
        tx.put(&s, "sandbox", ScalarValue::Null)?;
        return Ok(());
    };
    let b = ensure_object(tx, &s, "sandbox", ObjType::Map)?;
    tx.put(&b, "backend", sandbox.backend.as_str())?;
    tx.put(&b, "state", sandbox.state.as_str())?;
    tx.put(&b, "workspace_ready", sandbox.workspace_ready)?;
    put_opt_str(tx, &b, "branch", sandbox.branch.as_deref())?;
    put_opt_str(tx, &b, "head", sandbox.head.as_deref())?;
    // Optional since server API 5: absent rather than null when there is
    // nothing to say, as in documents written before it.
    match sandbox.detail.as_deref() {
        Some(detail) => tx.put(&b, "detail", detail)?,
        None if tx.get(&b, "detail")?.is_some() => tx.delete(&b, "detail")?,
        None => {}
    }
    Ok(())
}

/// Set or clear a session's transcript URL (`automerge:…`).
pub fn set_session_transcript<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    transcript: Option<&str>,
) -> Result<(), SchemaError> {
    let s = session_obj(tx, session_id)?;
    put_opt_str(tx, &s, "transcript", transcript)
}

/// Replace the list of files a session changed.
pub fn set_session_files_changed<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    files: &[String],
) -> Result<(), SchemaError> {
    let s = session_obj(tx, session_id)?;
    put_strings(tx, &s, "files_changed", files)
}

/// Set or clear a session's pull request.
pub fn set_session_pr<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    pr: Option<&PullRequest>,
) -> Result<(), SchemaError> {
    let s = session_obj(tx, session_id)?;
    let Some(pr) = pr else {
        tx.put(&s, "pr", ScalarValue::Null)?;
        return Ok(());
    };
    let p = ensure_object(tx, &s, "pr", ObjType::Map)?;
    tx.put(&p, "url", pr.url.as_str())?;
    tx.put(&p, "number", int(pr.number))?;
    tx.put(&p, "state", pr.state.as_str())?;
    Ok(())
}

/// Replace a session's usage totals. Only the server writes usage, so plain
/// scalars (not counters) are enough and stay simple for JS readers.
pub fn set_session_usage<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    usage: &Usage,
) -> Result<(), SchemaError> {
    let s = session_obj(tx, session_id)?;
    put_usage(tx, &s, usage)
}

/// Append a `queued` entry at the end of the queue.
///
/// # Errors
/// Invalid ids, an unknown session, or a duplicate entry id.
pub fn append_queue_entry<T: Transactable>(
    tx: &mut T,
    entry: &NewQueueEntry,
) -> Result<(), SchemaError> {
    writable(tx)?;
    check_id("id", ids::QUEUE_ENTRY_PREFIX, &entry.id)?;
    check_id("session_id", ids::SESSION_PREFIX, &entry.session_id)?;
    check_user("author", &entry.author)?;
    session_obj(tx, &entry.session_id)?;
    let queue = ensure_object(tx, &ROOT, "queue", ObjType::List)?;
    check_unique(tx, "queue", "queue entry", &entry.id)?;
    let q = append_map(tx, &queue)?;
    tx.put(&q, "id", entry.id.as_str())?;
    tx.put(&q, "session_id", entry.session_id.as_str())?;
    tx.put(&q, "author", entry.author.as_str())?;
    put_text(tx, &q, "text", &entry.text)?;
    tx.put(&q, "created_at", entry.created_at)?;
    tx.put(&q, "status", QueueStatus::Queued.as_str())?;
    Ok(())
}

/// Move queue entry `id` to `update.status`, enforcing
/// [`QueueStatus::check_transition`]. Sets `started_at` when the entry
/// starts running, `finished_at` when it becomes terminal, and `error` and
/// `commit` when given.
///
/// # Errors
/// [`SchemaError::NotFound`] for an unknown entry and
/// [`SchemaError::Transition`] for a forbidden change.
pub fn set_queue_status<T: Transactable>(
    tx: &mut T,
    id: &str,
    update: &QueueUpdate,
) -> Result<(), SchemaError> {
    writable(tx)?;
    let v = DocView::new(&*tx, None);
    let q = find_in_list(v, "queue", id).ok_or_else(|| SchemaError::NotFound {
        kind: "queue entry",
        id: id.to_owned(),
    })?;
    queue_status(v, &q)
        .check_transition(&update.status, update.by)
        .map_err(|source| SchemaError::Transition {
            id: id.to_owned(),
            source,
        })?;
    tx.put(&q, "status", update.status.as_str())?;
    if update.status == QueueStatus::Running {
        tx.put(&q, "started_at", update.at)?;
    }
    if update.status.is_terminal() {
        tx.put(&q, "finished_at", update.at)?;
    }
    if let Some(error) = &update.error {
        tx.put(&q, "error", error.as_str())?;
    }
    if let Some(commit) = &update.commit {
        tx.put(&q, "commit", commit.as_str())?;
    }
    Ok(())
}

/// Record the workspace commit made for a queue entry (by the sidecar, which
/// commits after the run and may do so before or after the server settles
/// the entry), without touching its status.
///
/// # Errors
/// [`SchemaError::NotFound`] for an unknown entry; an invalid commit id.
pub fn set_queue_commit<T: Transactable>(
    tx: &mut T,
    id: &str,
    commit: &str,
) -> Result<(), SchemaError> {
    writable(tx)?;
    if commit.is_empty() || commit.len() > 64 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SchemaError::InvalidValue {
            field: "commit",
            reason: "must be a hexadecimal commit id",
        });
    }
    let v = DocView::new(&*tx, None);
    let q = find_in_list(v, "queue", id).ok_or_else(|| SchemaError::NotFound {
        kind: "queue entry",
        id: id.to_owned(),
    })?;
    tx.put(&q, "commit", commit)?;
    Ok(())
}

/// Record what the commit after a run left: the commit id on the entry
/// (when there was one), and the session's files changed, branch and head.
/// The entry may be unknown to a replica that lags; the session state still
/// moves on.
///
/// # Errors
/// [`SchemaError::NotFound`] for an unknown session; invalid paths.
pub fn record_commit<T: Transactable>(
    tx: &mut T,
    session_id: &str,
    entry: &str,
    outcome: &crate::sidecar::CommitOutcome,
) -> Result<(), SchemaError> {
    if let Some(commit) = &outcome.commit {
        let _ = set_queue_commit(tx, entry, commit);
    }
    set_session_files_changed(tx, session_id, &outcome.files_changed)?;
    let current = super::read_session(&*tx, session_id).and_then(|s| s.sandbox);
    let sandbox = Sandbox {
        branch: outcome.branch.clone(),
        head: outcome.head.clone(),
        ..current.unwrap_or_else(|| Sandbox {
            backend: String::new(),
            state: "running".into(),
            workspace_ready: true,
            branch: None,
            head: None,
            detail: None,
        })
    };
    set_session_sandbox(tx, session_id, Some(&sandbox))
}

/// Append a learning.
pub fn add_learning<T: Transactable>(tx: &mut T, new: &NewLearning) -> Result<(), SchemaError> {
    writable(tx)?;
    check_id("id", ids::LEARNING_PREFIX, &new.id)?;
    check_user("author", &new.author)?;
    check_from_session(new.from_session.as_deref())?;
    let list = ensure_object(tx, &ROOT, "learnings", ObjType::List)?;
    check_unique(tx, "learnings", "learning", &new.id)?;
    let l = append_map(tx, &list)?;
    tx.put(&l, "id", new.id.as_str())?;
    put_text(tx, &l, "text", &new.text)?;
    tx.put(&l, "author", new.author.as_str())?;
    if let Some(session) = &new.from_session {
        tx.put(&l, "from_session", session.as_str())?;
    }
    tx.put(&l, "importance", new.importance.as_str())?;
    put_strings(tx, &l, "files", &new.files)?;
    tx.put(&l, "created_at", new.created_at)?;
    Ok(())
}

/// Append a decision.
pub fn add_decision<T: Transactable>(tx: &mut T, new: &NewDecision) -> Result<(), SchemaError> {
    writable(tx)?;
    check_id("id", ids::DECISION_PREFIX, &new.id)?;
    check_user("author", &new.author)?;
    check_from_session(new.from_session.as_deref())?;
    let list = ensure_object(tx, &ROOT, "decisions", ObjType::List)?;
    check_unique(tx, "decisions", "decision", &new.id)?;
    let d = append_map(tx, &list)?;
    tx.put(&d, "id", new.id.as_str())?;
    put_text(tx, &d, "decision", &new.decision)?;
    put_text(tx, &d, "rationale", &new.rationale)?;
    let alternatives = tx.put_object(&d, "alternatives", ObjType::List)?;
    for (i, alternative) in new.alternatives.iter().enumerate() {
        let t = tx.insert_object(&alternatives, i, ObjType::Text)?;
        tx.splice_text(&t, 0, 0, alternative)?;
    }
    tx.put(&d, "author", new.author.as_str())?;
    if let Some(session) = &new.from_session {
        tx.put(&d, "from_session", session.as_str())?;
    }
    tx.put(&d, "created_at", new.created_at)?;
    Ok(())
}

/// Mark `path` as a key file: set its note (if `note` is given) and record
/// `session_id` among the sessions that marked it (once).
pub fn mark_key_file<T: Transactable>(
    tx: &mut T,
    path: &str,
    note: Option<&str>,
    session_id: Option<&str>,
) -> Result<(), SchemaError> {
    writable(tx)?;
    check_path(path)?;
    check_from_session(session_id)?;
    let key_files = ensure_object(tx, &ROOT, "key_files", ObjType::Map)?;
    let k = ensure_object(tx, &key_files, path, ObjType::Map)?;
    match note {
        Some(note) => put_text(tx, &k, "note", note)?,
        None => {
            ensure_object(tx, &k, "note", ObjType::Text)?;
        }
    }
    let sessions = ensure_object(tx, &k, "sessions", ObjType::List)?;
    if let Some(session_id) = session_id {
        let v = DocView::new(&*tx, None);
        if !v.strings_in(&k, "sessions").iter().any(|s| s == session_id) {
            let end = v.len(&sessions);
            tx.insert(&sessions, end, session_id)?;
        }
    }
    Ok(())
}

/// Forget a key file; forgetting an unknown path is not an error.
pub fn unmark_key_file<T: Transactable>(tx: &mut T, path: &str) -> Result<(), SchemaError> {
    writable(tx)?;
    let v = DocView::new(&*tx, None);
    if let Some(key_files) = v.map(&ROOT, "key_files")
        && v.get(&key_files, path).is_some()
    {
        tx.delete(&key_files, path)?;
    }
    Ok(())
}

/// Replace the notes. The difference to the current text is applied as
/// splices, so concurrent edits elsewhere in the notes survive; prefer
/// [`splice_notes`] when the exact edit is known.
pub fn set_notes<T: Transactable>(tx: &mut T, notes: &str) -> Result<(), SchemaError> {
    writable(tx)?;
    let t = ensure_object(tx, &ROOT, "notes", ObjType::Text)?;
    tx.update_text(&t, notes)?;
    Ok(())
}

/// Delete `delete` characters at `pos` in the notes and insert `insert`
/// there. Positions count Unicode code points (Rust Automerge's default);
/// JS counts UTF-16 code units, so exchange cursors, not offsets, with JS.
pub fn splice_notes<T: Transactable>(
    tx: &mut T,
    pos: usize,
    delete: usize,
    insert: &str,
) -> Result<(), SchemaError> {
    writable(tx)?;
    let delete = isize::try_from(delete).map_err(|_| SchemaError::InvalidValue {
        field: "delete",
        reason: "too large",
    })?;
    let t = ensure_object(tx, &ROOT, "notes", ObjType::Text)?;
    tx.splice_text(&t, pos, delete, insert)?;
    Ok(())
}

/// The object at `parent[key]` if it has type `ty`; otherwise a new one put
/// there. A scalar string found where Text is wanted keeps its content.
pub(crate) fn ensure_object<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    ty: ObjType,
) -> Result<ObjId, SchemaError> {
    let v = DocView::new(&*tx, None);
    if let Some(id) = v.object(parent, key, ty) {
        return Ok(id);
    }
    let old = match (ty, v.get(parent, key)) {
        (ObjType::Text, Some((Value::Scalar(s), _))) => s.as_str().map(str::to_owned),
        _ => None,
    };
    let id = tx.put_object(parent, key, ty)?;
    if let Some(old) = old {
        tx.splice_text(&id, 0, 0, &old)?;
    }
    Ok(id)
}

fn writable<T: Transactable>(tx: &T) -> Result<(), SchemaError> {
    migrate::check_view(DocView::new(tx, None)).map(|_| ())
}

fn session_obj<T: Transactable>(tx: &mut T, session_id: &str) -> Result<ObjId, SchemaError> {
    writable(tx)?;
    let v = DocView::new(&*tx, None);
    v.map(&ROOT, "sessions")
        .and_then(|sessions| v.map(&sessions, session_id))
        .ok_or_else(|| SchemaError::NotFound {
            kind: "session",
            id: session_id.to_owned(),
        })
}

/// Text at `parent[key]`: edited in place if it already is Text.
fn put_text<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    value: &str,
) -> Result<(), SchemaError> {
    let existing = DocView::new(&*tx, None).object(parent, key, ObjType::Text);
    match existing {
        Some(t) => tx.update_text(&t, value)?,
        None => {
            let t = tx.put_object(parent, key, ObjType::Text)?;
            tx.splice_text(&t, 0, 0, value)?;
        }
    }
    Ok(())
}

fn put_opt_str<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    value: Option<&str>,
) -> Result<(), SchemaError> {
    match value {
        Some(s) => tx.put(parent, key, s)?,
        None => tx.put(parent, key, ScalarValue::Null)?,
    }
    Ok(())
}

/// A fresh list of scalar strings at `parent[key]`.
fn put_strings<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    values: &[String],
) -> Result<(), SchemaError> {
    let list = tx.put_object(parent, key, ObjType::List)?;
    for (i, value) in values.iter().enumerate() {
        tx.insert(&list, i, value.as_str())?;
    }
    Ok(())
}

fn put_repo<T: Transactable>(tx: &mut T, repo: Option<&RepoRef>) -> Result<(), SchemaError> {
    let Some(repo) = repo else {
        tx.put(ROOT, "repo", ScalarValue::Null)?;
        return Ok(());
    };
    let r = ensure_object(tx, &ROOT, "repo", ObjType::Map)?;
    tx.put(&r, "url", repo.url.as_str())?;
    tx.put(&r, "base_branch", repo.base_branch.as_str())?;
    put_opt_str(tx, &r, "feature_branch", repo.feature_branch.as_deref())?;
    // Written only when set: absent reads as `false`, as in older documents.
    if repo.full_clone {
        tx.put(&r, "full_clone", true)?;
    } else if tx.get(&r, "full_clone")?.is_some() {
        tx.delete(&r, "full_clone")?;
    }
    Ok(())
}

fn put_usage<T: Transactable>(tx: &mut T, s: &ObjId, usage: &Usage) -> Result<(), SchemaError> {
    let u = ensure_object(tx, s, "usage", ObjType::Map)?;
    tx.put(&u, "input_tokens", int(usage.input_tokens))?;
    tx.put(&u, "output_tokens", int(usage.output_tokens))?;
    tx.put(&u, "cost_usd", usage.cost_usd)?;
    Ok(())
}

fn append_map<T: Transactable>(tx: &mut T, list: &ObjId) -> Result<ObjId, SchemaError> {
    let end = tx.length(list);
    Ok(tx.insert_object(list, end, ObjType::Map)?)
}

/// JS numbers are what JS clients write for integers, and they read back as
/// `Int`; keep every integer an `Int`, saturating the (unreachable) top half
/// of `u64`.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn check_id(field: &'static str, prefix: &str, value: &str) -> Result<(), SchemaError> {
    if ids::is_valid_id(prefix, value) {
        Ok(())
    } else {
        Err(SchemaError::InvalidId {
            field,
            value: value.to_owned(),
        })
    }
}

fn check_user(field: &'static str, value: &str) -> Result<(), SchemaError> {
    if ids::is_valid_user_id(value) {
        Ok(())
    } else {
        Err(SchemaError::InvalidId {
            field,
            value: value.to_owned(),
        })
    }
}

fn check_from_session(session_id: Option<&str>) -> Result<(), SchemaError> {
    session_id.map_or(Ok(()), |s| check_id("from_session", ids::SESSION_PREFIX, s))
}

fn check_repo(repo: &RepoRef) -> Result<(), SchemaError> {
    if repo.url.trim().is_empty() {
        return Err(SchemaError::InvalidValue {
            field: "repo.url",
            reason: "must not be empty",
        });
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), SchemaError> {
    let reason = if path.is_empty() {
        "must not be empty"
    } else if path.len() > MAX_PATH_BYTES {
        "is too long"
    } else if path.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(SchemaError::InvalidValue {
        field: "path",
        reason,
    })
}

fn check_unique<T: Transactable>(
    tx: &T,
    list: &str,
    kind: &'static str,
    id: &str,
) -> Result<(), SchemaError> {
    match find_in_list(DocView::new(tx, None), list, id) {
        Some(_) => Err(SchemaError::AlreadyExists {
            kind,
            id: id.to_owned(),
        }),
        None => Ok(()),
    }
}
