//! One session's worker: runs its queue entries one at a time.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use automerge::Automerge;
use canopy_protocol::{
    ChangeMeta,
    ephemeral::{AgentOutput, Ephemeral, OutputKind},
    feature::{self, QueueEntry, QueueStatus, QueueUpdate, SessionStatus, Writer},
    sidecar::{CommitOutcome, CommitRequest},
    transcript::{self, NewTranscript, PartKind},
    unix_ms_now,
};
use futures::{FutureExt, Stream, StreamExt};
use samod::DocHandle;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Deps, context,
    store::Run,
    transcript::{self as convert, Origin},
};
use crate::{
    attribution::{Attribution, SERVER},
    auth::TokenScope,
    opencode::{self, Event, Known, OpenCodeClient, OpenCodeError, Prompt},
    sandbox::{
        RepoSpec, Sandbox, SandboxError, SandboxSpec, SidecarSpec, sidecar_commit, sidecar_diff,
        sidecar_status,
    },
};

/// The error of an entry whose OpenCode process died under it.
const LOST_RUN: &str = "the agent's OpenCode process stopped during the run; the sandbox restarted it (queue the prompt again to retry)";
/// How long a started sandbox's sidecar gets to report `ready`.
const READY_WAIT: Duration = Duration::from_secs(15);
/// How long a sidecar gets to bring OpenCode (back) up.
const OPENCODE_UP_WAIT: Duration = Duration::from_secs(90);

/// OpenCode sends a heartbeat every 10 s; this long without any event
/// means the stream is dead even if the socket is not closed.
const EVENT_SILENCE: Duration = Duration::from_secs(30);
/// A run without news for this long is checked for a stall.
const STALL_CHECK_AFTER: Duration = Duration::from_secs(5);
/// How often a stalled prompt is sent again before the run fails.
const MAX_REPROMPTS: u32 = 2;
/// How often a run checks that its sandbox's processes are still there.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);
/// Waits between attempts to start a sandbox while its backend (the Docker
/// daemon) does not answer: the entry stays queued meanwhile.
const UNAVAILABLE_RETRY_FIRST: Duration = Duration::from_secs(1);
const UNAVAILABLE_RETRY_MAX: Duration = Duration::from_secs(15);

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, OpenCodeError>> + Send + Sync>>;

/// How a run ended, as the queue entry will record it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Done,
    Failed(String),
    Cancelled,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Why following a run stopped.
enum Followed {
    /// OpenCode says the session is idle: settle from its messages.
    Idle,
    /// OpenCode's process is gone.
    SandboxDied,
    /// The server is stopping; the run stays in flight for the next one.
    Shutdown,
}

/// What a worker shows the dispatcher's request handlers.
#[derive(Debug, Default)]
pub(super) struct Shown {
    /// The entry in flight, if any.
    pub current: Option<String>,
    /// The running sandbox's sidecar control API: URL and secret.
    pub control: Option<(String, String)>,
}

pub(super) struct Worker {
    deps: Deps,
    feature: DocHandle,
    feature_id: String,
    session_id: String,
    sandbox: Option<Sandbox>,
    opencode_session: Option<String>,
    /// `opencode_session` is known to exist in the current sandbox process.
    session_checked: bool,
    /// The OpenCode process (the sidecar's instance id) last seen up.
    instance: Option<String>,
    /// Who asked for the sandbox's last start (owns its token).
    asked_by: Option<String>,
    transcript: Option<DocHandle>,
    /// The client of the sandbox's OpenCode (its base URL with it): one
    /// connection pool for the sandbox's life.
    client: Option<(String, OpenCodeClient)>,
    /// The sandbox's `/event` stream between runs, kept open so a prompt
    /// does not wait for a new subscription; it belongs to the OpenCode
    /// instance named with it.
    events: Option<(String, Events)>,
    kick: Arc<Notify>,
    stop: mpsc::UnboundedReceiver<String>,
    shown: Arc<Mutex<Shown>>,
    checker: super::Checker,
    shutdown: CancellationToken,
    /// Set by the dispatcher when someone types a prompt: start the
    /// sandbox before the prompt arrives.
    warm: Arc<AtomicBool>,
    /// The last start failed because the backend did not answer: retry,
    /// waiting this long first.
    unavailable_retry: Option<Duration>,
    /// When the sandbox last finished a run (or started).
    last_active: tokio::time::Instant,
}

