//! The live feature context: the Feature document rendered as markdown for
//! the agent, and a task that keeps that file current on disk.
//!
//! OpenCode loads the file as instructions, so every session of a feature
//! starts from (and keeps up with) what the others learned and decided. The
//! file must stay readable whatever the document holds: old entries are
//! summarised, long texts are cut, and user-written text is quoted so it can
//! never add sections of its own. The output is a pure function of the
//! document (no clock), so an unchanged document gives an unchanged file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use canopy_protocol::feature::{
    Decision, FeatureDoc, Importance, KeyFile, Learning, QueueEntry, QueueStatus, Session,
};
use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::replica::{Replica, SharedReplica};

/// Learnings shown in full (the newest ones); older ones are summarised.
pub const FULL_LEARNINGS: usize = 60;
/// Decisions shown in full (the newest ones); older ones are summarised.
pub const FULL_DECISIONS: usize = 30;
/// Bytes the full learnings may take: a few huge learnings must not push the
/// file past what an agent reads comfortably.
pub const FULL_LEARNINGS_BUDGET: usize = 32_000;
/// Bytes the full decisions may take, for the same reason.
pub const FULL_DECISIONS_BUDGET: usize = 20_000;
/// Older learnings listed as one-line summaries before only a count remains.
pub const OLDER_LEARNINGS_LISTED: usize = 60;
/// Older decisions listed as one-line summaries before only a count remains.
pub const OLDER_DECISIONS_LISTED: usize = 30;
/// Characters of one summary line.
pub const SUMMARY_CHARS: usize = 100;
/// Characters of any single text (learning, decision, scope, …) shown in full.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Characters of a key file's note.
pub const MAX_NOTE_CHARS: usize = 300;
/// Characters of a title or other one-line field.
pub const MAX_LINE_CHARS: usize = 200;
/// Key files listed; the rest are counted.
pub const MAX_KEY_FILES: usize = 60;
/// Paths listed per learning or session; the rest are counted.
pub const MAX_PATHS_LISTED: usize = 30;

