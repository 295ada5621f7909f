//! The sidecar's HTTP listener: MCP (`/mcp`) for the agent and the control
//! API (`/v1/…`) for the server.
//!
//! The control API is what the server needs synchronously: which OpenCode
//! process runs now (to tell a lost run from a slow one), the commit after
//! each prompt (which must be done before the next prompt starts, so two
//! people's work never share a commit), and the claim that binds a pooled
//! sidecar to its session. Each half has its own bearer secret: the agent
//! gets the MCP one only.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use canopy_protocol::{
    feature,
    sidecar::{
        ClaimRequest, CredentialRequest, OpenCodeStatus, PushOutcome, PushRequest, SidecarStatus,
    },
};
use serde_json::json;
use tokio::sync::{oneshot, watch};

use crate::{
    binding::{Binding, Bound, Claim, Names},
    credential::{CredentialError, Credentials},
    git::{self, CommitOutcome, CommitRequest},
    replica::SharedReplica,
    supervisor::OpenCodeState,
    sync::{self, SyncError, TokenCheck},
    tools::{self, FeatureTools},
    workspace,
};

/// Largest control request body.
const MAX_BODY: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct Control {
    /// Bearer secret of `/v1/…`.
    pub secret: Arc<str>,
    /// Bearer secret of `/mcp`.
    pub mcp_token: Arc<str>,
    /// OpenCode's state.
    pub opencode: watch::Receiver<OpenCodeState>,
    /// The replica, once loaded.
    pub replica: SharedReplica,
    /// Whether the sync connection is up.
    pub connected: Arc<AtomicBool>,
    /// The repository.
    pub workspace: PathBuf,
    /// The session, once bound.
    pub bound: watch::Receiver<Option<Bound>>,
    /// Claims: one at a time, and the way to the run of a pooled sidecar.
    pub claims: Arc<Claims>,
    /// One commit at a time.
    pub commit_lock: Arc<tokio::sync::Mutex<()>>,
    /// Git credentials of the bound session, asked of the server.
    pub credentials: Credentials,
    /// The environment that makes git use the credential helper.
    pub helper_env: Arc<Vec<(String, String)>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("workspace", &self.workspace)
            .field("bound", &*self.bound.borrow())
            .finish_non_exhaustive()
    }
}

/// How the control API binds a pooled sidecar.
#[derive(Debug)]
pub struct Claims {
    /// Held by the claim being handled (so two claims never race); holds
    /// the way to the waiting run until a claim is accepted (`None` when
    /// bound at start, or once claimed).
    slot: tokio::sync::Mutex<Option<oneshot::Sender<Claim>>>,
    /// Where the workspace is prepared from (`None`: the backend prepares
    /// it).
    prepare: Option<PathBuf>,
}

impl Claims {
    /// `waiting`: the run of a pooled sidecar, which binds what it
    /// receives; `prepare_in`: the state directory, when claims prepare the
    /// workspace.
    pub fn new(waiting: Option<oneshot::Sender<Claim>>, prepare_in: Option<PathBuf>) -> Self {
        Claims {
            slot: tokio::sync::Mutex::new(waiting),
            prepare: prepare_in,
        }
    }
}

/// The whole listener's routes.
pub fn router(control: Control) -> Router {
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/commit", post(commit))
        .route("/v1/diff", get(diff))
        .route("/v1/claim", post(claim))
        .route("/v1/push", post(push))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(middleware::from_fn_with_state(
            control.secret.clone(),
            require_bearer,
        ))
        .with_state(control.clone());
    let tools = FeatureTools::with_binding(control.replica.clone(), control.bound.clone())
        .with_server(control.credentials.clone());
    let mcp = tools::router(tools)
        .merge(
            Router::new()
                .route("/git/credential", post(credential))
                .layer(DefaultBodyLimit::max(MAX_BODY))
                .with_state(control.clone()),
        )
        .route_layer(middleware::from_fn_with_state(
            control.mcp_token.clone(),
            require_bearer,
        ));
    api.merge(mcp)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

/// Constant-time comparison of the presented bearer secret.
async fn require_bearer(State(secret): State<Arc<str>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), secret.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer secret",
        );
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// `GET /v1/status`
async fn status(State(c): State<Control>) -> Json<SidecarStatus> {
    Json(current_status(&c))
}