/// The commit of `entry`'s work: authored by the person who asked, its
/// subject the prompt's first line.
pub(crate) async fn commit_request(
    users: &crate::auth::Users,
    entry: &QueueEntry,
) -> CommitRequest {
    let user = users.user(&entry.author).await.ok().flatten();
    let (name, email) = match &user {
        Some(u) => (
            clean_name(&u.display_name).unwrap_or_else(|| u.handle.clone()),
            u.email
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| format!("{}@users.canopy.invalid", u.handle)),
        ),
        None => (
            entry.author.clone(),
            format!("{}@users.canopy.invalid", entry.author),
        ),
    };
    CommitRequest {
        queue_entry: entry.id.clone(),
        author_name: name,
        author_email: email,
        subject: entry.text.lines().next().unwrap_or_default().to_owned(),
        body: None,
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        deps: Deps,
        feature: DocHandle,
        feature_id: String,
        session_id: String,
        adopted: Option<Sandbox>,
        kick: Arc<Notify>,
        stop: mpsc::UnboundedReceiver<String>,
        shown: Arc<Mutex<Shown>>,
        warm: Arc<AtomicBool>,
        shutdown: CancellationToken,
    ) -> Self {
        if let Some(sandbox) = &adopted {
            // It runs already; above the limit if the limit shrank.
            deps.slots.try_take(&session_id);
            shown.lock().unwrap_or_else(|p| p.into_inner()).control =
                Some((sandbox.control_url.clone(), sandbox.control_secret.clone()));
        }
        let checker = super::Checker {
            feature_id: feature_id.clone(),
            attribution: deps.attribution.clone(),
            members: deps.members.clone(),
            max_prompt_bytes: deps.max_prompt_bytes,
        };
        Worker {
            checker,
            deps,
            feature,
            feature_id,
            session_id,
            sandbox: adopted,
            opencode_session: None,
            session_checked: false,
            instance: None,
            asked_by: None,
            transcript: None,
            client: None,
            events: None,
            kick,
            stop,
            shown,
            shutdown,
            warm,
            unavailable_retry: None,
            last_active: tokio::time::Instant::now(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let sid = self.session_id.clone();
            let checker = self.checker.clone();
            let Ok(next) = self
                .feature
                .with_document_async(move |d| {
                    // The watcher refuses bad entries as they arrive; this
                    // closes the window between an entry's arrival and the
                    // watcher's turn.
                    checker.triage(d);
                    (next_entry(d, &sid), unfinished_wrap_up(d, &sid))
                })
                .await
            else {
                return;
            };
            let (next, unfinished) = next;
            if next.is_none()
                && let Some(entry) = unfinished
            {
                self.wrap_up(&entry).await;
                continue;
            }
            let Some(entry) = next else {
                if self.warm.swap(false, Ordering::Relaxed) && self.sandbox.is_none() {
                    self.warm_up().await;
                    continue;
                }
                if self.sandbox.is_none() {
                    // Nothing runs (stopped after an abort, completed): the
                    // slot is someone else's.
                    self.deps.slots.release(&self.session_id);
                }
                let idle = match (self.deps.idle_after, &self.sandbox) {
                    (Some(after), Some(_)) => Some(self.last_active + after),
                    _ => None,
                };
                tokio::select! {
                    _ = self.kick.notified() => continue,
                    _ = self.shutdown.cancelled() => return,
                    _ = async { tokio::time::sleep_until(idle.unwrap_or_else(tokio::time::Instant::now)).await }, if idle.is_some() => {
                        self.hibernate().await;
                        continue;
                    }
                }
            };
            self.set_current(Some(entry.id.clone()));
            let shutting_down = self.handle(entry).await;
            self.set_current(None);
            if shutting_down || self.shutdown.is_cancelled() {
                return;
            }
        }
    }

    fn set_current(&self, entry: Option<String>) {
        self.shown.lock().unwrap_or_else(|p| p.into_inner()).current = entry;
    }

    /// Keep the sandbox, and tell the dispatcher's handlers how to reach
    /// its sidecar.
    fn set_sandbox(&mut self, sandbox: Option<Sandbox>) {
        self.shown.lock().unwrap_or_else(|p| p.into_inner()).control = sandbox
            .as_ref()
            .map(|s| (s.control_url.clone(), s.control_secret.clone()));
        self.sandbox = sandbox;
    }

    /// Run (or resume) one entry; `true` if the server is shutting down.
    async fn handle(&mut self, entry: QueueEntry) -> bool {
        let result = self.run_entry(&entry).await;
        self.last_active = tokio::time::Instant::now();
        match result {
            Ok(shutting_down) => shutting_down,
            Err(reason) => {
                if let Some(wait) = self.unavailable_retry {
                    // The backend is down, not the entry wrong: it stays
                    // queued and runs once the backend answers again.
                    tracing::warn!(%reason, retry_in = ?wait, "the sandbox backend does not answer; the entry stays queued");
                    return tokio::select! {
                        _ = tokio::time::sleep(wait) => false,
                        _ = self.shutdown.cancelled() => true,
                    };
                }
                // Whatever kept the run from starting is the entry's error.
                self.settle(&entry, Outcome::Failed(reason)).await;
                false
            }
        }
    }

    /// Start the sandbox ahead of a prompt (someone is typing one).
    async fn warm_up(&mut self) {
        self.asked_by = None;
        match self.ensure_ready().await {
            Ok(()) => {
                self.last_active = tokio::time::Instant::now();
                tracing::info!("sandbox warmed ahead of a prompt");
            }
            Err(e) => tracing::warn!(error = %e, "cannot warm the sandbox"),
        }
    }

    /// Idle for long: stop the sandbox (a container is snapshotted first)
    /// and give its slot back; the next prompt continues from it.
    async fn hibernate(&mut self) {
        tracing::info!("the sandbox is idle; stopping it");
        let backend = self.deps.backend.name().to_owned();
        let result = self.deps.backend.hibernate(&self.session_id).await;
        self.deps
            .metrics
            .sandbox_hibernations
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: if result.is_ok() { "ok" } else { "failed" },
            })
            .inc();
        self.forget_sandbox();
        self.deps.slots.release(&self.session_id);
        let (state, detail) = match &result {
            Ok(()) => (
                "hibernated",
                "stopped while idle; the next prompt continues where it left off".to_owned(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hibernate the sandbox");
                ("stopped", format!("stopped while idle: {e}"))
            }
        };
        let sid = self.session_id.clone();
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "sandbox idle", |tx| {
                    let current = feature::read_session(&*tx, &sid).and_then(|s| s.sandbox);
                    let shown = feature::Sandbox {
                        backend,
                        state: state.into(),
                        workspace_ready: false,
                        detail: Some(detail),
                        ..current.unwrap_or_default()
                    };
                    feature::set_session_sandbox(tx, &sid, Some(&shown))
                })
            })
            .await;
    }

    /// [`Worker::handle`]'s body: `Err` is why the entry failed before its
    /// run could be followed.
    async fn run_entry(&mut self, entry: &QueueEntry) -> Result<bool, String> {
        let entry = entry.clone();
        // Stop requests for an earlier entry are stale.
        while self.stop.try_recv().is_ok() {}
        let resumed = entry.status != QueueStatus::Queued;
        let run = if resumed {
            match self.deps.store.run(&entry.id).await {
                Ok(run) => run,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the run record");
                    return Ok(self.wait_a_little().await);
                }
            }
        } else {
            None
        };
        tracing::info!(queue_entry = %entry.id, resumed, "running queue entry");
        self.asked_by = Some(entry.author.clone());
        self.ensure_ready().await?;
        let (oc, transcript) = self.ensure_session_and_transcript().await?;
        let sandbox = self.sandbox.clone().expect("ensure_ready set the sandbox");
        let client = self.client_for(&sandbox);
        let dir = sandbox.workspace.to_string_lossy().into_owned();
        // The steps before the prompt do not depend on one another: run
        // them at once, so the prompt waits for the slowest, not the sum.
        let kept = self.take_events();
        let subscribe = async {
            match kept {
                Some(events) => Ok(events),
                // Subscribe before prompting: nothing the run emits is missed.
                None => client
                    .events(&dir)
                    .await
                    .map(|e| -> Events { Box::pin(e) })
                    .map_err(|e| format!("cannot follow the agent: {e}")),
            }
        };
        let begin = async {
            if let Some(run) = run {
                return Ok(Some(run));
            }
            let run = Run {
                queue_entry: entry.id.clone(),
                opencode_session: oc.clone(),
                message_id: opencode::ascending_id("msg"),
                opencode_instance: self.instance.clone(),
            };
            // Both before the prompt, neither waiting for the other: a run
            // record of an entry that was cancelled meanwhile is never read.
            let (marked, recorded) = tokio::join!(
                async { resumed || self.mark(&entry.id, QueueStatus::Dispatched).await },
                self.deps
                    .store
                    .record_run(&self.feature_id, &self.session_id, &run)
            );
            if !marked {
                // Cancelled (or settled elsewhere) while the sandbox started.
                return Ok(None);
            }
            recorded.map_err(|e| format!("cannot record the run: {e}"))?;
            Ok::<_, String>(Some(run))
        };
        let (events, run, system) = tokio::join!(subscribe, begin, self.system_text(&entry));
        let events = events?;
        let Some(run) = run? else {
            self.keep_events(events);
            return Ok(false);
        };
        let origin = Origin {
            message_id: run.message_id.clone(),
            author: entry.author.clone(),
            queue_entry: entry.id.clone(),
        };
        // A resumed run may have been prompted already, or even finished.
        let mut prompt_needed = true;
        if resumed && run.opencode_instance.is_some() && run.opencode_instance != self.instance {
            // Prompted in an OpenCode process that is gone (restarted by the
            // sidecar while this server was away): its answer is lost.
            return Err(LOST_RUN.into());
        }
        if resumed {
            let msgs = client
                .messages(&run.opencode_session, &dir)
                .await
                .map_err(|e| format!("cannot read the agent's messages: {e}"))?;
            prompt_needed = !msgs
                .iter()
                .any(|m| m.pointer("/info/id").and_then(Value::as_str) == Some(&run.message_id));
            if !prompt_needed {
                self.write_messages(&transcript, &msgs, &origin).await;
                if !busy(&client, &run.opencode_session, &dir).await {
                    return Ok(self
                        .finish(
                            &client,
                            &dir,
                            &entry,
                            &run,
                            &origin,
                            &transcript,
                            None,
                            false,
                            entry.status == QueueStatus::Cancelled,
                            false,
                        )
                        .await);
                }
            }
        }
        let Some(system) = system else {
            return Ok(true);
        };
        let prompt = Prompt {
            text: entry.text.clone(),
            system: Some(system),
            model: self.deps.model.clone(),
            message_id: Some(run.message_id.clone()),
            part_id: Some(user_part_id(&run.message_id)),
        };
        if prompt_needed {
            // The user message goes to the transcript while OpenCode takes
            // the prompt, so every client sees who asked at once.
            let (_, prompted) = tokio::join!(
                self.write_user_message(&transcript, &origin, &entry.text),
                client.prompt_async(&run.opencode_session, &dir, &prompt)
            );
            prompted.map_err(|e| format!("OpenCode refused the prompt: {e}"))?;
        }
        self.mark_running(&entry.id).await;
        // A resumed run that OpenCode already has: its events are this run's.
        let state = FollowState {
            started: !prompt_needed,
            stream_broken: resumed,
            prompt: Some(prompt),
            ..FollowState::default()
        };
        Ok(self
            .follow_and_finish(client, dir, entry, run, origin, transcript, events, state)
            .await)
    }

    #[allow(clippy::too_many_arguments)]
    async fn follow_and_finish(
        &mut self,
        client: OpenCodeClient,
        dir: String,
        entry: QueueEntry,
        run: Run,
        origin: Origin,
        transcript: DocHandle,
        mut events: Events,
        mut state: FollowState,
    ) -> bool {
        let followed = self
            .follow(
                &client,
                &dir,
                &entry,
                &run,
                &origin,
                &transcript,
                &mut events,
                &mut state,
            )
            .await;
        let idle = matches!(followed, Followed::Idle);
        let shutting_down = match followed {
            Followed::Shutdown => true,
            Followed::SandboxDied => {
                tracing::warn!(queue_entry = %entry.id, "OpenCode died during the run");
                // Whatever the agent changed before it died is still its
                // author's work.
                self.commit_work(&entry).await;
                self.settle(&entry, Outcome::Failed(LOST_RUN.into())).await;
                self.set_session_status(SessionStatus::Failed).await;
                // Ready again (the sidecar restarts OpenCode; a dead sidecar
                // means a new sandbox) before what comes next.
                if let Err(e) = self.ensure_ready().await {
                    tracing::warn!(error = %e, "cannot restart the sandbox");
                }
                false
            }
            Followed::Idle => {
                let done_by_events = state.done_by_events();
                self.finish(
                    &client,
                    &dir,
                    &entry,
                    &run,
                    &origin,
                    &transcript,
                    state.error,
                    state.stop_requested,
                    state.client_cancelled,
                    done_by_events,
                )
                .await
            }
        };
        // The stream serves the next run, unless its sandbox went away.
        if idle && self.sandbox.is_some() {
            self.keep_events(events);
        }
        shutting_down
    }

    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &mut self,
        client: &OpenCodeClient,
        dir: &str,
        entry: &QueueEntry,
        run: &Run,
        origin: &Origin,
        transcript: &DocHandle,
        events: &mut Events,
        state: &mut FollowState,
    ) -> Followed {
        let oc = run.opencode_session.as_str();
        let mut changes = self.feature.changes();
        let mut liveness = tokio::time::interval(LIVENESS_EVERY);
        let mut last_event = Instant::now();
        // The last event about this run's session (not a heartbeat).
        let mut last_progress = Instant::now();
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        last_event = Instant::now();
                        if ev.session_id() != Some(oc) {
                            continue;
                        }
                        last_progress = Instant::now();
                        if let Some(done) = self
                            .on_event(&ev, client, dir, run, origin, transcript, state)
                            .await
                        {
                            return done;
                        }
                    }
                    Some(Err(_)) | None => {
                        if self.opencode_lost(run).await {
                            return Followed::SandboxDied;
                        }
                        // Reconnect, then catch up: the stream has no replay.
                        state.stream_broken = true;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        match client.events(dir).await {
                            Ok(e) => *events = Box::pin(e),
                            Err(_) => continue,
                        }
                        last_event = Instant::now();
                        if let Ok(msgs) = client.messages(oc, dir).await {
                            self.write_messages(transcript, &msgs, origin).await;
                        }
                        if !busy(client, oc, dir).await {
                            return Followed::Idle;
                        }
                    }
                },
                Some(id) = self.stop.recv() => {
                    if id == entry.id && !state.stop_requested {
                        tracing::info!(queue_entry = %entry.id, "stop requested; aborting the run");
                        state.stop_requested = true;
                        if let Err(e) = client.abort(oc, dir).await {
                            tracing::warn!(error = %e, "abort failed");
                        }
                    }
                }
                next = changes.next() => {
                    if next.is_none() {
                        return Followed::Shutdown;
                    }
                    let id = entry.id.clone();
                    let status = self
                        .feature
                        .with_document_async(move |d| feature::find_queue_entry(d, &id).map(|e| e.status))
                        .await
                        .ok()
                        .flatten();
                    if status == Some(QueueStatus::Cancelled) && !state.client_cancelled {
                        tracing::info!(queue_entry = %entry.id, "entry cancelled while running; aborting");
                        state.client_cancelled = true;
                        if let Err(e) = client.abort(oc, dir).await {
                            tracing::warn!(error = %e, "abort failed");
                        }
                    }
                }
                _ = liveness.tick() => {
                    if self.opencode_lost(run).await {
                        return Followed::SandboxDied;
                    }
                    if last_progress.elapsed() > STALL_CHECK_AFTER {
                        last_progress = Instant::now();
                        if let Some(done) = self.check_progress(client, dir, run, state).await {
                            return done;
                        }
                    }
                    if last_event.elapsed() > EVENT_SILENCE {
                        tracing::warn!("no events from OpenCode for {EVENT_SILENCE:?}; reconnecting");
                        state.stream_broken = true;
                        last_event = Instant::now();
                        if let Ok(e) = client.events(dir).await {
                            *events = Box::pin(e);
                        }
                        if !busy(client, oc, dir).await {
                            return Followed::Idle;
                        }
                    }
                }
                _ = self.shutdown.cancelled() => return Followed::Shutdown,
            }
        }
    }

    /// Act on one event of the run's OpenCode session.
    #[allow(clippy::too_many_arguments)]
    async fn on_event(
        &mut self,
        ev: &Event,
        client: &OpenCodeClient,
        dir: &str,
        run: &Run,
        origin: &Origin,
        transcript: &DocHandle,
        state: &mut FollowState,
    ) -> Option<Followed> {
        match ev.known() {
            Known::MessageUpdated { info, .. } => {
                if info.get("id").and_then(Value::as_str) == Some(&origin.message_id) {
                    state.started = true;
                }
                state.note_answer(info, &run.message_id);
                if let Some(m) = convert::message(info, origin) {
                    state.messages.insert(m.id.clone());
                    let credit = self.credit(transcript);
                    let _ = transcript
                        .with_document_async(move |d| {
                            credit
                                .write(d, "agent message", |tx| transcript::upsert_message(tx, &m))
                        })
                        .await;
                }
            }
            Known::PartUpdated { part, .. } => {
                if let Some(p) = convert::part(part)
                    && state.messages.contains(&p.message_id)
                {
                    state
                        .kinds
                        .insert(p.upsert.id.clone(), p.upsert.kind.clone());
                    self.keep_output(&p).await;
                    let credit = self.credit(transcript);
                    let _ = transcript
                        .with_document_async(move |d| {
                            credit.write(d, "agent output", |tx| {
                                transcript::upsert_part(tx, &p.message_id, &p.upsert)
                            })
                        })
                        .await;
                }
            }
            Known::PartDelta {
                message_id,
                part_id,
                delta,
                ..
            } => {
                let seq = state.seqs.entry(part_id.to_owned()).or_insert(0);
                let kind = match state.kinds.get(part_id) {
                    Some(PartKind::Reasoning) => OutputKind::Reasoning,
                    Some(PartKind::Tool) => OutputKind::Tool,
                    _ => OutputKind::Text,
                };
                let msg = Ephemeral::AgentOutput(AgentOutput {
                    session_id: self.session_id.clone(),
                    message_id: message_id.to_owned(),
                    part_id: part_id.to_owned(),
                    kind,
                    text: delta.to_owned(),
                    seq: *seq,
                });
                *seq += 1;
                match msg.encode() {
                    Ok(bytes) => transcript.broadcast(bytes),
                    Err(e) => tracing::debug!(error = %e, "delta not streamed"),
                }
            }
            Known::SessionError { error, .. } => {
                if convert::is_abort(error) {
                    state.aborted = true;
                } else {
                    state.error = Some(convert::error_text(error));
                }
            }
            // OpenCode sends idle more than once after an abort, late
            // enough to land in the next run's stream: only an idle after
            // this run's prompt arrived, with the run really over, counts.
            // The events already say whether the run is over: its newest
            // answer is complete. Ask OpenCode only when they do not.
            Known::SessionIdle { .. } if state.started && state.answer_settled() => {
                return Some(Followed::Idle);
            }
            Known::SessionIdle { .. } if state.started => {
                return self.check_progress(client, dir, run, state).await;
            }
            Known::SessionIdle { .. } => {
                tracing::debug!("idle before this run started; ignored");
            }
            Known::Other => {}
        }
        None
    }

    /// Is the run over, still going, or stalled (OpenCode took the prompt
    /// and then sat idle without answering, which it does when a prompt
    /// lands while an aborted run is still winding down)? A stalled prompt
    /// is sent again, with the same message id, a few times.
    async fn check_progress(
        &self,
        client: &OpenCodeClient,
        dir: &str,
        run: &Run,
        state: &mut FollowState,
    ) -> Option<Followed> {
        match run_state(client, run, dir).await {
            RunState::Over => Some(Followed::Idle),
            RunState::Going => {
                state.started = true;
                None
            }
            // An aborted run has nothing more to say; prompting OpenCode
            // while it aborts breaks its instance.
            RunState::Stalled if state.stop_requested || state.client_cancelled => {
                Some(Followed::Idle)
            }
            RunState::Stalled if state.reprompts < MAX_REPROMPTS => {
                let prompt = state.prompt.as_ref()?;
                state.reprompts += 1;
                state.started = false;
                tracing::warn!(
                    attempt = state.reprompts,
                    "OpenCode left the prompt unanswered; sending it again"
                );
                if let Err(e) = client
                    .prompt_async(&run.opencode_session, dir, prompt)
                    .await
                {
                    state.error = Some(format!("OpenCode refused the prompt: {e}"));
                    return Some(Followed::Idle);
                }
                None
            }
            RunState::Stalled => Some(Followed::Idle),
        }
    }

    async fn keep_output(&self, p: &convert::ConvertedPart) {
        if let Some((tool, output)) = &p.full_output
            && let Err(e) = self
                .deps
                .store
                .put_tool_output(
                    &self.feature_id,
                    &self.session_id,
                    &p.upsert.id,
                    tool,
                    output,
                )
                .await
        {
            tracing::warn!(error = %e, "cannot keep a tool output");
        }
    }

    /// Settle an entry from OpenCode's own record of the run.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &mut self,
        client: &OpenCodeClient,
        dir: &str,
        entry: &QueueEntry,
        run: &Run,
        origin: &Origin,
        transcript: &DocHandle,
        event_error: Option<String>,
        stop_requested: bool,
        client_cancelled: bool,
        done_by_events: bool,
    ) -> bool {
        // When the events settle it, the outcome goes out first: it is what
        // everyone waits for, and the events put the answer into the
        // transcript already. OpenCode's record of the run follows.
        if done_by_events {
            self.write_outcome(entry, Outcome::Done).await;
        }
        let msgs = match run_messages(client, run, dir).await {
            Ok(m) => m,
            Err(e) if done_by_events => {
                tracing::warn!(error = %e, "cannot read the agent's messages after the run");
                Vec::new()
            }
            Err(e) => {
                if !self.deps.backend.alive(&self.session_id).await {
                    self.forget_sandbox();
                }
                self.settle(
                    entry,
                    Outcome::Failed(format!("cannot read the agent's answer: {e}")),
                )
                .await;
                return false;
            }
        };
        // Totals over every answer in the transcript: idempotent after a
        // resume. The full tool outputs (kept as they streamed too) are
        // written again after the outcome.
        let (usage, parts) = self.write_transcript(transcript, &msgs, origin).await;
        let answers: Vec<&Value> = msgs
            .iter()
            .filter_map(|m| m.get("info"))
            .filter(|i| {
                i.get("role").and_then(Value::as_str) == Some("assistant")
                    && i.get("parentID").and_then(Value::as_str) == Some(&run.message_id)
            })
            .collect();
        let last = answers.last();
        let last_error = last.and_then(|i| i.get("error"));
        let outcome = if done_by_events {
            Outcome::Done
        } else if stop_requested || last_error.is_some_and(convert::is_abort) {
            Outcome::Cancelled
        } else if let Some(e) = last_error {
            Outcome::Failed(convert::error_text(e))
        } else if let Some(e) = event_error {
            Outcome::Failed(e)
        } else if last.is_some_and(|i| i.pointer("/time/completed").is_some()) {
            Outcome::Done
        } else {
            Outcome::Failed(
                "the run was interrupted before the agent answered (its sandbox restarted)".into(),
            )
        };
        let aborted = stop_requested || client_cancelled || outcome == Outcome::Cancelled;
        if !done_by_events {
            // The transcript is complete by now.
            self.write_outcome(entry, outcome).await;
        }
        self.keep_outputs(&parts).await;
        // Commit before the next prompt runs, so it starts from a clean
        // tree, as the entry's author. The sidecar records the commit too;
        // writing it here, with `idle`, means a session that is `idle` again
        // has its commit on every replica that sees it idle. Without the
        // sidecar, at least say which files are dirty.
        let committed = self.commit_work(entry).await;
        let was_committed = committed.is_some();
        let files = match committed {
            Some(_) => None,
            None => match client.vcs_status(dir).await {
                Ok(list) => Some(
                    list.iter()
                        .filter_map(|f| f.get("file").and_then(Value::as_str).map(str::to_owned))
                        .collect::<Vec<_>>(),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the workspace's status");
                    None
                }
            },
        };
        let (sid, id) = (self.session_id.clone(), entry.id.clone());
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "run committed", |tx| {
                    if let Some(usage) = &usage
                        && let Err(e) = feature::set_session_usage(tx, &sid, usage)
                    {
                        tracing::warn!(error = %e, "cannot record the usage");
                    }
                    if let Some(outcome) = &committed
                        && let Err(e) = feature::record_commit(tx, &sid, &id, outcome)
                    {
                        tracing::warn!(error = %e, "cannot record the commit");
                    }
                    if let Some(files) = &files
                        && let Err(e) = feature::set_session_files_changed(tx, &sid, files)
                    {
                        tracing::warn!(error = %e, "cannot record the changed files");
                    }
                    feature::set_session_status(tx, &sid, &SessionStatus::Idle)
                })
            })
            .await;
        if was_committed {
            self.keep_diff().await;
        }
        if aborted {
            // OpenCode 1.18.33 does not recover from an abort: later prompts
            // in that instance fail ("All fibers interrupted") or are never
            // answered. A fresh process (same workspace, same OpenCode
            // session and history) is the reliable way on.
            tracing::info!("restarting the sandbox after an abort");
            if let Err(e) = self.deps.backend.stop(&self.session_id).await {
                tracing::warn!(error = %e, "cannot stop the sandbox");
            }
            self.forget_sandbox();
        }
        false
    }

    /// Finish what a run left undone when this server stopped between its
    /// outcome and its commit: the session still says `running`. The work
    /// is committed as that entry's author if the sandbox is still there.
    async fn wrap_up(&mut self, entry: &QueueEntry) {
        tracing::info!(queue_entry = %entry.id, "finishing the commit of a run settled before a restart");
        let committed = match &self.sandbox {
            Some(_) => self.commit_work(entry).await,
            None => None,
        };
        let was_committed = committed.is_some();
        if !was_committed {
            tracing::warn!(queue_entry = %entry.id, "the run's work could not be committed; the next commit includes it");
        }
        let (sid, id) = (self.session_id.clone(), entry.id.clone());
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "run committed", |tx| {
                    if let Some(outcome) = &committed
                        && let Err(e) = feature::record_commit(tx, &sid, &id, outcome)
                    {
                        tracing::warn!(error = %e, "cannot record the commit");
                    }
                    feature::set_session_status(tx, &sid, &SessionStatus::Idle)
                })
            })
            .await;
        if was_committed {
            self.keep_diff().await;
        }
    }

    /// Keep the session's diff as of the commit just recorded, so it can
    /// be shown after the sandbox stops. After `idle` is written: nobody
    /// waits for it.
    async fn keep_diff(&self) {
        let Some(sandbox) = &self.sandbox else { return };
        let kept = match sidecar_diff(&sandbox.control_url, &sandbox.control_secret).await {
            Ok(diff) => match serde_json::to_string(&diff) {
                Ok(json) => self
                    .deps
                    .store
                    .put_diff(&self.feature_id, &self.session_id, &json)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = kept {
            tracing::warn!(error = %e, "cannot keep the session's diff");
        }
    }

    /// Settle a run's entry; the session stays `running` until its commit
    /// is recorded.
    async fn write_outcome(&self, entry: &QueueEntry, outcome: Outcome) {
        // Settled: there is nothing left to stop.
        self.set_current(None);
        tracing::info!(queue_entry = %entry.id, outcome = ?outcome, "run finished");
        self.deps.metrics.agent_run(outcome.label());
        let id = entry.id.clone();
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "run finished", |tx| apply_outcome(tx, &id, &outcome))
            })
            .await;
    }

    /// Upsert the run's messages and parts from `GET /session/{id}/message`
    /// and keep the full tool outputs.
    async fn write_messages(&self, transcript: &DocHandle, msgs: &[Value], origin: &Origin) {
        let (_, parts) = self.write_transcript(transcript, msgs, origin).await;
        self.keep_outputs(&parts).await;
    }

    /// [`Worker::write_messages`]'s transcript half: the transcript's usage
    /// totals after it (`None` if it is closed), and the parts whose full
    /// outputs are still to keep.
    async fn write_transcript(
        &self,
        transcript: &DocHandle,
        msgs: &[Value],
        origin: &Origin,
    ) -> (Option<feature::Usage>, Vec<convert::ConvertedPart>) {
        let mut upserts = Vec::new();
        for m in msgs {
            let Some(info) = m.get("info") else { continue };
            let Some(message) = convert::message(info, origin) else {
                continue;
            };
            let parts: Vec<_> = m
                .get("parts")
                .and_then(Value::as_array)
                .map(|ps| ps.iter().filter_map(convert::part).collect())
                .unwrap_or_default();
            upserts.push((message, parts));
        }
        let credit = self.credit(transcript);
        let (usage, upserts) = transcript
            .with_document_async(move |d| {
                let _ = credit.write(d, "agent messages", |tx| {
                    for (m, parts) in &upserts {
                        transcript::upsert_message(tx, m)?;
                        for p in parts {
                            transcript::upsert_part(tx, &m.id, &p.upsert)?;
                        }
                    }
                    Ok(())
                });
                (Some(transcript::total_usage(d)), upserts)
            })
            .await
            .unwrap_or_default();
        let parts = upserts.into_iter().flat_map(|(_, parts)| parts).collect();
        (usage, parts)
    }

    async fn keep_outputs(&self, parts: &[convert::ConvertedPart]) {
        for p in parts {
            self.keep_output(p).await;
        }
    }

    async fn write_user_message(&self, transcript: &DocHandle, origin: &Origin, text: &str) {
        let message = transcript::MessageUpsert {
            id: origin.message_id.clone(),
            role: transcript::Role::User,
            author: Some(origin.author.clone()),
            queue_entry: Some(origin.queue_entry.clone()),
            created_at: unix_ms_now(),
            finish: None,
            error: None,
            usage: None,
        };
        let part = transcript::PartUpsert {
            id: user_part_id(&origin.message_id),
            kind: PartKind::Text,
            text: Some(text.to_owned()),
            tool: None,
            state: None,
            input: None,
            output: None,
            error: None,
        };
        // The prompt is its author's words, not the agent's.
        let credit = Credit {
            author: origin.author.clone(),
            ..self.credit(transcript)
        };
        let _ = transcript
            .with_document_async(move |d| {
                credit.write(d, "prompt", |tx| {
                    transcript::upsert_message(tx, &message)?;
                    transcript::upsert_part(tx, &message.id, &part)
                })
            })
            .await;
    }

    async fn system_text(&self, entry: &QueueEntry) -> Option<String> {
        let (sid, author) = (self.session_id.clone(), entry.author.clone());
        self.feature
            .with_document_async(move |d| match feature::read(d) {
                Ok(doc) => context::system_text(&doc, &sid, &author),
                Err(_) => String::new(),
            })
            .await
            .ok()
    }

    /// Make sure the sandbox runs and its OpenCode answers: adopted, still
    /// alive (OpenCode restarted by the sidecar if it died), or started now.
    async fn ensure_ready(&mut self) -> Result<(), String> {
        if let Some(sandbox) = self.sandbox.clone() {
            if self.deps.backend.alive(&self.session_id).await {
                match wait_opencode_up(&sandbox, &self.shutdown).await {
                    Ok(instance) => {
                        self.note_instance(instance);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the sandbox's OpenCode does not come up; restarting the sandbox");
                        if let Err(e) = self.deps.backend.stop(&self.session_id).await {
                            tracing::warn!(error = %e, "cannot stop the sandbox");
                        }
                    }
                }
            }
            self.forget_sandbox();
        }
        let backend = self.deps.backend.name().to_owned();
        self.take_slot(&backend).await?;
        let sid = self.session_id.clone();
        let repo = self
            .feature
            .with_document_async(|d| feature::read_repo(d))
            .await
            .ok()
            .flatten();
        // The whole history when the feature asks for it, else the
        // server's depth (0 is the whole history too).
        let depth = match &repo {
            Some(r) if r.full_clone => 0,
            _ => self.deps.clone_depth,
        };
        // A first start with a repository clones it: the session shows
        // `syncing` until the sandbox reports ready.
        let syncing = repo.is_some() && !self.deps.backend.has_workspace(&sid);
        let starting = feature::Sandbox {
            backend: backend.clone(),
            state: if syncing { "syncing" } else { "starting" }.into(),
            workspace_ready: false,
            branch: None,
            head: None,
            detail: if syncing {
                Some(format!(
                    "cloning the repository ({})",
                    if depth == 0 {
                        "whole history".to_owned()
                    } else {
                        format!("last {depth} commit(s)")
                    }
                ))
            } else {
                self.deps
                    .backend
                    .has_warm()
                    .then(|| "claiming a warm sandbox".to_owned())
            },
        };
        let credit = self.credit(&self.feature);
        let found = self
            .feature
            .with_document_async(move |d| {
                let _ = credit.write(d, "sandbox starting", |tx| {
                    feature::set_session_status(tx, &sid, &SessionStatus::Starting)?;
                    feature::set_session_sandbox(tx, &sid, Some(&starting))
                });
                feature::read(d).ok()
            })
            .await
            .map_err(|_| "the server is stopping".to_owned())?;
        let (repo, owner) = match &found {
            Some(doc) => (doc.repo.clone(), self.token_owner(doc)),
            None => (None, self.asked_by.clone()),
        };
        let work_branch = found.as_ref().map(|doc| {
            let session = doc
                .sessions
                .get(&self.session_id)
                .map(|s| s.title.as_str())
                .unwrap_or_default();
            canopy_protocol::git::session_branch(&doc.title, session, &self.session_id)
        });
        let owner = owner.ok_or("nobody to start the sandbox for")?;
        // The clone's credential: asked of the forge now, handed to git in
        // its environment only.
        let credential = match &repo {
            Some(r) => match self.deps.github.git_credential(&r.url, &owner).await {
                Ok(c) => c.map(|c| canopy_protocol::sidecar::GitCredential {
                    username: c.username,
                    password: c.password,
                    expires_at: c.expires_at,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "no git credential for the clone; trying without");
                    None
                }
            },
            None => None,
        };
        let (token_id, token) = self
            .deps
            .users
            .create_token_expiring(
                &owner,
                &format!("sandbox {}", self.session_id),
                TokenScope::Agent {
                    feature_id: self.feature_id.clone(),
                    session_id: self.session_id.clone(),
                },
                Some(
                    unix_ms_now()
                        + i64::try_from(self.deps.token_ttl.as_millis()).unwrap_or(i64::MAX / 2),
                ),
            )
            .await
            .map(|(info, token)| (info.token_id, token))
            .map_err(|e| format!("cannot mint the sandbox token: {e}"))?;
        let spec = SandboxSpec {
            session_id: self.session_id.clone(),
            feature_id: self.feature_id.clone(),
            repo: repo.map(|r| RepoSpec {
                url: r.url,
                branch: r.feature_branch.unwrap_or(r.base_branch),
                work_branch,
                depth,
                credential,
            }),
            sidecar: SidecarSpec {
                server_url: self.deps.sandbox_server_url.clone(),
                token,
                feature_doc: self.feature.url().to_string(),
            },
        };
        let clock = Instant::now();
        let started = self.deps.backend.start(spec).await;
        self.deps.metrics.sandbox_start(match &started {
            Ok(_) => "ok",
            Err(SandboxError::Unavailable(_)) => "unavailable",
            Err(_) => "failed",
        });
        if started.is_ok() {
            self.deps
                .metrics
                .sandbox_start_seconds
                .observe(clock.elapsed().as_secs_f64());
        }
        self.unavailable_retry = match &started {
            Err(SandboxError::Unavailable(_)) => {
                Some(self.unavailable_retry.map_or(UNAVAILABLE_RETRY_FIRST, |d| {
                    (d * 2).min(UNAVAILABLE_RETRY_MAX)
                }))
            }
            _ => None,
        };
        match &started {
            Ok(sandbox) => {
                if let Some(e) = &sandbox.clone_error {
                    tracing::warn!(error = %e, "the repository could not be cloned; the workspace is empty");
                }
                // The sidecar is the only holder of the new token now.
                if let Err(e) = self
                    .deps
                    .users
                    .revoke_agent_tokens(&self.feature_id, &self.session_id, Some(&token_id))
                    .await
                {
                    tracing::warn!(error = %e, "cannot revoke the session's older sandbox tokens");
                }
            }
            Err(e) => {
                self.deps.slots.release(&self.session_id);
                let _ = self
                    .deps
                    .users
                    .revoke_agent_tokens(&self.feature_id, &self.session_id, None)
                    .await;
                let shown = feature::Sandbox {
                    backend,
                    state: "failed".into(),
                    workspace_ready: false,
                    branch: None,
                    head: None,
                    detail: Some(if self.unavailable_retry.is_some() {
                        format!("{e}; retrying until it answers")
                    } else {
                        e.to_string()
                    }),
                };
                let sid = self.session_id.clone();
                let credit = self.credit(&self.feature);
                let _ = self
                    .feature
                    .with_document_async(move |d| {
                        credit.write(d, "sandbox failed", |tx| {
                            feature::set_session_status(tx, &sid, &SessionStatus::Failed)?;
                            feature::set_session_sandbox(tx, &sid, Some(&shown))
                        })
                    })
                    .await;
                return Err(e.to_string());
            }
        }
        let sandbox = started.map_err(|e| e.to_string())?;
        let instance = wait_opencode_up(&sandbox, &self.shutdown).await?;
        self.set_sandbox(Some(sandbox));
        self.note_instance(instance);
        // The sidecar reports `ready` into the document; wait for it, so our
        // later `running` is causally after it and wins.
        if !self.wait_for_ready().await {
            tracing::warn!("the sidecar did not report ready; marking the session ready");
            self.set_session_status(SessionStatus::Ready).await;
        }
        Ok(())
    }

    /// Take a sandbox slot, waiting (and saying so in the session) while
    /// all are in use.
    async fn take_slot(&self, backend: &str) -> Result<(), String> {
        let slots = self.deps.slots.clone();
        if slots.try_take(&self.session_id) {
            return Ok(());
        }
        let detail = format!(
            "waiting for a free sandbox: all {} allowed on this server are in use",
            slots.limit()
        );
        tracing::info!(
            limit = slots.limit(),
            "the sandbox limit is reached; the start waits"
        );
        let (sid, queued) = (
            self.session_id.clone(),
            feature::Sandbox {
                backend: backend.to_owned(),
                state: "queued".into(),
                workspace_ready: false,
                branch: None,
                head: None,
                detail: Some(detail),
            },
        );
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "sandbox queued", |tx| {
                    feature::set_session_sandbox(tx, &sid, Some(&queued))
                })
            })
            .await;
        tokio::select! {
            _ = slots.take(&self.session_id) => Ok(()),
            _ = self.shutdown.cancelled() => Err("the server is stopping".to_owned()),
        }
    }

    fn note_instance(&mut self, instance: String) {
        if self.instance.as_deref() != Some(instance.as_str()) {
            // A new OpenCode process: its sessions must be checked again,
            // and the old one's event stream is dead.
            self.session_checked = false;
            self.events = None;
            self.instance = Some(instance);
        }
    }

    /// The sandbox is gone (stopped, died, hibernated): so are its
    /// connections.
    fn forget_sandbox(&mut self) {
        self.set_sandbox(None);
        self.client = None;
        self.events = None;
    }

    /// The client of `sandbox`'s OpenCode, made once per sandbox.
    fn client_for(&mut self, sandbox: &Sandbox) -> OpenCodeClient {
        match &self.client {
            Some((base, client)) if *base == sandbox.base_url => client.clone(),
            _ => {
                let client = OpenCodeClient::new(&sandbox.base_url, &sandbox.password);
                self.client = Some((sandbox.base_url.clone(), client.clone()));
                client
            }
        }
    }

    /// Keep a run's event stream for the next run of this OpenCode process.
    fn keep_events(&mut self, events: Events) {
        self.events = self.instance.clone().map(|i| (i, events));
    }

    /// The kept event stream, if it belongs to the running OpenCode and is
    /// still open, with what arrived between runs dropped.
    fn take_events(&mut self) -> Option<Events> {
        let (instance, mut events) = self.events.take()?;
        if self.instance.as_deref() != Some(instance.as_str()) {
            return None;
        }
        loop {
            match events.next().now_or_never() {
                Some(Some(Ok(_))) => continue,
                // Broken or ended: subscribe again.
                Some(Some(Err(_)) | None) => return None,
                None => return Some(events),
            }
        }
    }

    /// Whose sandbox token: who asked for this start if they may write,
    /// else the session's creator (when a person), else the feature's.
    fn token_owner(&self, doc: &feature::FeatureDoc) -> Option<String> {
        let person = |u: &str| !u.is_empty() && !u.starts_with("agent:");
        self.asked_by
            .clone()
            .filter(|u| person(u))
            .or_else(|| {
                doc.sessions
                    .get(&self.session_id)
                    .map(|s| s.created_by.clone())
                    .filter(|u| person(u))
            })
            .or_else(|| Some(doc.created_by.clone()).filter(|u| person(u)))
    }

    /// Wait (up to [`READY_WAIT`]) until the document says the session is
    /// ready; `false` if it does not.
    async fn wait_for_ready(&self) -> bool {
        let mut changes = self.feature.changes();
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            let sid = self.session_id.clone();
            let status = self
                .feature
                .with_document_async(move |d| feature::read_session(d, &sid).map(|s| s.status))
                .await
                .ok()
                .flatten();
            if status != Some(SessionStatus::Starting) {
                return status.is_some();
            }
            tokio::select! {
                next = changes.next() => if next.is_none() { return false },
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = self.shutdown.cancelled() => return false,
            }
        }
    }

    /// Whether the OpenCode process `run` was prompted in is gone: the
    /// sandbox died, or its sidecar runs another OpenCode now.
    async fn opencode_lost(&self, run: &Run) -> bool {
        if !self.deps.backend.alive(&self.session_id).await {
            return true;
        }
        let Some(sandbox) = &self.sandbox else {
            return false;
        };
        match sidecar_status(&sandbox.control_url, &sandbox.control_secret).await {
            Ok(status) => {
                status.opencode.phase != "up"
                    || run
                        .opencode_instance
                        .as_ref()
                        .is_some_and(|i| *i != status.opencode.instance)
            }
            // Busy or restarting: the process check above decides.
            Err(_) => false,
        }
    }

    /// Commit what the entry's run changed, as its author; `None` if the
    /// sidecar could not be asked.
    async fn commit_work(&self, entry: &QueueEntry) -> Option<CommitOutcome> {
        let sandbox = self.sandbox.as_ref()?;
        let request = commit_request(&self.deps.users, entry).await;
        match sidecar_commit(&sandbox.control_url, &sandbox.control_secret, &request).await {
            Ok(outcome) => {
                if outcome.commit.is_some() {
                    self.update_pull_request(sandbox, &outcome).await;
                }
                Some(outcome)
            }
            Err(e) => {
                tracing::warn!(error = %e, queue_entry = %entry.id, "cannot commit the run's work");
                None
            }
        }
    }

    /// A session with an open pull request keeps it current: each commit
    /// is pushed to its branch (GitHub updates the pull request).
    async fn update_pull_request(&self, sandbox: &Sandbox, outcome: &CommitOutcome) {
        let sid = self.session_id.clone();
        let open = self
            .feature
            .with_document_async(move |d| {
                feature::read_session(d, &sid)
                    .and_then(|s| s.pr)
                    .is_some_and(|pr| pr.state == "open")
            })
            .await
            .unwrap_or(false);
        let Some(branch) = outcome.branch.clone().filter(|_| open) else {
            return;
        };
        let request = canopy_protocol::sidecar::PushRequest { branch };
        match crate::sandbox::sidecar_push(&sandbox.control_url, &sandbox.control_secret, &request)
            .await
        {
            Ok(pushed) => {
                tracing::info!(branch = %pushed.branch, head = %pushed.head, "pull request branch updated");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot push the commit to the pull request's branch")
            }
        }
    }

    /// The OpenCode session and the transcript document, created on first
    /// use and remembered in SQLite.
    async fn ensure_session_and_transcript(&mut self) -> Result<(String, DocHandle), String> {
        if let (Some(oc), Some(transcript)) = (&self.opencode_session, &self.transcript)
            && self.session_checked
        {
            return Ok((oc.clone(), transcript.clone()));
        }
        let sandbox = self.sandbox.clone().ok_or("no sandbox")?;
        let (stored_oc, stored_transcript) = self
            .deps
            .store
            .agent_session(&self.session_id)
            .await
            .map_err(|e| format!("cannot read the session record: {e}"))?;
        if self.opencode_session.is_none() {
            self.opencode_session = stored_oc;
        }
        let client = self.client_for(&sandbox);
        let dir = sandbox.workspace.to_string_lossy().into_owned();
        let oc = match &self.opencode_session {
            // Checked once per sandbox process: the check reads the whole
            // history, and a live process does not lose its sessions.
            Some(oc) if self.session_checked => oc.clone(),
            Some(oc) if session_exists(&client, oc, &dir).await => {
                self.session_checked = true;
                oc.clone()
            }
            _ => {
                let oc = client
                    .create_session(&dir)
                    .await
                    .map_err(|e| format!("OpenCode could not create a session: {e}"))?;
                self.deps
                    .store
                    .set_opencode_session(&self.feature_id, &self.session_id, &oc)
                    .await
                    .map_err(|e| format!("cannot record the OpenCode session: {e}"))?;
                self.opencode_session = Some(oc.clone());
                self.session_checked = true;
                oc
            }
        };
        if self.transcript.is_none() {
            self.transcript = Some(self.open_transcript(stored_transcript).await?);
        }
        Ok((oc, self.transcript.clone().ok_or("no transcript")?))
    }

    async fn open_transcript(&self, stored: Option<String>) -> Result<DocHandle, String> {
        let repo = &self.deps.repo;
        if let Some(id) = stored.and_then(|s| s.parse::<samod::DocumentId>().ok())
            && let Ok(Some(handle)) = repo.find(id).await
        {
            super::bind_server_actor(&handle, &self.deps.attribution).await?;
            return Ok(handle);
        }
        let doc = transcript::new_transcript_document(&NewTranscript {
            session_id: self.session_id.clone(),
            feature_id: self.feature_id.clone(),
        })
        .map_err(|e| e.to_string())?;
        let handle = repo
            .create(doc)
            .await
            .map_err(|_| "the server is stopping".to_owned())?;
        super::bind_server_actor(&handle, &self.deps.attribution).await?;
        let doc_id = handle.document_id().clone();
        self.deps
            .registry
            .register_transcript(&self.feature_id, doc_id.clone(), unix_ms_now())
            .await
            .map_err(|e| format!("cannot register the transcript: {e}"))?;
        self.deps
            .store
            .set_transcript(&self.feature_id, &self.session_id, &doc_id.to_string())
            .await
            .map_err(|e| format!("cannot record the transcript: {e}"))?;
        let (sid, url) = (self.session_id.clone(), handle.url().to_string());
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "session transcript", |tx| {
                    feature::set_session_transcript(tx, &sid, Some(&url))
                })
            })
            .await;
        Ok(handle)
    }

    /// Move the entry to `status`; `false` if it may not (cancelled or
    /// settled meanwhile).
    async fn mark(&self, entry: &str, status: QueueStatus) -> bool {
        let id = entry.to_owned();
        let credit = self.credit(&self.feature);
        self.feature
            .with_document_async(move |d| {
                let update = QueueUpdate::new(status, Writer::Server, unix_ms_now());
                credit
                    .write(d, "dispatch", |tx| {
                        feature::set_queue_status(tx, &id, &update)
                    })
                    .is_ok()
            })
            .await
            .unwrap_or(false)
    }

    async fn settle(&self, entry: &QueueEntry, outcome: Outcome) {
        tracing::info!(queue_entry = %entry.id, outcome = ?outcome, "queue entry settled");
        self.deps.metrics.agent_run(outcome.label());
        let id = entry.id.clone();
        let sid = self.session_id.clone();
        let sandbox_up = self.sandbox.is_some();
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "run settled", |tx| {
                    apply_outcome(tx, &id, &outcome)?;
                    if sandbox_up {
                        feature::set_session_status(tx, &sid, &SessionStatus::Idle)?;
                    }
                    Ok(())
                })
            })
            .await;
    }

    /// The entry runs, and so does its session: one change.
    async fn mark_running(&self, entry: &str) {
        let (id, sid) = (entry.to_owned(), self.session_id.clone());
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "running", |tx| {
                    let update =
                        QueueUpdate::new(QueueStatus::Running, Writer::Server, unix_ms_now());
                    // Cancelled meanwhile: the follower aborts the run.
                    if let Err(e) = feature::set_queue_status(tx, &id, &update) {
                        tracing::debug!(error = %e, "the entry cannot be marked running");
                    }
                    feature::set_session_status(tx, &sid, &SessionStatus::Running)
                })
            })
            .await;
    }

    /// The worker's writes to `doc` are the session agent's.
    fn credit(&self, doc: &DocHandle) -> Credit {
        Credit {
            attribution: self.deps.attribution.clone(),
            document: doc.document_id().to_string(),
            author: format!("agent:{}", self.session_id),
        }
    }

    async fn set_session_status(&self, status: SessionStatus) {
        let sid = self.session_id.clone();
        let credit = self.credit(&self.feature);
        let _ = self
            .feature
            .with_document_async(move |d| {
                credit.write(d, "session status", |tx| {
                    feature::set_session_status(tx, &sid, &status)
                })
            })
            .await;
    }

    async fn wait_a_little(&self) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            _ = self.shutdown.cancelled() => true,
        }
    }
}