/// Quiet time after a change before the file is rewritten, so a burst of
/// changes (a sync catching up) costs one write.
const QUIET: Duration = Duration::from_millis(150);
/// Longest a steady stream of changes may postpone a write.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// First retry delay after a failed write; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay, so a broken disk is not logged in a tight loop.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The feature context for the agent of `session_id`, as markdown.
pub fn render(doc: &FeatureDoc, session_id: &str) -> String {
    let mut out = String::with_capacity(16 * 1024);
    render_header(&mut out, doc);
    render_feature(&mut out, doc);
    render_this_session(&mut out, doc, session_id);
    render_learnings(&mut out, doc);
    render_decisions(&mut out, doc);
    render_key_files(&mut out, doc);
    render_siblings(&mut out, doc, session_id);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn render_header(out: &mut String, doc: &FeatureDoc) {
    let _ = writeln!(
        out,
        "# Feature context: {}",
        one_line(&doc.title, MAX_LINE_CHARS)
    );
    out.push('\n');
    out.push_str(
        "This file is maintained by Canopy and rewritten whenever the feature changes; \
         do not edit it. It is the shared context of this feature: what every session \
         working on it has learned and decided, the files that matter, and what the other \
         sessions are doing. Several agent sessions work on this feature in parallel, each \
         in its own sandbox; read this before you start and keep it in mind.\n\n\
         Add to it with your feature tools: `add_learning` for something other sessions \
         should know, `record_decision` for a choice and its reasons, `mark_key_file` for a \
         file that matters. Use `read_feature_context` with a query to search everything, \
         including entries summarised here.\n\n",
    );
}

fn render_feature(out: &mut String, doc: &FeatureDoc) {
    out.push_str("## Feature\n\n");
    let _ = writeln!(out, "- Title: {}", one_line(&doc.title, MAX_LINE_CHARS));
    let _ = writeln!(out, "- Id: {}", code(&doc.feature_id));
    let _ = writeln!(
        out,
        "- Status: {}",
        one_line(doc.status.as_str(), MAX_LINE_CHARS)
    );
    if let Some(repo) = &doc.repo {
        let _ = write!(
            out,
            "- Repository: {} (base branch {}",
            one_line(&repo.url, MAX_LINE_CHARS),
            code(&repo.base_branch)
        );
        if let Some(branch) = &repo.feature_branch {
            let _ = write!(out, ", feature branch {}", code(branch));
        }
        out.push_str(")\n");
    }
    if !doc.description.trim().is_empty() {
        out.push_str("- Description:\n\n");
        quote(out, "  ", &doc.description, MAX_TEXT_CHARS);
    }
    end_section(out);
}

fn render_this_session(out: &mut String, doc: &FeatureDoc, session_id: &str) {
    out.push_str("## This session\n\n");
    let _ = writeln!(out, "- Id: {}", code(session_id));
    let Some(session) = doc.sessions.get(session_id) else {
        out.push_str("- Not in the feature document yet.\n\n");
        return;
    };
    let _ = writeln!(out, "- Title: {}", one_line(&session.title, MAX_LINE_CHARS));
    let _ = writeln!(out, "- Status: {}", session.status);
    let _ = writeln!(out, "- Depends on: {}", dependencies(doc, session));
    if session.scope.trim().is_empty() {
        out.push_str("- Scope: (none given)\n");
    } else {
        out.push_str("- Scope:\n\n");
        quote(out, "  ", &session.scope, MAX_TEXT_CHARS);
    }
    end_section(out);
}

fn render_learnings(out: &mut String, doc: &FeatureDoc) {
    out.push_str("## Learnings\n\n");
    if doc.learnings.is_empty() {
        out.push_str("None yet.\n\n");
        return;
    }
    let newest_first = newest_first(&doc.learnings, |l| l.created_at);
    let (mut full, older) = split_by_budget(
        &newest_first,
        FULL_LEARNINGS,
        FULL_LEARNINGS_BUDGET,
        |l: &Learning| {
            let mut s = String::new();
            render_learning(&mut s, l);
            s
        },
    );
    // Must-know entries first; sort_by is stable, so newest first within
    // each importance.
    full.sort_by_key(|(l, _)| std::cmp::Reverse(importance_rank(&l.importance)));
    let _ = writeln!(
        out,
        "{} learning{}, important and newest first.\n",
        doc.learnings.len(),
        plural(doc.learnings.len())
    );
    for (_, text) in &full {
        out.push_str(text);
    }
    end_section(out);
    if older.is_empty() {
        return;
    }
    out.push_str("### Older learnings (summarised)\n\n");
    let mut older = older;
    older.sort_by_key(|l| std::cmp::Reverse(importance_rank(&l.importance)));
    for l in older.iter().take(OLDER_LEARNINGS_LISTED) {
        let _ = writeln!(
            out,
            "- {} [{}] {}",
            utc_date(l.created_at),
            l.importance,
            one_line(&l.text, SUMMARY_CHARS)
        );
    }
    let rest = older.len().saturating_sub(OLDER_LEARNINGS_LISTED);
    if rest > 0 {
        let _ = writeln!(
            out,
            "- …and {rest} older learning{} (use the read_feature_context tool to search them)",
            plural(rest)
        );
    }
    out.push('\n');
}

fn render_decisions(out: &mut String, doc: &FeatureDoc) {
    out.push_str("## Decisions\n\n");
    if doc.decisions.is_empty() {
        out.push_str("None yet.\n\n");
        return;
    }
    let newest_first = newest_first(&doc.decisions, |d| d.created_at);
    let (full, older) = split_by_budget(
        &newest_first,
        FULL_DECISIONS,
        FULL_DECISIONS_BUDGET,
        |d: &Decision| {
            let mut s = String::new();
            render_decision(&mut s, d);
            s
        },
    );
    let _ = writeln!(
        out,
        "{} decision{}, newest first.\n",
        doc.decisions.len(),
        plural(doc.decisions.len())
    );
    for (_, text) in &full {
        out.push_str(text);
    }
    end_section(out);
    if older.is_empty() {
        return;
    }
    out.push_str("### Older decisions (summarised)\n\n");
    for d in older.iter().take(OLDER_DECISIONS_LISTED) {
        let _ = writeln!(
            out,
            "- {} {}",
            utc_date(d.created_at),
            one_line(&d.decision, SUMMARY_CHARS)
        );
    }
    let rest = older.len().saturating_sub(OLDER_DECISIONS_LISTED);
    if rest > 0 {
        let _ = writeln!(
            out,
            "- …and {rest} older decision{} (use the read_feature_context tool to search them)",
            plural(rest)
        );
    }
    out.push('\n');
}

fn render_key_files(out: &mut String, doc: &FeatureDoc) {
    out.push_str("## Key files\n\n");
    if doc.key_files.is_empty() {
        out.push_str("None yet.\n\n");
        return;
    }
    for (path, key_file) in doc.key_files.iter().take(MAX_KEY_FILES) {
        render_key_file(out, path, key_file);
    }
    let rest = doc.key_files.len().saturating_sub(MAX_KEY_FILES);
    if rest > 0 {
        let _ = writeln!(
            out,
            "- …and {rest} more key file{} (use the read_feature_context tool to search them)",
            plural(rest)
        );
    }
    out.push('\n');
}

fn render_siblings(out: &mut String, doc: &FeatureDoc, session_id: &str) {
    out.push_str("## Other sessions\n\n");
    let mut siblings: Vec<(&String, &Session)> = doc
        .sessions
        .iter()
        .filter(|(id, _)| id.as_str() != session_id)
        .collect();
    if siblings.is_empty() {
        out.push_str("None: this is the only session of the feature.\n");
        return;
    }
    siblings.sort_by_key(|(id, s)| (s.created_at, id.as_str()));
    for (id, session) in siblings {
        render_session(out, doc, id, session);
    }
}

/// One learning in full, as a list item whose text is quoted, so headings
/// or rules inside it stay inside the item.
pub(crate) fn render_learning(out: &mut String, l: &Learning) {
    let _ = writeln!(
        out,
        "- [{}] {} · {} · {}",
        l.importance,
        utc_date(l.created_at),
        by(&l.author, l.from_session.as_deref()),
        code(&l.id)
    );
    if !l.files.is_empty() {
        let _ = writeln!(out, "  Files: {}", paths(&l.files));
    }
    out.push('\n');
    quote(out, "  ", &l.text, MAX_TEXT_CHARS);
}

/// Who wrote an entry: an agent is named by its session, a person by user
/// id and the session they wrote from, if any.
fn by(author: &str, from_session: Option<&str>) -> String {
    match from_session {
        Some(session) if author.strip_prefix("agent:") == Some(session) => {
            format!("by the agent of session {}", code(session))
        }
        Some(session) => format!(
            "by {} (session {})",
            one_line(author, MAX_LINE_CHARS),
            code(session)
        ),
        None => format!("by {}", one_line(author, MAX_LINE_CHARS)),
    }
}

/// One decision in full: what, why, and what else was considered.
pub(crate) fn render_decision(out: &mut String, d: &Decision) {
    let _ = writeln!(
        out,
        "- {} · {} · {}",
        utc_date(d.created_at),
        by(&d.author, d.from_session.as_deref()),
        code(&d.id)
    );
    out.push_str("  Decision:\n\n");
    quote(out, "  ", &d.decision, MAX_TEXT_CHARS);
    if !d.rationale.trim().is_empty() {
        out.push_str("  Rationale:\n\n");
        quote(out, "  ", &d.rationale, MAX_TEXT_CHARS);
    }
    if !d.alternatives.is_empty() {
        out.push_str("  Alternatives considered:\n\n");
        for alternative in &d.alternatives {
            let _ = writeln!(out, "  - {}", one_line(alternative, MAX_LINE_CHARS * 2));
        }
        out.push('\n');
    }
}

/// One key file: path, note and the sessions that marked it.
pub(crate) fn render_key_file(out: &mut String, path: &str, key_file: &KeyFile) {
    let _ = write!(out, "- {}", code(path));
    if !key_file.note.trim().is_empty() {
        let _ = write!(out, ": {}", one_line(&key_file.note, MAX_NOTE_CHARS));
    }
    if !key_file.sessions.is_empty() {
        let sessions: Vec<String> = key_file.sessions.iter().map(|s| code(s)).collect();
        let _ = write!(out, " (marked by {})", sessions.join(", "));
    }
    out.push('\n');
}

/// One session as seen from another: what it is, where it stands, what it
/// touched and how its last prompt ended.
pub(crate) fn render_session(out: &mut String, doc: &FeatureDoc, id: &str, session: &Session) {
    let _ = writeln!(
        out,
        "### {} ({})\n",
        one_line(&session.title, MAX_LINE_CHARS),
        code(id)
    );
    let _ = writeln!(out, "- Status: {}", session.status);
    if !session.scope.trim().is_empty() {
        // One line is enough to tell who works on what; the full scope
        // is that session's business.
        let _ = writeln!(out, "- Scope: {}", one_line(&session.scope, MAX_LINE_CHARS));
    }
    let _ = writeln!(out, "- Depends on: {}", dependencies(doc, session));
    if session.files_changed.is_empty() {
        out.push_str("- Files changed: none yet\n");
    } else {
        let _ = writeln!(out, "- Files changed: {}", paths(&session.files_changed));
    }
    match latest_result(doc, id) {
        None => out.push_str("- Latest result: none yet\n"),
        Some(entry) => {
            let _ = writeln!(
                out,
                "- Latest result: {} for the prompt \"{}\"",
                entry.status,
                first_line(&entry.text, MAX_LINE_CHARS)
            );
            if let Some(error) = &entry.error {
                let _ = writeln!(out, "  Error: {}", one_line(error, MAX_LINE_CHARS * 2));
            }
            if let Some(commit) = &entry.commit {
                let _ = writeln!(out, "  Commit: {}", code(commit));
            }
        }
    }
    out.push('\n');
}

/// The most recent finished (done, failed or cancelled) queue entry of
/// `session_id`: what the session last delivered.
pub(crate) fn latest_result<'a>(doc: &'a FeatureDoc, session_id: &str) -> Option<&'a QueueEntry> {
    doc.queue
        .iter()
        .enumerate()
        .filter(|(_, q)| {
            q.session_id == session_id
                && matches!(
                    q.status,
                    QueueStatus::Done | QueueStatus::Failed | QueueStatus::Cancelled
                )
        })
        .max_by_key(|(i, q)| (q.finished_at.unwrap_or(q.created_at), *i))
        .map(|(_, q)| q)
}