fn current_status(c: &Control) -> SidecarStatus {
    let opencode = c.opencode.borrow().clone();
    let bound = c.bound.borrow().clone();
    SidecarStatus {
        session_id: bound
            .as_ref()
            .map(|b| b.session_id.clone())
            .unwrap_or_default(),
        workspace: bound.and_then(|b| b.workspace),
        opencode: OpenCodeStatus {
            phase: opencode.phase.as_str().to_owned(),
            instance: opencode.instance,
            pid: opencode.pid,
            restarts: opencode.restarts,
            last_exit: opencode.last_exit,
        },
        replica_loaded: c.replica.borrow().is_some(),
        connected: c.connected.load(Ordering::Relaxed),
    }
}

/// `POST /v1/claim`: bind a pooled sidecar to a session. Claims are handled
/// one at a time; the first valid one wins, a repeat of it answers the
/// status again, any other is refused with `409 already_claimed`.
async fn claim(State(c): State<Control>, body: axum::body::Bytes) -> Response {
    let req: ClaimRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let binding = Binding::from(req);
    if let Err(e) = binding.validate(Names::Claim) {
        return error(StatusCode::BAD_REQUEST, "invalid", e);
    }
    let mut slot = c.claims.slot.lock().await;
    let bound = c.bound.borrow().clone();
    if let Some(bound) = bound {
        if bound.feature_id == binding.feature_id && bound.session_id == binding.session_id {
            return Json(current_status(&c)).into_response();
        }
        return error(
            StatusCode::CONFLICT,
            "already_claimed",
            format!(
                "this sandbox is bound to session {} of feature {}",
                bound.session_id, bound.feature_id
            ),
        );
    }
    if slot.is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the sidecar is stopping",
        );
    }
    match sync::check_token(
        &binding.server_url,
        &binding.sandbox_token,
        &binding.feature_id,
        &binding.session_id,
    )
    .await
    {
        Ok(TokenCheck::Ok) => {}
        Ok(TokenCheck::Unreachable(why)) => {
            tracing::warn!(%why, "the server is unreachable; accepting the claim and working from the local replica");
        }
        Err(SyncError::Refused(message)) => {
            tracing::warn!(session_id = %binding.session_id, %message, "claim refused");
            return error(StatusCode::FORBIDDEN, "refused", message);
        }
        Err(SyncError::Setup(message)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message);
        }
    }
    let prepared = match &c.claims.prepare {
        Some(state_dir) => {
            match workspace::prepare(&c.workspace, state_dir, binding.repo.as_ref()).await {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prepare the workspace");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "workspace", e);
                }
            }
        }
        None => None,
    };
    let Some(run) = slot.take() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the sidecar is stopping",
        );
    };
    let session_id = binding.session_id.clone();
    let (accepted, answer) = oneshot::channel();
    let handed = run.send(Claim {
        binding,
        workspace: prepared,
        accepted,
    });
    if handed.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the sidecar is stopping",
        );
    }
    match answer.await {
        Ok(Ok(())) => {
            tracing::info!(%session_id, "claimed");
            Json(current_status(&c)).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "bind", e),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the sidecar is stopping",
        ),
    }
}

/// The session this sidecar is bound to (else answer [`not_bound`]).
fn bound_session(c: &Control) -> Option<String> {
    c.bound.borrow().as_ref().map(|b| b.session_id.clone())
}

fn not_bound() -> Response {
    error(
        StatusCode::CONFLICT,
        "not_bound",
        "this sandbox is not bound to a session yet",
    )
}