#[derive(Default)]
struct FollowState {
    /// The prompt, to send again if OpenCode drops it.
    prompt: Option<Prompt>,
    /// How often it was sent again.
    reprompts: u32,
    /// OpenCode has this run's user message: its idle events are this run's.
    started: bool,
    /// Messages of this run (the user message and its answers).
    messages: HashSet<String>,
    /// Part kinds, for labelling streamed deltas.
    kinds: HashMap<String, PartKind>,
    /// Delta sequence numbers per part.
    seqs: HashMap<String, u64>,
    /// The provider's error, from `session.error`.
    error: Option<String>,
    /// OpenCode reported an abort.
    aborted: bool,
    /// Someone asked to stop the run (API).
    stop_requested: bool,
    /// The entry's author set it to `cancelled` while it ran.
    client_cancelled: bool,
    /// The newest answer to the run's prompt seen in the events: its id
    /// and info.
    answer: Option<(String, Value)>,
    /// Events may have been missed: the stream broke, or the run was
    /// prompted before this server subscribed.
    stream_broken: bool,
}

impl FollowState {
    /// Note an assistant message from a `message.updated` event if it
    /// answers `prompt_id`.
    fn note_answer(&mut self, info: &Value, prompt_id: &str) {
        if info.get("role").and_then(Value::as_str) != Some("assistant")
            || info.get("parentID").and_then(Value::as_str) != Some(prompt_id)
        {
            return;
        }
        let Some(id) = info.get("id").and_then(Value::as_str) else {
            return;
        };
        if self
            .answer
            .as_ref()
            .is_some_and(|(newest, _)| newest.as_str() > id)
        {
            return;
        }
        self.answer = Some((id.to_owned(), info.clone()));
    }

