//! The dispatcher: turns queue entries into OpenCode runs.
//!
//! One watcher per feature document notices queue entries as they arrive
//! (from the API or any synced peer), refuses the ones that must never run
//! (`rejected`, with the reason) and wakes the session's worker. One worker
//! per session runs that session's entries one at a time, in the queue's
//! merged list order, which every replica agrees on: it starts the sandbox,
//! prompts OpenCode, follows its event stream into the transcript document
//! and streams text to clients as ephemeral messages, then settles the entry
//! (`done`, `failed`, `cancelled`). Everything a restarted server needs to
//! pick up a run in flight is in SQLite ([`store`]) and in the sandbox.

pub mod context;
pub mod setup;
pub mod slots;
pub mod store;
mod transcript;
mod worker;

pub(crate) use worker::commit_request;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use automerge::{Automerge, ObjId};
use canopy_protocol::{
    ChangeMeta,
    feature::{self, QueueStatus, QueueUpdate, Writer},
    unix_ms_now,
};
use futures::{FutureExt, StreamExt};
use samod::{DocHandle, DocumentId, Repo};
use tokio::sync::{Notify, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    attribution::{Attribution, SERVER},
    audit::{AuditAction, AuditLog},
    auth::Members,
    registry::{DocKind, Registry},
    sandbox::{Sandbox, SandboxBackend},
};

pub use store::Store;

/// What the dispatcher needs from the rest of the server.
#[derive(Debug, Clone)]
pub struct Deps {
    /// samod.
    pub repo: Repo,
    /// Shared documents.
    pub registry: Registry,
    /// Memberships: only members who may write get their prompts run.
    pub members: Members,
    /// Who wrote which entry.
    pub attribution: Attribution,
    /// Where refusals are recorded.
    pub audit: AuditLog,
    /// Runs, transcripts, tool outputs.
    pub store: Store,
    /// Where sandboxes run.
    pub backend: Arc<dyn SandboxBackend>,
    /// Who may be a commit's author; who owns sandbox tokens.
    pub users: crate::auth::Users,
    /// The forge: git credentials for clones.
    pub github: crate::github::pulls::Access,
    /// Commits of history a clone fetches (0: all).
    pub clone_depth: u32,
    /// The server's base URL as sandboxes reach it.
    pub sandbox_server_url: String,
    /// How long a sandbox token lives.
    pub token_ttl: std::time::Duration,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Largest prompt, in bytes.
    pub max_prompt_bytes: usize,
    /// `(providerID, modelID)` to prompt with; `None`: the sandbox's default.
    pub model: Option<(String, String)>,
    /// The limit on sandboxes running at once.
    pub slots: Arc<slots::Slots>,
    /// Stop (hibernate) a sandbox after this long without a run; `None`:
    /// never.
    pub idle_after: Option<Duration>,
}

/// How long after one warm-up (`typing`) another for the same session is
/// ignored.
const WARM_DEBOUNCE: Duration = Duration::from_secs(10);

