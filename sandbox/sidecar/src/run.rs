//! The sidecar's life. [`run`] starts what does not depend on the session
//! (the listener with MCP and the control API, OpenCode's supervisor), then
//! obtains the [`Binding`]: from the environment (bound at start, after the
//! token was checked), or from the first accepted `POST /v1/claim` (a
//! pooled sidecar). Both paths then [`bind`]: mark where the session
//! started, open the replica, dial the server, find the document, keep the
//! context file current and report state, until SIGTERM (or a refusal).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use canopy_protocol::{
    ephemeral::{Ephemeral, Heartbeat},
    feature::{self, SessionStatus},
    sidecar::WorkspaceStatus,
};
use futures::StreamExt;
use samod::{DialerEvent, DocumentId, Repo};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    Config,
    binding::{Binding, Bound, Claim, Names},
    context,
    control::{self, Claims, Control},
    credential::{self, Credentials},
    git,
    replica::{Replica, ReplicaError},
    supervisor::{self, OpenCodeSpec, OpenCodeState, Phase},
    sync::{self, SyncError, TokenCheck},
    workspace,
};

/// How soon the document is looked up again while the server is not
/// connected yet.
const FIND_RETRY: Duration = Duration::from_millis(25);

/// How long the document must stay "not found" while connected before the
/// sidecar believes the server refuses it. samod can answer "not found"
/// from a lookup that began just before the connection reached the
/// document's actor; a real refusal is just as final a moment later.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

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

/// What [`bind`] shares with the parts started before the binding.
struct Shared {
    connected: Arc<AtomicBool>,
    replica: watch::Sender<Option<Replica>>,
    bound: watch::Sender<Option<Bound>>,
    opencode: watch::Receiver<OpenCodeState>,
    stop: CancellationToken,
    refused: Arc<std::sync::Mutex<Option<String>>>,
    credentials: Credentials,
}