    /// The newest answer seen ends the run.
    fn answer_settled(&self) -> bool {
        self.answer.as_ref().is_some_and(|(_, info)| ends_run(info))
    }

    /// The events alone show the run done: every one of them arrived, the
    /// newest answer completed without an error, nobody stopped it.
    fn done_by_events(&self) -> bool {
        !self.stream_broken
            && !self.stop_requested
            && !self.client_cancelled
            && self.error.is_none()
            && self
                .answer
                .as_ref()
                .is_some_and(|(_, info)| ends_run(info) && info.get("error").is_none())
    }
}

/// Whether an answer's info ends its run: it failed, or it completed with
/// anything but a request to call tools (after which the agent goes on).
fn ends_run(info: &Value) -> bool {
    info.get("error").is_some()
        || (info.pointer("/time/completed").is_some()
            && info.get("finish").and_then(Value::as_str) != Some("tool-calls"))
}

/// How many of a session's newest messages are read after a run: a run
/// with more steps than this reads the whole history instead.
const RECENT_MESSAGES: usize = 24;

/// The session's messages from the run's prompt on (and perhaps some
/// before), without reading a long history when a short page has them.
async fn run_messages(
    client: &OpenCodeClient,
    run: &Run,
    dir: &str,
) -> Result<Vec<Value>, OpenCodeError> {
    let page = client
        .recent_messages(&run.opencode_session, dir, RECENT_MESSAGES)
        .await?;
    let has_prompt = page
        .iter()
        .any(|m| m.pointer("/info/id").and_then(Value::as_str) == Some(&run.message_id));
    if has_prompt || page.len() < RECENT_MESSAGES {
        return Ok(page);
    }
    client.messages(&run.opencode_session, dir).await
}