/// A worker's mailbox.
#[derive(Debug, Clone)]
struct WorkerHandle {
    /// New work may be queued.
    kick: Arc<Notify>,
    /// Stop requests (the entry id to abort).
    stop: mpsc::UnboundedSender<String>,
    /// The entry in flight and the sandbox's sidecar.
    shown: Arc<Mutex<worker::Shown>>,
    /// Someone is typing a prompt: start the sandbox now.
    warm: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Inner {
    deps: Deps,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Sandboxes adopted from a previous server process, by session.
    adopted: Mutex<HashMap<String, Sandbox>>,
    /// When each session was last warmed because someone typed.
    warmed: Mutex<HashMap<String, Instant>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The dispatcher handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

/// Dispatcher errors the API reports.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Dispatching is switched off on this server.
    #[error("this server does not run agents (started with --dispatch false)")]
    Disabled,
}

/// A session's diff, as [`Dispatcher::session_diff`] found it.
#[derive(Debug)]
pub enum DiffAnswer {
    /// From the running sandbox, uncommitted work included.
    Live(canopy_protocol::sidecar::SessionDiff),
    /// As kept at the session's last recorded commit (Unix ms).
    Saved {
        /// The diff.
        diff: canopy_protocol::sidecar::SessionDiff,
        /// When it was kept.
        saved_at: i64,
    },
    /// The sandbox or the store could not answer.
    Failed(String),
}

impl Dispatcher {
    /// Adopt the sandboxes a previous server left running, then watch every
    /// feature document, now and as they are created, until `shutdown`.
    pub async fn start(deps: Deps, shutdown: CancellationToken) -> Dispatcher {
        let adopted = match deps.backend.reconcile().await {
            Ok(list) => {
                if !list.is_empty() {
                    tracing::info!(
                        count = list.len(),
                        "adopted sandboxes left running by a previous server"
                    );
                }
                list.into_iter()
                    .map(|s| (s.session_id.clone(), s))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reconcile sandboxes");
                HashMap::new()
            }
        };
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                deps,
                workers: Mutex::new(HashMap::new()),
                adopted: Mutex::new(adopted),
                warmed: Mutex::new(HashMap::new()),
                shutdown,
                tasks: TaskTracker::new(),
            }),
        };
        let d = dispatcher.clone();
        dispatcher
            .inner
            .tasks
            .spawn(async move { d.remove_orphans().await });
        let d = dispatcher.clone();
        dispatcher
            .inner
            .tasks
            .spawn(async move { d.watch_registry().await });
        dispatcher
    }

    /// Remove what the backend holds for sessions that no longer exist
    /// (their feature or the session itself is gone): containers, volumes,
    /// snapshots. Runs once at start, after [`SandboxBackend::reconcile`].
    async fn remove_orphans(&self) {
        let deps = &self.inner.deps;
        for (feature_id, session_id) in deps.backend.sessions().await {
            let exists = match deps.registry.feature(&feature_id).await {
                Ok(Some(record)) => {
                    match record.document_id.parse::<DocumentId>().map_err(|_| ()) {
                        Err(()) => true,
                        Ok(doc_id) => match deps.repo.find(doc_id).await {
                            Ok(Some(handle)) => {
                                let sid = session_id.clone();
                                handle
                                    .with_document_async(move |d| {
                                        feature::read_session(d, &sid).is_some()
                                    })
                                    .await
                                    .unwrap_or(true)
                            }
                            Ok(None) => false,
                            // Stopping: decide nothing.
                            Err(_) => return,
                        },
                    }
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up a sandbox's feature; keeping it");
                    true
                }
            };
            if exists {
                continue;
            }
            tracing::info!(%feature_id, %session_id, "removing the sandbox of a session that no longer exists");
            self.inner
                .adopted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&session_id);
            if let Err(e) = deps.backend.remove(&session_id).await {
                tracing::warn!(%session_id, error = %e, "cannot remove an orphaned sandbox");
            }
        }
    }

    /// Stop the run in flight in `session_id`, if any: OpenCode aborts and
    /// the entry ends `cancelled`. Returns the entry that was stopped.
    pub fn stop_session(&self, session_id: &str) -> Option<String> {
        let workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        let worker = workers.get(session_id)?;
        let current = worker
            .shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()?;
        worker.stop.send(current.clone()).ok()?;
        Some(current)
    }

    /// Stop a session's sandbox (its work is done); the workspace stays,
    /// and a later prompt starts it again.
    pub async fn release_sandbox(&self, session_id: &str) {
        if let Some(worker) = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session_id)
        {
            // Its sidecar is going away: readers get the kept diff.
            worker
                .shown
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .control = None;
        }
        if let Err(e) = self.inner.deps.backend.stop(session_id).await {
            tracing::warn!(session_id, error = %e, "cannot stop the sandbox of a completed session");
        }
        self.inner.deps.slots.release(session_id);
    }

    /// The control API (URL, secret) of the session's running sandbox.
    pub fn sidecar_control(&self, session_id: &str) -> Option<(String, String)> {
        let workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        let worker = workers.get(session_id)?;
        let shown = worker.shown.lock().unwrap_or_else(|p| p.into_inner());
        shown.control.clone()
    }

    /// The last `lines` lines of a session's sandbox output.
    pub async fn sandbox_logs(
        &self,
        session_id: &str,
        lines: usize,
    ) -> Result<String, crate::sandbox::SandboxError> {
        self.inner.deps.backend.logs(session_id, lines).await
    }

    /// What session `session_id` changed since it began: from its running
    /// sandbox's sidecar (uncommitted work included), else as kept at its
    /// last recorded commit; `None` when neither exists.
    pub async fn session_diff(&self, feature_id: &str, session_id: &str) -> Option<DiffAnswer> {
        let control = {
            let workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers.get(session_id).and_then(|worker| {
                let shown = worker.shown.lock().unwrap_or_else(|p| p.into_inner());
                shown.control.clone()
            })
        };
        let mut live_error = None;
        if let Some((url, secret)) = control {
            match crate::sandbox::sidecar_diff(&url, &secret).await {
                Ok(diff) => return Some(DiffAnswer::Live(diff)),
                // The sandbox may be stopping: the kept diff still answers.
                Err(e) => live_error = Some(e.to_string()),
            }
        }
        match self
            .inner
            .deps
            .store
            .saved_diff(feature_id, session_id)
            .await
        {
            Ok(Some((json, saved_at))) => Some(match serde_json::from_str(&json) {
                Ok(diff) => DiffAnswer::Saved { diff, saved_at },
                Err(e) => DiffAnswer::Failed(format!("the kept diff cannot be read: {e}")),
            }),
            Ok(None) => live_error.map(DiffAnswer::Failed),
            Err(e) => Some(DiffAnswer::Failed(format!(
                "cannot read the kept diff: {e}"
            ))),
        }
    }

    /// The dispatcher's tables (transcripts, tool outputs).
    pub fn store(&self) -> &Store {
        &self.inner.deps.store
    }

    /// Wait for the workers to notice shutdown, then stop every sandbox.
    /// Runs in flight stay `running` in the documents; the sandboxes are
    /// stopped, so the next server reports them interrupted.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.deps.backend.stop_all().await;
    }

    async fn watch_registry(&self) {
        let mut version = self.inner.deps.registry.subscribe();
        let mut watching = HashSet::new();
        loop {
            for (doc, feature_id) in self.inner.deps.registry.documents_of_kind(DocKind::Feature) {
                if watching.insert(doc.clone()) {
                    let d = self.clone();
                    let span = tracing::info_span!("dispatch", feature_id = %feature_id);
                    self.inner.tasks.spawn(
                        async move { d.watch_feature(doc, feature_id).await }.instrument(span),
                    );
                }
            }
            tokio::select! {
                r = version.changed() => if r.is_err() { return },
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    async fn watch_feature(&self, doc: DocumentId, feature_id: String) {
        let deps = &self.inner.deps;
        let handle = match deps.repo.find(doc).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                tracing::warn!("feature document missing from storage; not dispatching");
                return;
            }
            Err(_) => return,
        };
        if let Err(e) = bind_server_actor(&handle, &deps.attribution).await {
            tracing::warn!(error = %e, "cannot bind the server's actor; not dispatching");
            return;
        }
        {
            let d = self.clone();
            let (handle, feature_id) = (handle.clone(), feature_id.clone());
            self.inner
                .tasks
                .spawn(async move { d.watch_ephemera(handle, feature_id).await });
        }
        let mut changes = handle.changes();
        loop {
            let checker = Checker {
                feature_id: feature_id.clone(),
                attribution: deps.attribution.clone(),
                members: deps.members.clone(),
                max_prompt_bytes: deps.max_prompt_bytes,
            };
            let Ok((busy, rejected)) = handle.with_document_async(move |d| checker.triage(d)).await
            else {
                return;
            };
            for (entry, reason) in rejected {
                tracing::info!(queue_entry = %entry, %reason, "queue entry rejected");
                deps.audit
                    .record(
                        None,
                        Some(&feature_id),
                        AuditAction::ChangeRejected,
                        format!("queue entry {entry} rejected: {reason}"),
                    )
                    .await;
            }
            for session_id in busy {
                self.kick(&handle, &feature_id, &session_id, false);
            }
            tokio::select! {
                next = changes.next() => if next.is_none() { return },
                _ = self.inner.shutdown.cancelled() => return,
            }
            while let Some(Some(_)) = changes.next().now_or_never() {}
        }
    }

    /// Wake (starting if needed) the worker of `session_id`; with `warm`,
    /// also have it start the sandbox although nothing is queued yet.
    fn kick(&self, handle: &DocHandle, feature_id: &str, session_id: &str, warm: bool) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(session_id) {
            if warm {
                w.warm.store(true, Ordering::Relaxed);
            }
            w.kick.notify_one();
            return;
        }
        let (stop_tx, stop_rx) = mpsc::unbounded_channel();
        let w = WorkerHandle {
            kick: Arc::new(Notify::new()),
            stop: stop_tx,
            shown: Arc::new(Mutex::new(worker::Shown::default())),
            warm: Arc::new(AtomicBool::new(warm)),
        };
        w.kick.notify_one();
        workers.insert(session_id.to_owned(), w.clone());
        let adopted = self
            .inner
            .adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session_id);
        let worker = worker::Worker::new(
            self.inner.deps.clone(),
            handle.clone(),
            feature_id.to_owned(),
            session_id.to_owned(),
            adopted,
            w.kick,
            stop_rx,
            w.shown,
            w.warm,
            self.inner.shutdown.clone(),
        );
        let span =
            tracing::info_span!("session", feature_id = %feature_id, session_id = %session_id);
        self.inner.tasks.spawn(worker.run().instrument(span));
    }
}