/// Run until `shutdown` is cancelled (clean exit) or the server refuses the
/// sandbox (error).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let at_start = match config.binding().map_err(RunError::Setup)? {
        Some(b) => {
            let doc_id = b.validate(Names::Env).map_err(RunError::Setup)?;
            Some((b, doc_id))
        }
        None => None,
    };
    if !config.workspace.is_dir() {
        return Err(RunError::Setup(format!(
            "CANOPY_WORKSPACE {} is not a directory",
            config.workspace.display()
        )));
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        RunError::Setup(format!("cannot create {}: {e}", config.state_dir.display()))
    })?;
    if config.prepare_workspace {
        check_apart(&config.workspace, &config.state_dir)?;
    }

    // Bound at start: a refused token ends the sidecar before anything
    // starts; the workspace is made before OpenCode works in it.
    let mut workspace_at_start = None;
    if let Some((b, _)) = &at_start {
        check_token(b).await?;
        if b.repo.is_some() && !config.prepare_workspace {
            tracing::warn!("CANOPY_REPO_URL is ignored without --prepare-workspace");
        }
        if config.prepare_workspace {
            workspace_at_start = Some(
                workspace::prepare(&config.workspace, &config.state_dir, b.repo.as_ref())
                    .await
                    .map_err(RunError::Setup)?,
            );
        }
    } else {
        if config.repo().map_err(RunError::Setup)?.is_some() {
            tracing::warn!("CANOPY_REPO_URL is ignored while pooled: a claim names its repository");
        }
        tracing::info!("pooled: waiting for POST /v1/claim");
    }

    // Work stops when either the operator or a refusal says so.
    let stop = shutdown.child_token();
    let connected = Arc::new(AtomicBool::new(false));
    let (replica_tx, replica_rx) = watch::channel::<Option<Replica>>(None);
    let (bound_tx, bound_rx) = watch::channel(at_start.as_ref().map(|(b, _)| Bound {
        feature_id: b.feature_id.clone(),
        session_id: b.session_id.clone(),
        workspace: workspace_at_start.clone(),
    }));
    let (oc_tx, oc_rx) = watch::channel(OpenCodeState::initial());
    let (claim_tx, claim_rx) = oneshot::channel::<Claim>();

    // The listener first: OpenCode connects to MCP as it starts.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RunError::Setup(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let mcp_token = format!("{:032x}", rand::random::<u128>());
    let credentials = Credentials::default();
    // git in the sandbox (the agent's and the sidecar's pushes) asks this
    // sidecar for credentials, which asks the server.
    let helper_env = Arc::new(credential::helper_env(
        &loopback(addr).to_string(),
        &mcp_token,
    ));
    let control = Control {
        secret: config.control_secret.as_str().into(),
        mcp_token: mcp_token.as_str().into(),
        opencode: oc_rx.clone(),
        replica: replica_rx.clone(),
        connected: connected.clone(),
        workspace: config.workspace.clone(),
        bound: bound_rx,
        claims: Arc::new(Claims::new(
            at_start.is_none().then_some(claim_tx),
            config.prepare_workspace.then(|| config.state_dir.clone()),
        )),
        commit_lock: Arc::default(),
        credentials: credentials.clone(),
        helper_env: helper_env.clone(),
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
        hostname: config.opencode_hostname.clone(),
        port: config.opencode_port,
        password: config.opencode_password.clone(),
        workspace: config.workspace.clone(),
        config: supervisor::opencode_config(
            std::env::var("OPENCODE_CONFIG_CONTENT").ok().as_deref(),
            &format!("http://{}/mcp", loopback(addr)),
            &mcp_token,
            &config.context_file(),
        )
        .map_err(RunError::Setup)?,
        log: config.state_dir.join("opencode.log"),
        env: helper_env.as_ref().clone(),
    };
    // Nothing to read yet: OpenCode must not fail on a missing file.
    if !config.context_file().exists() {
        let text = if at_start.is_some() {
            "# Feature context\n\nLoading the feature document…\n"
        } else {
            "# Feature context\n\nThis sandbox is not assigned to a session yet.\n"
        };
        let _ = std::fs::write(config.context_file(), text);
    }
    let supervisor = tokio::spawn(supervisor::supervise(spec, oc_tx, stop.clone()));

    let shared = Shared {
        connected,
        replica: replica_tx,
        bound: bound_tx,
        opencode: oc_rx,
        stop: stop.clone(),
        refused: Arc::default(),
        credentials,
    };
    let bound = match at_start {
        Some((binding, doc_id)) => bind(&config, &shared, binding, doc_id, None, None).await,
        None => {
            let claim = tokio::select! {
                _ = stop.cancelled() => None,
                claim = claim_rx => {
                    if claim.is_err() {
                        tracing::error!("the control API is gone; nothing can claim this sandbox");
                        stop.cancel();
                    }
                    claim.ok()
                }
            };
            match claim {
                None => Ok(None),
                Some(Claim {
                    binding,
                    workspace,
                    accepted,
                }) => match binding.validate(Names::Claim) {
                    Ok(doc_id) => {
                        bind(&config, &shared, binding, doc_id, workspace, Some(accepted)).await
                    }
                    Err(e) => {
                        let _ = accepted.send(Err(e.clone()));
                        Err(RunError::Setup(e))
                    }
                },
            }
        }
    };
    if bound.is_err() {
        stop.cancel();
    }

    stop.cancelled().await;
    let _ = supervisor.await;
    let _ = server.await;
    if let Some(repo) = bound? {
        // Flush the replica to disk.
        stop_repo(repo).await;
    }
    let refusal = shared.refused.lock().ok().and_then(|s| s.clone());
    match refusal {
        Some(message) if !shutdown.is_cancelled() => Err(RunError::Refused(message)),
        _ => Ok(()),
    }
}

/// Ask the server about the token of a binding given at start: refused is
/// final, unreachable is not (the replica works offline meanwhile).
async fn check_token(b: &Binding) -> Result<(), RunError> {
    match sync::check_token(
        &b.server_url,
        &b.sandbox_token,
        &b.feature_id,
        &b.session_id,
    )
    .await?
    {
        TokenCheck::Ok => {}
        TokenCheck::Unreachable(why) => {
            tracing::warn!(%why, "the server is unreachable; working from the local replica");
        }
    }
    Ok(())
}