/// The id of the text part of the user message `message_id`: derived, so a
/// resumed run writes the same part.
fn user_part_id(message_id: &str) -> String {
    format!("prt_{}", message_id.trim_start_matches("msg_"))
}

enum RunState {
    /// The run's last answer is complete (or failed).
    Over,
    /// OpenCode is working on it.
    Going,
    /// OpenCode is idle and the prompt has no answer.
    Stalled,
}

/// Where the run is, from OpenCode's messages and status. An idle session
/// without an answer is given a moment (the run may not have begun).
async fn run_state(client: &OpenCodeClient, run: &Run, dir: &str) -> RunState {
    for _ in 0..5 {
        let answered = match run_messages(client, run, dir).await {
            Ok(msgs) => msgs
                .iter()
                .filter_map(|m| m.get("info"))
                .rfind(|i| {
                    i.get("role").and_then(Value::as_str) == Some("assistant")
                        && i.get("parentID").and_then(Value::as_str) == Some(&run.message_id)
                })
                .is_some_and(ends_run),
            // Unreachable: the liveness check decides whether it died.
            Err(_) => return RunState::Going,
        };
        if answered {
            return RunState::Over;
        }
        if busy(client, &run.opencode_session, dir).await {
            return RunState::Going;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    RunState::Stalled
}

/// Whether OpenCode is still working on `session`.
async fn busy(client: &OpenCodeClient, session: &str, dir: &str) -> bool {
    match client.session_status(dir).await {
        Ok(map) => map
            .get(session)
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "idle"),
        // Unknown: keep following; the liveness check settles a dead sandbox.
        Err(_) => true,
    }
}

async fn session_exists(client: &OpenCodeClient, session: &str, dir: &str) -> bool {
    match client.messages(session, dir).await {
        Ok(_) => true,
        Err(OpenCodeError::Status { status: 404, .. }) => false,
        Err(_) => true,
    }
}

/// The entry to work on next: one already in flight (after a restart), else
/// the first queued one, in list order.
fn next_entry(doc: &Automerge, session_id: &str) -> Option<QueueEntry> {
    let entries: Vec<QueueEntry> = feature::open_queue_entries_with_objects(doc)
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.session_id == session_id)
        .collect();
    if let Some(in_flight) = entries
        .iter()
        .find(|e| matches!(e.status, QueueStatus::Dispatched | QueueStatus::Running))
    {
        return Some(in_flight.clone());
    }
    // A session starts only once every session it depends on is completed.
    if !dependencies_completed(doc, session_id) {
        return None;
    }
    entries
        .iter()
        .find(|e| e.status == QueueStatus::Queued)
        .cloned()
}