/// `GET /v1/diff`: what the session changed since it began. Not while a
/// commit runs (it moves the index and HEAD under the diff).
async fn diff(State(c): State<Control>) -> Response {
    if bound_session(&c).is_none() {
        return not_bound();
    }
    let _one_at_a_time = c.commit_lock.lock().await;
    match git::session_diff(&c.workspace).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "diff failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "git", e.to_string())
        }
    }
}

/// `POST /v1/commit`: commit the workspace for a finished queue entry and
/// record the result in the document.
async fn commit(State(c): State<Control>, body: axum::body::Bytes) -> Response {
    let req: CommitRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    if !canopy_protocol::ids::is_valid_user_id(&req.queue_entry) || req.queue_entry.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "invalid", "bad queue_entry id");
    }
    let Some(session_id) = bound_session(&c) else {
        return not_bound();
    };
    let _one_at_a_time = c.commit_lock.lock().await;
    let outcome = match git::commit_entry(&c.workspace, &req).await {
        Ok(o) => o,
        Err(git::GitError::Invalid(m)) => return error(StatusCode::BAD_REQUEST, "invalid", m),
        Err(e) => {
            tracing::warn!(error = %e, queue_entry = %req.queue_entry, "commit failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "git", e.to_string());
        }
    };
    tracing::info!(
        queue_entry = %req.queue_entry,
        commit = outcome.commit.as_deref().unwrap_or("none"),
        files = outcome.files_changed.len(),
        "workspace committed"
    );
    let replica = c.replica.borrow().clone();
    if let Some(replica) = replica {
        let entry = req.queue_entry.clone();
        let sid = session_id;
        let o: CommitOutcome = outcome.clone();
        let written = replica
            .write("agent: commit", move |tx| {
                feature::record_commit(tx, &sid, &entry, &o)
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot record the commit in the document");
        }
    }
    Json(outcome).into_response()
}

/// `POST /git/credential` (MCP bearer): what the credential helper hands
/// git. 404 when the server has none for this host.
async fn credential(State(c): State<Control>, body: axum::body::Bytes) -> Response {
    let req: CredentialRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    if req.host.is_empty() || req.host.len() > 255 {
        return error(StatusCode::BAD_REQUEST, "invalid", "host is required");
    }
    match c.credentials.get(&req).await {
        Ok(credential) => Json(credential).into_response(),
        Err(CredentialError::NotBound) => not_bound(),
        Err(e @ CredentialError::None(_)) => {
            error(StatusCode::NOT_FOUND, "no_credential", e.to_string())
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "unreachable", e.to_string()),
    }
}

/// `POST /v1/push`: push the session's branch (the credential helper asks
/// for what git needs).
async fn push(State(c): State<Control>, body: axum::body::Bytes) -> Response {
    let req: PushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    if bound_session(&c).is_none() {
        return not_bound();
    }
    // Not while a commit is being made.
    let _one_at_a_time = c.commit_lock.lock().await;
    let mut pushed = git::push(&c.workspace, &req.branch, &c.helper_env).await;
    // The cached credential may be one the forge no longer takes (a user
    // token revoked, or refreshed elsewhere): once more with a fresh one.
    if matches!(&pushed, Err(e) if !matches!(e, git::GitError::Invalid(_)))
        && c.credentials.forget()
    {
        tracing::info!("push failed with a cached credential; retrying with a fresh one");
        pushed = git::push(&c.workspace, &req.branch, &c.helper_env).await;
    }
    match pushed {
        Ok(head) => {
            tracing::info!(branch = %req.branch, %head, "branch pushed");
            Json(PushOutcome {
                branch: req.branch,
                head,
            })
            .into_response()
        }
        Err(git::GitError::Invalid(m)) => error(StatusCode::CONFLICT, "invalid", m),
        Err(e) => {
            tracing::warn!(error = %e, "push failed");
            error(StatusCode::BAD_GATEWAY, "push_failed", e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
