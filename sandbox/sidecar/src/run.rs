//! The sidecar's life: check the token, open the replica, dial the server,
//! serve MCP and the control API, supervise OpenCode, keep the context file
//! current, report state, until SIGTERM (or a refusal).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use canopy_protocol::{
    ephemeral::{Ephemeral, Heartbeat},
    feature::{self, SessionStatus},
    ids,
};
use futures::StreamExt;
use samod::{DialerEvent, DocumentId, Repo};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    Config, context,
    control::{self, Control},
    git,
    replica::{Replica, ReplicaError},
    supervisor::{self, OpenCodeSpec, OpenCodeState, Phase},
    sync::{self, SyncError, TokenCheck},
};

/// Why the sidecar ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The server refused the token (or it is for another sandbox).
    #[error("{0}")]
    Refused(String),
    /// Bad configuration or local setup.
    #[error("{0}")]
    Setup(String),
}

impl From<SyncError> for RunError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Refused(m) => RunError::Refused(m),
            SyncError::Setup(m) => RunError::Setup(m),
        }
    }
}

/// Run until `shutdown` is cancelled (clean exit) or the server refuses the
/// sandbox (error).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    validate(&config)?;
    let doc_id = parse_doc(&config.feature_doc)?;
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        RunError::Setup(format!("cannot create {}: {e}", config.state_dir.display()))
    })?;
    match sync::check_token(
        &config.server_url,
        &config.sandbox_token,
        &config.feature_id,
        &config.session_id,
    )
    .await?
    {
        TokenCheck::Ok => {}
        TokenCheck::Unreachable(why) => {
            tracing::warn!(%why, "the server is unreachable; working from the local replica");
        }
    }
    if let Err(e) = git::mark_base(&config.workspace).await {
        tracing::warn!(error = %e, "cannot record where the session started");
    }

    let repo = sync::open_repo(
        &config.replica_dir(),
        &config.feature_id,
        &config.session_id,
    )
    .await?;
    let connection = sync::connect(&repo, &config.server_url, &config.sandbox_token)?;
    let connected = Arc::new(AtomicBool::new(false));
    // Work stops when either the operator or a refusal says so.
    let stop = shutdown.child_token();
    let refused: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    {
        let connected = connected.clone();
        let stop = stop.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            let mut events = connection.dialer.events();
            while let Some(event) = events.next().await {
                match event {
                    DialerEvent::Connected { .. } => {
                        tracing::info!("connected to the server");
                        connected.store(true, Ordering::Relaxed);
                    }
                    DialerEvent::Disconnected { reason } => {
                        tracing::warn!(%reason, "lost the server; reconnecting");
                        connected.store(false, Ordering::Relaxed);
                    }
                    DialerEvent::Reconnecting { attempt } => {
                        tracing::debug!(attempt, "reconnecting");
                    }
                    DialerEvent::PermanentFailure | DialerEvent::MaxRetriesReached => {
                        connected.store(false, Ordering::Relaxed);
                        if let Ok(mut slot) = refused.lock() {
                            *slot = Some(connection.refusal());
                        }
                        stop.cancel();
                        break;
                    }
                }
            }
        });
    }

    // The listener first: OpenCode connects to MCP as it starts.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RunError::Setup(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let mcp_token = format!("{:032x}", rand::random::<u128>());
    let (replica_tx, replica_rx) = watch::channel::<Option<Replica>>(None);
    let (oc_tx, oc_rx) = watch::channel(OpenCodeState::initial());
    let control = Control {
        secret: config.control_secret.as_str().into(),
        mcp_token: mcp_token.as_str().into(),
        opencode: oc_rx.clone(),
        replica: replica_rx.clone(),
        connected: connected.clone(),
        workspace: config.workspace.clone(),
        session_id: config.session_id.clone(),
        commit_lock: Arc::default(),
    };
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let app = control::router(control);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            {
                tracing::warn!(error = %e, "the sidecar's listener failed");
            }
        })
    };
    // Written for the backend, which reads the port from here.
    let _ = std::fs::write(config.state_dir.join("sidecar.addr"), addr.to_string());
    tracing::info!(%addr, "serving MCP and the control API");

    let spec = OpenCodeSpec {
        bin: config.opencode_bin.clone(),
        port: config.opencode_port,
        password: config.opencode_password.clone(),
        workspace: config.workspace.clone(),
        config: supervisor::opencode_config(
            std::env::var("OPENCODE_CONFIG_CONTENT").ok().as_deref(),
            &format!("http://{addr}/mcp"),
            &mcp_token,
            &config.context_file(),
        )
        .map_err(RunError::Setup)?,
        log: config.state_dir.join("opencode.log"),
    };
    // Nothing to read yet: OpenCode must not fail on a missing file.
    if !config.context_file().exists() {
        let _ = std::fs::write(
            config.context_file(),
            "# Feature context\n\nLoading the feature document…\n",
        );
    }
    let supervisor = tokio::spawn(supervisor::supervise(spec, oc_tx, stop.clone()));

    // The document: from the local store at once, or from the server once
    // it answers (samod gives up at once while no peer is connected).
    let replica = loop {
        let found = tokio::select! {
            _ = stop.cancelled() => break None,
            found = repo.find(doc_id.clone()) => found,
        };
        match found {
            Ok(Some(handle)) => {
                break Some(Replica::new(handle, &config.feature_id, &config.session_id));
            }
            Ok(None) if connected.load(Ordering::Relaxed) => {
                if let Ok(mut slot) = refused.lock() {
                    *slot = Some(format!(
                        "the server does not share feature {}'s document {} with this sandbox",
                        config.feature_id, config.feature_doc
                    ));
                }
                stop.cancel();
                break None;
            }
            Ok(None) => {
                tokio::select! {
                    _ = stop.cancelled() => break None,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Err(_) => break None,
        }
    };
    if let Some(replica) = replica {
        tracing::info!("feature document loaded");
        let _ = replica_tx.send(Some(replica.clone()));
        tokio::spawn(context::keep_written(
            replica_rx.clone(),
            config.context_file(),
            stop.clone(),
        ));
        tokio::spawn(report_state(
            replica,
            config.workspace.clone(),
            oc_rx.clone(),
            Duration::from_secs(config.heartbeat_secs.max(1)),
            stop.clone(),
        ));
    }

    stop.cancelled().await;
    let _ = supervisor.await;
    let _ = server.await;
    // Flush the replica to disk.
    stop_repo(repo).await;
    let refusal = refused.lock().ok().and_then(|s| s.clone());
    match refusal {
        Some(message) if !shutdown.is_cancelled() => Err(RunError::Refused(message)),
        _ => Ok(()),
    }
}

async fn stop_repo(repo: Repo) {
    if tokio::time::timeout(Duration::from_secs(10), repo.stop())
        .await
        .is_err()
    {
        tracing::warn!("the replica did not flush within 10 s");
    }
}

fn validate(config: &Config) -> Result<(), RunError> {
    if !ids::is_valid_id(ids::FEATURE_PREFIX, &config.feature_id) {
        return Err(RunError::Setup(format!(
            "CANOPY_FEATURE_ID {:?} is not a feature id",
            config.feature_id
        )));
    }
    if !ids::is_valid_id(ids::SESSION_PREFIX, &config.session_id) {
        return Err(RunError::Setup(format!(
            "CANOPY_SESSION_ID {:?} is not a session id",
            config.session_id
        )));
    }
    if !config.workspace.is_dir() {
        return Err(RunError::Setup(format!(
            "CANOPY_WORKSPACE {} is not a directory",
            config.workspace.display()
        )));
    }
    Ok(())
}

fn parse_doc(s: &str) -> Result<DocumentId, RunError> {
    let id = s.strip_prefix("automerge:").unwrap_or(s);
    id.parse()
        .map_err(|_| RunError::Setup(format!("CANOPY_FEATURE_DOC {s:?} is not a document id")))
}

/// Heartbeats (every `every`, and at once on a change of OpenCode's
/// state), and the session's `ready`/`failed` in the document whenever
/// OpenCode's state or the document calls for it.
async fn report_state(
    replica: Replica,
    workspace: std::path::PathBuf,
    mut opencode: watch::Receiver<OpenCodeState>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut doc_changed = Box::pin(replica.changed());
    let mut beat_due = tokio::time::Instant::now();
    loop {
        let state = opencode.borrow_and_update().clone();
        if let Err(e) = record_phase(&replica, state.phase, &workspace).await {
            tracing::warn!(error = %e, "cannot record the session's state");
        }
        if tokio::time::Instant::now() >= beat_due {
            beat_due = tokio::time::Instant::now() + every;
            let beat = Ephemeral::Heartbeat(Heartbeat {
                session_id: replica.session_id().to_owned(),
                sandbox_state: state.phase.as_str().to_owned(),
                at: canopy_protocol::unix_ms_now(),
                opencode_instance: (!state.instance.is_empty()).then(|| state.instance.clone()),
                restarts: Some(state.restarts),
            });
            match beat.encode() {
                Ok(bytes) => replica.handle().broadcast(bytes),
                Err(e) => tracing::warn!(error = %e, "cannot encode a heartbeat"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            r = opencode.changed() => {
                if r.is_err() { break }
                // A change of OpenCode's state is news: beat at once.
                beat_due = tokio::time::Instant::now();
            }
            Some(()) = doc_changed.next() => {
                // Coalesce a burst of changes into one look.
                while let Some(Some(())) = futures::FutureExt::now_or_never(doc_changed.next()) {}
            }
            _ = tokio::time::sleep_until(beat_due) => {}
        }
    }
}

/// `ready` when OpenCode is up (unless the session is busy or waits for
/// others), `failed` when it cannot be started.
async fn record_phase(
    replica: &Replica,
    phase: Phase,
    workspace: &std::path::Path,
) -> Result<(), ReplicaError> {
    let sid = replica.session_id().to_owned();
    match phase {
        Phase::Up => {
            // Only when the document says otherwise: most looks write nothing.
            let needed = replica
                .with_doc({
                    let sid = sid.clone();
                    move |d| {
                        feature::read_session(d, &sid).is_some_and(|s| {
                            matches!(
                                s.status,
                                SessionStatus::Starting
                                    | SessionStatus::Failed
                                    | SessionStatus::Stopped
                            ) || s
                                .sandbox
                                .is_some_and(|b| b.state != "running" || !b.workspace_ready)
                        })
                    }
                })
                .await?;
            if !needed {
                return Ok(());
            }
            let (branch, head) = git::status_summary(workspace).await.unwrap_or((None, None));
            replica
                .write("agent: sandbox ready", move |tx| {
                    let Some(session) = feature::read_session(&*tx, &sid) else {
                        return Ok(());
                    };
                    if matches!(
                        session.status,
                        SessionStatus::Starting | SessionStatus::Failed | SessionStatus::Stopped
                    ) {
                        feature::set_session_status(tx, &sid, &SessionStatus::Ready)?;
                    }
                    if let Some(s) = session.sandbox {
                        let ready = feature::Sandbox {
                            state: "running".into(),
                            workspace_ready: true,
                            branch: branch.or(s.branch.clone()),
                            head: head.or(s.head.clone()),
                            ..s
                        };
                        feature::set_session_sandbox(tx, &sid, Some(&ready))?;
                    }
                    Ok(())
                })
                .await
        }
        Phase::Failed => {
            replica
                .write("agent: sandbox failed", move |tx| {
                    let Some(session) = feature::read_session(&*tx, &sid) else {
                        return Ok(());
                    };
                    if session.status == SessionStatus::Failed {
                        return Ok(());
                    }
                    feature::set_session_status(tx, &sid, &SessionStatus::Failed)?;
                    if let Some(s) = session.sandbox {
                        let failed = feature::Sandbox {
                            state: "failed".into(),
                            ..s
                        };
                        feature::set_session_sandbox(tx, &sid, Some(&failed))?;
                    }
                    Ok(())
                })
                .await
        }
        _ => Ok(()),
    }
}