async fn bind_server_actor(handle: &DocHandle, attribution: &Attribution) -> Result<(), String> {
    let actor = handle
        .with_document_async(|d| d.get_actor().to_hex_string())
        .await
        .map_err(|_| "the document is closed".to_owned())?;
    attribution
        .bind(&[actor], SERVER)
        .await
        .map_err(|e| e.to_string())
}

/// Decides whether a queued entry may run.
#[derive(Debug, Clone)]
struct Checker {
    feature_id: String,
    attribution: Attribution,
    members: Members,
    max_prompt_bytes: usize,
}

impl Checker {
    /// Why `entry` (the list item `obj`) must not run, if it must not.
    fn refusal(&self, doc: &Automerge, obj: &ObjId, entry: &feature::QueueEntry) -> Option<String> {
        if entry.text.trim().is_empty() {
            return Some("the prompt is empty".into());
        }
        if entry.text.len() > self.max_prompt_bytes {
            return Some(format!(
                "the prompt is {} bytes; the limit is {} bytes",
                entry.text.len(),
                self.max_prompt_bytes
            ));
        }
        if feature::read_session(doc, &entry.session_id).is_none() {
            return Some(format!(
                "session {:?} does not exist in this feature",
                entry.session_id
            ));
        }
        let writer = match obj {
            ObjId::Id(_, actor, _) => self.attribution.owner(&actor.to_hex_string()),
            ObjId::Root => None,
        };
        match writer.as_deref() {
            Some(SERVER) => {}
            Some(w) if w == entry.author => {}
            Some(w) => {
                return Some(format!(
                    "the entry names {:?} as its author, but {w} wrote it",
                    entry.author
                ));
            }
            None => return Some("its writer is unknown".into()),
        }
        match self.members.role(&self.feature_id, &entry.author) {
            Some(role) if role.can_write() => None,
            Some(role) => Some(format!(
                "its author's role is {}, which cannot run prompts",
                role.as_str()
            )),
            None => Some("its author is not a member of this feature".into()),
        }
    }