/// Bind to the session: from here on the sidecar works for it. Returns the
/// repo to flush at the end once the binding took (`accepted` is told
/// either way), or `None` when stopped before the document was found.
async fn bind(
    config: &Config,
    shared: &Shared,
    binding: Binding,
    doc_id: DocumentId,
    prepared: Option<WorkspaceStatus>,
    accepted: Option<oneshot::Sender<Result<(), String>>>,
) -> Result<Option<Repo>, RunError> {
    shared.credentials.bind(credential::Source {
        server_url: binding.server_url.clone(),
        token: binding.sandbox_token.clone(),
        feature_id: binding.feature_id.clone(),
        session_id: binding.session_id.clone(),
    });
    let attached = attach(config, &binding).await;
    let (repo, connection) = match attached {
        Ok(attached) => attached,
        Err(e) => {
            if let Some(accepted) = accepted {
                let _ = accepted.send(Err(e.to_string()));
            }
            return Err(e);
        }
    };
    if let Some(accepted) = accepted {
        // Claimed: the control API answers with the new status once told.
        shared.bound.send_replace(Some(Bound {
            feature_id: binding.feature_id.clone(),
            session_id: binding.session_id.clone(),
            workspace: prepared,
        }));
        let _ = accepted.send(Ok(()));
    }
    tracing::info!(
        feature_id = %binding.feature_id,
        session_id = %binding.session_id,
        "bound to the session"
    );

    {
        let connected = shared.connected.clone();
        let stop = shared.stop.clone();
        let refused = shared.refused.clone();
        tokio::spawn(async move {
            let mut events = connection.dialer.events();
            // Read after subscribing: a connection made before the
            // subscription is not reported as an event and would otherwise
            // never count.
            if connection.dialer.is_connected() {
                tracing::info!("connected to the server");
                connected.store(true, Ordering::Relaxed);
            }
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

    // The document: from the local store at once, or from the server once
    // it answers (samod gives up at once while no peer is connected).
    let stop = &shared.stop;
    let mut missing_since: Option<std::time::Instant> = None;
    let replica = loop {
        // Read before asking: a "not found" means the server refused only
        // if the connection was already up when the lookup began (one that
        // came up meanwhile was not asked).
        let was_connected = shared.connected.load(Ordering::Relaxed);
        let found = tokio::select! {
            _ = stop.cancelled() => break None,
            found = repo.find(doc_id.clone()) => found,
        };
        match found {
            Ok(Some(handle)) => {
                break Some(Replica::new(
                    handle,
                    &binding.feature_id,
                    &binding.session_id,
                ));
            }
            Ok(None)
                if was_connected
                    && missing_since
                        .get_or_insert_with(std::time::Instant::now)
                        .elapsed()
                        >= REFUSAL_GRACE =>
            {
                if let Ok(mut slot) = shared.refused.lock() {
                    *slot = Some(format!(
                        "the server does not share feature {}'s document {} with this sandbox",
                        binding.feature_id, binding.feature_doc
                    ));
                }
                stop.cancel();
                break None;
            }
            Ok(None) => {
                // Not connected yet (samod gives up at once without a
                // peer), or not found for less than the grace: ask again
                // soon; a claimed sandbox's first sync is on the start's
                // critical path.
                if !was_connected {
                    missing_since = None;
                }
                tokio::select! {
                    _ = stop.cancelled() => break None,
                    _ = tokio::time::sleep(FIND_RETRY) => {}
                }
            }
            Err(_) => break None,
        }
    };
    if let Some(replica) = replica {
        tracing::info!("feature document loaded");
        let _ = shared.replica.send(Some(replica.clone()));
        tokio::spawn(context::keep_written(
            shared.replica.subscribe(),
            config.context_file(),
            stop.clone(),
        ));
        tokio::spawn(report_state(
            replica,
            config.workspace.clone(),
            shared.opencode.clone(),
            Duration::from_secs(config.heartbeat_secs.max(1)),
            stop.clone(),
        ));
    }
    Ok(Some(repo))
}

/// The binding's local half: where the session started, the replica's
/// store, and the connection to the server (which dials by itself).
async fn attach(config: &Config, b: &Binding) -> Result<(Repo, sync::Connection), RunError> {
    if let Err(e) = git::mark_base(&config.workspace).await {
        tracing::warn!(error = %e, "cannot record where the session started");
    }
    let repo = sync::open_repo(&config.replica_dir(), &b.feature_id, &b.session_id).await?;
    match sync::connect(&repo, &b.server_url, &b.sandbox_token) {
        Ok(connection) => Ok((repo, connection)),
        Err(e) => {
            stop_repo(repo).await;
            Err(e.into())
        }
    }
}

/// The address a process on this machine reaches `addr` at: loopback when
/// the sidecar listens on every interface.
fn loopback(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, addr.port()).into()
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, addr.port()).into()
        }
        _ => addr,
    }
}

/// A workspace the sidecar clears must not hold the sidecar's own state.
fn check_apart(workspace: &Path, state_dir: &Path) -> Result<(), RunError> {
    let canonical = |p: &Path| -> Result<PathBuf, RunError> {
        std::fs::canonicalize(p)
            .map_err(|e| RunError::Setup(format!("cannot resolve {}: {e}", p.display())))
    };
    let (w, s) = (canonical(workspace)?, canonical(state_dir)?);
    if s.starts_with(&w) || w.starts_with(&s) {
        return Err(RunError::Setup(format!(
            "CANOPY_STATE_DIR {} and CANOPY_WORKSPACE {} must not contain each other when the \
             sidecar prepares the workspace",
            state_dir.display(),
            workspace.display()
        )));
    }
    Ok(())
}

async fn stop_repo(repo: Repo) {
    if tokio::time::timeout(Duration::from_secs(10), repo.stop())
        .await
        .is_err()
    {
        tracing::warn!("the replica did not flush within 10 s");
    }
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
                            detail: None,
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