/// The entry whose commit is still to be recorded: the session says
/// `running` while none of its entries is in flight (the server stopped
/// between a run's outcome and its commit). It is the session's last entry
/// that ran.
pub(super) fn unfinished_wrap_up(doc: &Automerge, session_id: &str) -> Option<QueueEntry> {
    if feature::read_session(doc, session_id)?.status != SessionStatus::Running {
        return None;
    }
    let open = feature::open_queue_entries_with_objects(doc);
    if open.iter().any(|(_, e)| {
        e.session_id == session_id
            && matches!(e.status, QueueStatus::Dispatched | QueueStatus::Running)
    }) {
        return None;
    }
    feature::queue_entries_with_objects(doc)
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.session_id == session_id && e.started_at.is_some() && e.status.is_terminal())
        .max_by_key(|e| e.finished_at.unwrap_or_default())
}

/// Whether every session `session_id` depends on is `completed` (unknown
/// ones never are).
fn dependencies_completed(doc: &Automerge, session_id: &str) -> bool {
    let Some(session) = feature::read_session(doc, session_id) else {
        return true;
    };
    session.depends_on.iter().all(|dep| {
        feature::read_session(doc, dep).is_some_and(|d| d.status == SessionStatus::Completed)
    })
}

fn apply_outcome<T: automerge::transaction::Transactable>(
    tx: &mut T,
    id: &str,
    outcome: &Outcome,
) -> Result<(), canopy_protocol::SchemaError> {
    let now = unix_ms_now();
    // Only `running` entries finish and only handed-over ones fail: walk an
    // entry that never got that far through the steps it skipped.
    let current = feature::find_queue_entry(&*tx, id).map(|e| e.status);
    if current == Some(QueueStatus::Queued) && *outcome != Outcome::Cancelled {
        feature::set_queue_status(
            tx,
            id,
            &QueueUpdate::new(QueueStatus::Dispatched, Writer::Server, now),
        )?;
    }
    if matches!(current, Some(QueueStatus::Queued | QueueStatus::Dispatched))
        && *outcome == Outcome::Done
    {
        feature::set_queue_status(
            tx,
            id,
            &QueueUpdate::new(QueueStatus::Running, Writer::Server, now),
        )?;
    }
    let update = match outcome {
        Outcome::Done => QueueUpdate::new(QueueStatus::Done, Writer::Server, now),
        Outcome::Failed(e) => {
            QueueUpdate::new(QueueStatus::Failed, Writer::Server, now).with_error(e.clone())
        }
        Outcome::Cancelled => QueueUpdate::new(QueueStatus::Cancelled, Writer::Server, now),
    };
    match feature::set_queue_status(tx, id, &update) {
        // Already settled (cancelled by its author): keep that.
        Err(canopy_protocol::SchemaError::Transition { .. }) => Ok(()),
        other => other,
    }
}