    /// Reject the queued entries that must not run (one change); return the
    /// sessions with unfinished entries and what was rejected.
    fn triage(&self, doc: &mut Automerge) -> (HashSet<String>, Vec<(String, String)>) {
        let mut busy = HashSet::new();
        let mut reject = Vec::new();
        for (obj, entry) in queue_items(doc) {
            match entry.status {
                QueueStatus::Queued => match self.refusal(doc, &obj, &entry) {
                    Some(reason) => reject.push((entry.id, reason)),
                    None => {
                        busy.insert(entry.session_id);
                    }
                },
                QueueStatus::Dispatched | QueueStatus::Running => {
                    busy.insert(entry.session_id);
                }
                _ => {}
            }
        }
        // A run settled before a restart whose commit is still to record.
        for sid in feature::session_ids(doc) {
            if !busy.contains(&sid) && worker::unfinished_wrap_up(doc, &sid).is_some() {
                busy.insert(sid);
            }
        }
        if !reject.is_empty() {
            let now = unix_ms_now();
            let result = doc.transact_with(
                |_| ChangeMeta::now("reject queue entries").commit_options(),
                |tx| {
                    for (id, reason) in &reject {
                        let update = QueueUpdate::new(QueueStatus::Rejected, Writer::Server, now)
                            .with_error(reason.clone());
                        feature::set_queue_status(tx, id, &update)?;
                    }
                    Ok::<_, canopy_protocol::SchemaError>(())
                },
            );
            if let Err(f) = result {
                tracing::warn!(error = %f.error, "cannot reject queue entries");
                reject.clear();
            }
        }
        (busy, reject)
    }
}