/// `depends_on` with each dependency's status, so the agent sees what it
/// is waiting for.
fn dependencies(doc: &FeatureDoc, session: &Session) -> String {
    if session.depends_on.is_empty() {
        return "nothing".to_owned();
    }
    session
        .depends_on
        .iter()
        .map(|dep| match doc.sessions.get(dep) {
            Some(s) => format!("{} ({})", code(dep), s.status),
            None => format!("{} (unknown session)", code(dep)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Items newest first: by creation time, then by position in the list (the
/// merged order every peer agrees on), so the order is deterministic.
fn newest_first<T>(items: &[T], created_at: impl Fn(&T) -> i64) -> Vec<&T> {
    let mut indexed: Vec<(usize, &T)> = items.iter().enumerate().collect();
    indexed.sort_by_key(|(i, item)| std::cmp::Reverse((created_at(item), *i)));
    indexed.into_iter().map(|(_, item)| item).collect()
}

/// The first `max` items (rendered) while they fit `budget` bytes, and the
/// rest. The first item is always kept, so a context never shows none.
fn split_by_budget<'a, T>(
    items: &[&'a T],
    max: usize,
    budget: usize,
    render: impl Fn(&T) -> String,
) -> (Vec<(&'a T, String)>, Vec<&'a T>) {
    let mut full = Vec::new();
    let mut used = 0;
    let mut split = items.len();
    for (i, item) in items.iter().enumerate() {
        if i >= max {
            split = i;
            break;
        }
        let text = render(item);
        if i > 0 && used + text.len() > budget {
            split = i;
            break;
        }
        used += text.len();
        full.push((*item, text));
    }
    (full, items[split..].to_vec())
}

fn importance_rank(importance: &Importance) -> u8 {
    match importance {
        Importance::High => 2,
        Importance::Low => 0,
        Importance::Medium | Importance::Unknown(_) => 1,
    }
}

/// `text` as a blockquote indented by `indent` (every line prefixed, blank
/// lines included), followed by a blank line. Quoting is what keeps a
/// learning such as "# Heading\n---" from opening a section of its own.
pub(crate) fn quote(out: &mut String, indent: &str, text: &str, max_chars: usize) {
    let text = truncate(text.trim_end(), max_chars);
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            let _ = writeln!(out, "{indent}>");
        } else {
            let _ = writeln!(out, "{indent}> {line}");
        }
    }
    if text.is_empty() {
        let _ = writeln!(out, "{indent}> (empty)");
    }
    out.push('\n');
}

/// `text` on one line (whitespace runs, newlines included, become one
/// space), cut to `max_chars`.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&joined, max_chars)
}

/// The first non-blank line of `text`, cut to `max_chars`: enough to
/// recognise a prompt.
fn first_line(text: &str, max_chars: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let more = text.trim().lines().nth(1).is_some();
    let line = one_line(line, max_chars);
    if more && !line.ends_with('…') {
        format!("{line} …")
    } else {
        line
    }
}

/// `text` cut to `max_chars` characters, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Paths as inline code, at most [`MAX_PATHS_LISTED`] of them.
fn paths(paths: &[String]) -> String {
    let mut shown: Vec<String> = paths
        .iter()
        .take(MAX_PATHS_LISTED)
        .map(|p| code(p))
        .collect();
    let rest = paths.len().saturating_sub(MAX_PATHS_LISTED);
    if rest > 0 {
        shown.push(format!("…and {rest} more"));
    }
    shown.join(", ")
}

/// `text` as inline code on one line, with a fence longer than any run of
/// backticks inside it so the span cannot be closed early.
pub(crate) fn code(text: &str) -> String {
    let text = one_line(text, MAX_LINE_CHARS * 5);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// End a section with exactly one blank line, whatever its last item left.
fn end_section(out: &mut String) {
    while out.ends_with("\n\n") {
        out.pop();
    }
    out.push_str("\n\n");
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `YYYY-MM-DD` (UTC) of a Unix millisecond time; days are what matter to
/// the agent, and the clock of the writer is not precise anyway.
pub(crate) fn utc_date(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "(date unknown)".to_owned();
    }
    let days = unix_ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date `days` after 1970-01-01, computed over
/// 400-year eras (146,097 days each) so no calendar crate is needed.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

type Changes = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// Keep `path` equal to [`render`] of the replica until `shutdown`.
///
/// Waits for the replica to be loaded, writes the file, then rewrites it
/// after changes: [`QUIET`] after the last change of a burst, but never
/// more than [`MAX_DELAY`] after the first, so the agent's view lags by
/// well under a second. The file is only rewritten when its text changes,
/// and always atomically (temporary file, then rename), because OpenCode
/// may read it at any moment. Failures are logged and retried; they never
/// stop the task.
pub async fn keep_written(mut replica: SharedReplica, path: PathBuf, shutdown: CancellationToken) {
    let current = tokio::select! {
        () = shutdown.cancelled() => return,
        loaded = replica.wait_for(Option::is_some) => match loaded {
            Ok(r) => r.clone(),
            Err(_) => {
                // The sidecar is stopping before the document ever loaded.
                tracing::debug!("the replica was never loaded; no feature context file");
                return;
            }
        },
    };
    let Some(mut current) = current else {
        return;
    };
    let mut changes: Changes = Box::pin(current.changed());
    let mut watching = true;
    let mut written: Option<String> = None;
    // A write is due now: the file may be missing or stale from a previous run.
    let mut due: Option<Instant> = Some(Instant::now());
    let mut cap: Option<Instant> = due;
    let mut retry = FIRST_RETRY;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = replica.changed(), if watching => {
                if changed.is_err() {
                    // The sender is gone: the replica we hold is final.
                    watching = false;
                    continue;
                }
                let next = replica.borrow_and_update().clone();
                if let Some(next) = next {
                    current = next;
                    changes = Box::pin(current.changed());
                    schedule(&mut due, &mut cap);
                }
            }
            event = changes.next() => match event {
                Some(()) => schedule(&mut due, &mut cap),
                None => {
                    // The document handle is gone (the repo is stopping);
                    // wait for a new replica or shutdown instead of spinning.
                    changes = Box::pin(futures::stream::pending());
                }
            },
            () = sleep_until_due(due) => {
                match refresh(&current, &path, &mut written).await {
                    Ok(()) => {
                        due = None;
                        cap = None;
                        retry = FIRST_RETRY;
                    }
                    Err(error) => {
                        tracing::warn!(
                            path = %path.display(),
                            %error,
                            "cannot write the feature context file; retrying in {retry:?}"
                        );
                        due = Some(Instant::now() + retry);
                        cap = due;
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                }
            }
        }
    }
}

/// Note a change: due [`QUIET`] from now, but no later than [`MAX_DELAY`]
/// after the first change not yet written.
fn schedule(due: &mut Option<Instant>, cap: &mut Option<Instant>) {
    let now = Instant::now();
    let limit = *cap.get_or_insert(now + MAX_DELAY);
    *due = Some((now + QUIET).min(limit));
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Render the replica and write it to `path` if the text differs from what
/// was last written.
async fn refresh(
    replica: &Replica,
    path: &Path,
    written: &mut Option<String>,
) -> Result<(), String> {
    let doc = replica.read().await.map_err(|e| e.to_string())?;
    let text = render(&doc, replica.session_id());
    if written.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    write_atomically(path, &text)
        .await
        .map_err(|e| e.to_string())?;
    *written = Some(text);
    Ok(())
}

/// Write `text` to a temporary file next to `path`, then rename it over
/// `path`, so a reader sees the old file or the new one, never a mix.
async fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&dir).await?;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    tokio::fs::write(&tmp, text).await?;
    if let Err(error) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use automerge::Automerge;
    use canopy_protocol::feature::{
        self, NewDecision, NewFeature, NewLearning, NewQueueEntry, NewSession, QueueUpdate,
        RepoRef, Writer,
    };
    use canopy_protocol::{ChangeMeta, SchemaError, ids};

    use super::*;

    const T0: i64 = 1_714_521_600_000; // 2024-05-01T00:00:00Z

    fn new_doc() -> Automerge {
        feature::new_feature_document(&NewFeature {
            feature_id: ids::new_feature_id(),
            title: "Add OAuth login".into(),
            description: "Let people sign in with GitHub.\nKeep passwords working.".into(),
            repo: Some(RepoRef {
                url: "https://example.com/acme/app.git".into(),
                base_branch: "main".into(),
                feature_branch: Some("canopy/oauth".into()),
                full_clone: false,
            }),
            created_by: "alice".into(),
            created_by_name: "Alice".into(),
            created_at: T0,
        })
        .unwrap()
    }

    fn edit(
        doc: &mut Automerge,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), SchemaError>,
    ) {
        doc.transact_with(|_| ChangeMeta::at("test", 0).commit_options(), f)
            .map_err(|failure| failure.error)
            .unwrap();
    }

    fn session(id: &str, title: &str, depends_on: Vec<String>) -> NewSession {
        NewSession {
            session_id: id.to_owned(),
            title: title.to_owned(),
            scope: "Only the provider.\nNot the UI.".to_owned(),
            depends_on,
            created_by: "alice".into(),
            created_at: T0,
        }
    }

    fn learning(i: i64, text: &str, importance: Importance, from: &str) -> NewLearning {
        NewLearning {
            id: ids::new_learning_id(),
            text: text.to_owned(),
            author: format!("agent:{from}"),
            from_session: Some(from.to_owned()),
            importance,
            files: vec!["src/auth.rs".into()],
            created_at: T0 + i * 60_000,
        }
    }

    fn decision(i: i64, text: &str) -> NewDecision {
        NewDecision {
            id: ids::new_decision_id(),
            decision: text.to_owned(),
            rationale: "Because it is simpler.".into(),
            alternatives: vec!["Roll our own".into(), "Use SAML".into()],
            author: "bob".into(),
            from_session: None,
            created_at: T0 + i * 60_000,
        }
    }

    /// A feature with this session, a sibling that finished a prompt, one
    /// learning, one decision and one key file.
    fn small_doc() -> (Automerge, String, String) {
        let me = ids::new_session_id();
        let sibling = ids::new_session_id();
        let mut doc = new_doc();
        let q1 = ids::new_queue_entry_id();
        let q2 = ids::new_queue_entry_id();
        {
            let (me, sibling, q1, q2) = (me.clone(), sibling.clone(), q1.clone(), q2.clone());
            edit(&mut doc, move |tx| {
                feature::add_session(tx, &session(&sibling, "Provider backend", vec![]))?;
                feature::add_session(tx, &session(&me, "Login UI", vec![sibling.clone()]))?;
                feature::set_session_files_changed(tx, &sibling, &["src/oauth.rs".to_owned()])?;
                for (q, text, at) in [
                    (&q1, "Write the token exchange\nwith tests", T0 + 1_000),
                    (&q2, "Add refresh tokens", T0 + 2_000),
                ] {
                    feature::append_queue_entry(
                        tx,
                        &NewQueueEntry {
                            id: q.clone(),
                            session_id: sibling.clone(),
                            author: "alice".into(),
                            text: text.into(),
                            created_at: at,
                        },
                    )?;
                }
                for status in [QueueStatus::Dispatched, QueueStatus::Running] {
                    feature::set_queue_status(
                        tx,
                        &q1,
                        &QueueUpdate::new(status.clone(), Writer::Server, T0),
                    )?;
                    feature::set_queue_status(
                        tx,
                        &q2,
                        &QueueUpdate::new(status, Writer::Server, T0),
                    )?;
                }
                feature::set_queue_status(
                    tx,
                    &q1,
                    &QueueUpdate::new(QueueStatus::Done, Writer::Server, T0 + 10_000)
                        .with_commit("abc1234"),
                )?;
                feature::set_queue_status(
                    tx,
                    &q2,
                    &QueueUpdate::new(QueueStatus::Failed, Writer::Server, T0 + 20_000)
                        .with_error("tests failed"),
                )?;
                feature::add_learning(
                    tx,
                    &learning(1, "The provider needs PKCE.", Importance::High, &sibling),
                )?;
                feature::add_decision(tx, &decision(1, "Use the oauth2 crate"))?;
                feature::mark_key_file(
                    tx,
                    "src/oauth.rs",
                    Some("token exchange lives here"),
                    Some(&sibling),
                )
            });
        }
        (doc, me, sibling)
    }

    #[test]
    fn small_document_has_every_section() {
        let (doc, me, sibling) = small_doc();
        let read = feature::read(&doc).unwrap();
        let text = render(&read, &me);
        for needle in [
            "# Feature context: Add OAuth login",
            "maintained by Canopy",
            "## Feature",
            "Let people sign in with GitHub.",
            "https://example.com/acme/app.git",
            "`canopy/oauth`",
            "## This session",
            "Login UI",
            "Only the provider.",
            &format!("`{sibling}` (pending)"),
            "## Learnings",
            "The provider needs PKCE.",
            &format!("- [high] 2024-05-01 · by the agent of session `{sibling}` · `lrn_"),
            "- 2024-05-01 · by bob · `dec_",
            "`src/auth.rs`",
            "## Decisions",
            "Use the oauth2 crate",
            "Because it is simpler.",
            "- Use SAML",
            "## Key files",
            "- `src/oauth.rs`: token exchange lives here",
            "## Other sessions",
            &format!("### Provider backend (`{sibling}`)"),
            "Files changed: `src/oauth.rs`",
            "- Scope: Only the provider. Not the UI.",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        // This session is not listed among the others.
        assert!(!text.contains(&format!("### Login UI (`{me}`)")));
        // Deterministic.
        assert_eq!(text, render(&read, &me));
    }

    #[test]
    fn sibling_latest_result_is_the_last_finished_prompt() {
        let (doc, me, _) = small_doc();
        let text = render(&feature::read(&doc).unwrap(), &me);
        assert!(
            text.contains("- Latest result: failed for the prompt \"Add refresh tokens\""),
            "{text}"
        );
        assert!(text.contains("  Error: tests failed"), "{text}");
        assert!(!text.contains("abc1234"), "{text}");
    }

    #[test]
    fn done_result_shows_commit_and_first_line() {
        let me = ids::new_session_id();
        let sibling = ids::new_session_id();
        let mut doc = new_doc();
        let q = ids::new_queue_entry_id();
        {
            let (me, sibling, q) = (me.clone(), sibling.clone(), q.clone());
            edit(&mut doc, move |tx| {
                feature::add_session(tx, &session(&sibling, "Provider", vec![]))?;
                feature::add_session(tx, &session(&me, "UI", vec![]))?;
                feature::append_queue_entry(
                    tx,
                    &NewQueueEntry {
                        id: q.clone(),
                        session_id: sibling.clone(),
                        author: "alice".into(),
                        text: "Write the token exchange\nwith tests".into(),
                        created_at: T0,
                    },
                )?;
                for status in [QueueStatus::Dispatched, QueueStatus::Running] {
                    feature::set_queue_status(
                        tx,
                        &q,
                        &QueueUpdate::new(status, Writer::Server, T0),
                    )?;
                }
                feature::set_queue_status(
                    tx,
                    &q,
                    &QueueUpdate::new(QueueStatus::Done, Writer::Server, T0).with_commit("abc1234"),
                )
            });
        }
        let text = render(&feature::read(&doc).unwrap(), &me);
        assert!(
            text.contains("- Latest result: done for the prompt \"Write the token exchange …\""),
            "{text}"
        );
        assert!(text.contains("  Commit: `abc1234`"), "{text}");
    }

    #[test]
    fn five_hundred_learnings_stay_readable() {
        let me = ids::new_session_id();
        let mut doc = new_doc();
        {
            let me = me.clone();
            edit(&mut doc, move |tx| {
                feature::add_session(tx, &session(&me, "UI", vec![]))?;
                feature::add_learning(
                    tx,
                    &learning(-1, "The first learning.", Importance::Low, &me),
                )
            });
        }
        let mut read = feature::read(&doc).unwrap();
        // The writers check ids for uniqueness by scanning their list, so a
        // thousand appends take most of a minute in a debug build; render
        // only sees the typed document, so the bulk is added to that.
        for i in 0..500 {
            let text = format!(
                "Learning number {i:03}: the token endpoint rejects requests without \
                 the client secret header, so always send it along."
            );
            let l = learning(i, &text, Importance::Medium, &me);
            read.learnings.push(Learning {
                id: l.id,
                text: l.text,
                author: l.author,
                from_session: l.from_session,
                importance: l.importance,
                files: l.files,
                created_at: l.created_at,
            });
            let d = decision(i, &format!("Decision number {i:03}"));
            read.decisions.push(Decision {
                id: d.id,
                decision: d.decision,
                rationale: d.rationale,
                alternatives: d.alternatives,
                author: d.author,
                from_session: d.from_session,
                created_at: d.created_at,
            });
        }
        let text = render(&read, &me);
        assert!(text.len() < 60_000, "context is {} bytes", text.len());
        // The newest is in full, the oldest only summarised.
        assert!(text.contains(
            "> Learning number 499: the token endpoint rejects requests without the client \
             secret header, so always send it along."
        ));
        assert!(text.contains("### Older learnings (summarised)"));
        assert!(text.contains("…and "));
        assert!(
            text.contains("older learnings (use the read_feature_context tool to search them)")
        );
        assert!(
            text.contains("older decisions (use the read_feature_context tool to search them)")
        );
        assert!(!text.contains("Learning number 000"));
        assert!(!text.contains("The first learning."));
        assert!(text.contains("> Decision number 499"));
        // Summary lines are short.
        let older = text
            .split("### Older learnings (summarised)")
            .nth(1)
            .unwrap()
            .split("## Decisions")
            .next()
            .unwrap();
        for line in older.lines().filter(|l| l.starts_with("- 2024")) {
            assert!(line.chars().count() < 140, "{line}");
        }
        assert_eq!(
            text.matches("\n  > Learning number").count(),
            FULL_LEARNINGS
        );
        assert_eq!(
            text.matches("\n  > Decision number").count(),
            FULL_DECISIONS
        );
    }

    #[test]
    fn huge_learnings_are_bounded_by_the_budget() {
        let me = ids::new_session_id();
        let mut read = feature::read(&new_doc()).unwrap();
        for i in 0..100 {
            let l = learning(
                i,
                &format!("{i:03} {}", "y".repeat(5_000)),
                Importance::High,
                &me,
            );
            read.learnings.push(Learning {
                id: l.id,
                text: l.text,
                author: l.author,
                from_session: l.from_session,
                importance: l.importance,
                files: l.files,
                created_at: l.created_at,
            });
        }
        let text = render(&read, &me);
        let full = text.matches("\n  > ").count();
        assert!(full > 0 && full < FULL_LEARNINGS, "{full}");
        assert!(
            text.len() < FULL_LEARNINGS_BUDGET + 20_000,
            "{}",
            text.len()
        );
        assert!(text.contains("> 099 yyy"));
        assert!(text.contains("older learnings (use the read_feature_context tool"));
    }

    #[test]
    fn hostile_text_cannot_add_sections() {
        let me = ids::new_session_id();
        let mut doc = new_doc();
        {
            let me = me.clone();
            edit(&mut doc, move |tx| {
                feature::add_session(
                    tx,
                    &NewSession {
                        title: "Evil\n# Title".into(),
                        ..session(&me, "x", vec![])
                    },
                )?;
                feature::add_learning(
                    tx,
                    &learning(
                        1,
                        "# Heading\n---\n## Another\n\ntext",
                        Importance::High,
                        &me,
                    ),
                )?;
                feature::add_decision(tx, &decision(1, "# Decided\n---"))?;
                feature::mark_key_file(tx, "a`b.rs", Some("# note\n---"), None)
            });
        }
        let text = render(&feature::read(&doc).unwrap(), &me);
        let top_level: Vec<&str> = text.lines().filter(|l| l.starts_with("# ")).collect();
        assert_eq!(
            top_level,
            vec!["# Feature context: Add OAuth login"],
            "{text}"
        );
        assert!(!text.lines().any(|l| l.trim() == "---"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("## Another")), "{text}");
        assert!(text.contains("  > # Heading\n  > ---\n  > ## Another\n  >\n  > text\n"));
        assert!(text.contains("- Title: Evil # Title"));
        assert!(
            text.contains("``a`b.rs``") || text.contains("`` a`b.rs ``"),
            "{text}"
        );
    }

    #[test]
    fn long_texts_are_cut() {
        let me = ids::new_session_id();
        let mut doc = new_doc();
        {
            let me = me.clone();
            edit(&mut doc, move |tx| {
                feature::add_learning(tx, &learning(1, &"x".repeat(10_000), Importance::Low, &me))
            });
        }
        let text = render(&feature::read(&doc).unwrap(), &me);
        assert!(text.contains(&format!("> {}…", "x".repeat(MAX_TEXT_CHARS))));
        assert!(!text.contains(&"x".repeat(MAX_TEXT_CHARS + 1)));
        assert!(text.contains("- Not in the feature document yet."));
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(T0), "2024-05-01");
        assert_eq!(utc_date(T0 - 1), "2024-04-30");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1), "1970-01-01");
        assert_eq!(utc_date(0), "(date unknown)");
        assert_eq!(utc_date(4_102_444_800_000), "2100-01-01");
    }

    #[test]
    fn helpers_cut_and_fence() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(one_line(" a\n\n b\tc ", 10), "a b c");
        assert_eq!(code("a``b"), "``` a``b ```");
        assert_eq!(code("ab"), "`ab`");
    }

    async fn wait_for_file(path: &Path, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = tokio::fs::read_to_string(path).await
                && text.contains(needle)
            {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never contained {needle:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_written_follows_the_replica() {
        let repo = samod::Repo::build_tokio().load().await;
        let me = ids::new_session_id();
        let mut doc = new_doc();
        {
            let me = me.clone();
            edit(&mut doc, move |tx| {
                feature::add_session(tx, &session(&me, "UI", vec![])).map(|_| ())
            });
        }
        let feature_id = feature::read(&doc).unwrap().feature_id;
        let handle = repo.create(doc).await.unwrap();
        let replica = Replica::new(handle, &feature_id, &me);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("feature-context.md");
        let (tx, rx) = tokio::sync::watch::channel(None);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keep_written(rx, path.clone(), shutdown.clone()));

        // Nothing is written before the replica is loaded.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!path.exists());
        tx.send(Some(replica.clone())).unwrap();
        wait_for_file(&path, "# Feature context: Add OAuth login").await;

        let from = me.clone();
        replica
            .write("agent: add learning", move |tx| {
                feature::add_learning(
                    tx,
                    &learning(
                        1,
                        "Refresh tokens expire after a day.",
                        Importance::High,
                        &from,
                    ),
                )
            })
            .await
            .unwrap();
        let text = wait_for_file(&path, "> Refresh tokens expire after a day.").await;
        assert_eq!(text, render(&replica.read().await.unwrap(), &me));

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        // No temporary file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        repo.stop().await;
    }
}