/// One change with a message and a timestamp; failures are logged.
/// Whom the history credits with the worker's writes to one document: the
/// session's agent (`agent:<session>`), or for a prompt copied into the
/// transcript, its author. The server's actor writes them; without this
/// they would show as `@server`.
#[derive(Debug, Clone)]
struct Credit {
    attribution: Attribution,
    document: String,
    author: String,
}

impl Credit {
    /// One change by `f`, credited; nothing when `f` changed nothing.
    fn write<F>(&self, doc: &mut Automerge, message: &str, f: F) -> Result<(), String>
    where
        F: FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), canopy_protocol::SchemaError>,
    {
        let done = doc
            .transact_with(|_| ChangeMeta::now(message).commit_options(), f)
            .map_err(|f| {
                tracing::warn!(error = %f.error, message, "document write failed");
                f.error.to_string()
            })?;
        if let Some(hash) = done.hash {
            self.attribution.record_origins(
                &self.document,
                &self.author,
                SERVER,
                vec![hash.to_string()],
            );
        }
        Ok(())
    }
}

/// Wait until the sandbox's sidecar says OpenCode is up; its instance id.
async fn wait_opencode_up(
    sandbox: &Sandbox,
    shutdown: &CancellationToken,
) -> Result<String, String> {
    let deadline = Instant::now() + OPENCODE_UP_WAIT;
    let mut last;
    loop {
        match sidecar_status(&sandbox.control_url, &sandbox.control_secret).await {
            Ok(status) if status.opencode.phase == "up" => return Ok(status.opencode.instance),
            Ok(status) => {
                last = format!(
                    "OpenCode is {}{}",
                    status.opencode.phase,
                    status
                        .opencode
                        .last_exit
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the sandbox's OpenCode did not come up within {OPENCODE_UP_WAIT:?}: {last}"
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.cancelled() => return Err("the server is stopping".into()),
        }
    }
}

/// A display name git accepts as an author: no angle brackets or line
/// breaks; `None` if nothing is left.
fn clean_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .filter(|c| !matches!(c, '<' | '>') && !c.is_control())
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.chars().take(200).collect())
}