fn queue_items(doc: &Automerge) -> Vec<(ObjId, feature::QueueEntry)> {
    feature::open_queue_entries_with_objects(doc)
}

impl Dispatcher {
    /// Follow a feature document's ephemeral messages: count the sidecars'
    /// heartbeats and the OpenCode restarts they report (each sidecar's
    /// count only grows; the difference is what happened since its last
    /// beat), and warm a session's sandbox when someone types a prompt for
    /// it.
    async fn watch_ephemera(&self, handle: DocHandle, feature_id: String) {
        let metrics = self.inner.deps.metrics.clone();
        let mut ephemera = handle.ephemera();
        let mut restarts: HashMap<String, u32> = HashMap::new();
        loop {
            let bytes = tokio::select! {
                next = ephemera.next() => match next {
                    Some(bytes) => bytes,
                    None => return,
                },
                _ = self.inner.shutdown.cancelled() => return,
            };
            match canopy_protocol::ephemeral::Ephemeral::decode(&bytes) {
                Ok(canopy_protocol::ephemeral::Ephemeral::Heartbeat(beat)) => {
                    metrics.sidecar_heartbeats.inc();
                    let Some(now) = beat.restarts else { continue };
                    // A lower count is a new sidecar, counting from 0 again.
                    let before = restarts.insert(beat.session_id, now).unwrap_or(now);
                    if now > before {
                        metrics.opencode_restarts.inc_by(u64::from(now - before));
                    }
                }
                Ok(canopy_protocol::ephemeral::Ephemeral::Typing(typing)) => {
                    self.warm(&handle, &feature_id, &typing).await;
                }
                _ => {}
            }
        }
    }

    /// Someone types a prompt for a session: start its sandbox now, so it
    /// is ready when the prompt arrives. Debounced per session; only for
    /// sessions that exist and people who may prompt.
    async fn warm(
        &self,
        handle: &DocHandle,
        feature_id: &str,
        typing: &canopy_protocol::ephemeral::Typing,
    ) {
        let may_prompt = self
            .inner
            .deps
            .members
            .role(feature_id, &typing.user_id)
            .is_some_and(|r| r.can_write());
        if !may_prompt {
            return;
        }
        {
            let mut warmed = self.inner.warmed.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if warmed
                .get(&typing.session_id)
                .is_some_and(|t| now.duration_since(*t) < WARM_DEBOUNCE)
            {
                return;
            }
            warmed.insert(typing.session_id.clone(), now);
        }
        let sid = typing.session_id.clone();
        let open = handle
            .with_document_async(move |d| {
                feature::read_session(d, &sid).is_some_and(|s| {
                    !matches!(
                        s.status,
                        feature::SessionStatus::Completed | feature::SessionStatus::Stopped
                    )
                })
            })
            .await
            .unwrap_or(false);
        if open {
            tracing::debug!(session_id = %typing.session_id, "someone is typing; warming the sandbox");
            self.kick(handle, feature_id, &typing.session_id, true);
        }
    }
}
