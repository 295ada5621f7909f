//! A session's way out to GitHub:
//!
//! - `POST /api/features/{id}/sessions/{sid}/git-credential`: the
//!   sandbox's credential helper (through its sidecar, with the sandbox
//!   token) asks for what git needs to fetch and push.
//! - `POST /api/features/{id}/sessions/{sid}/pr`: push the session's
//!   branch and open (or update) its pull request, as the person asking,
//!   else as the App, else answer with the compare page.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use canopy_protocol::{
    feature::PullRequest,
    sidecar::{CredentialRequest, GitCredential, PushRequest},
};
use serde_json::json;

use super::{ApiError, auth::Caller, extract::ApiPath};
use crate::{
    audit::AuditAction,
    auth::{Principal, TokenScope},
    features::Actor,
    github::{
        client::{GitHostError, PullRequestDraft, PullRequestInfo},
        pulls::{self, Opened},
    },
    state::AppState,
};

/// Largest credential request body.
pub(super) const MAX_CREDENTIAL_BYTES: usize = 4096;

fn agent_of(who: &Principal, feature_id: &str, session_id: &str) -> Result<bool, ApiError> {
    match &who.scope {
        TokenScope::User => Ok(false),
        TokenScope::Agent {
            feature_id: f,
            session_id: s,
        } if f == feature_id && s == session_id => Ok(true),
        TokenScope::Agent { .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a sandbox token works for its own session only",
        )),
    }
}

/// `POST …/git-credential`: for the session's sandbox only.
pub(super) async fn git_credential(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !agent_of(&who, &feature_id, &session_id)? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "git credentials are for the session's sandbox (its sandbox token), not for people",
        ));
    }
    let req: CredentialRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("expected {{\"protocol\", \"host\"}}: {e}")))?;
    let actor = Actor::from(&who);
    let (doc, _) = state
        .features()
        .session_for_pull_request(&feature_id, &session_id, &actor)
        .await?;
    let repo_url = doc
        .repo
        .as_ref()
        .map(|r| r.url.clone())
        .ok_or_else(|| no_credential("the feature has no repository"))?;
    // The token is for the repository's host only: git asking for another
    // (a submodule elsewhere, a redirect) gets nothing.
    let repo_host = crate::github::client::host_of(&repo_url);
    let asked = req
        .host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if repo_host.as_deref() != Some(asked.as_str()) {
        return Err(no_credential(format!(
            "no credential for {}: this session's repository is on {}",
            req.host,
            repo_host.as_deref().unwrap_or("no host")
        )));
    }
    let found = state
        .github_access()
        .git_credential(&repo_url, &who.user_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "github_unavailable", e))?;
    let Some(credential) = found else {
        return Err(no_credential(
            "neither the GitHub App (not configured, or not installed on the repository) nor the session's owner (not signed in with GitHub) can give a credential",
        ));
    };
    state
        .audit()
        .record(
            Some(&who.user_id),
            Some(&feature_id),
            AuditAction::GitCredential,
            format!(
                "{} credential for session {session_id}'s sandbox",
                credential.source
            ),
        )
        .await;
    Ok(Json(GitCredential {
        username: credential.username,
        password: credential.password,
        expires_at: credential.expires_at,
    })
    .into_response())
}

fn no_credential(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_credential", message)
}

/// `POST …/pr`: the session's pull request.
pub(super) async fn pull_request(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let agent = agent_of(&who, &feature_id, &session_id)?;
    let actor = Actor::from(&who);
    let (doc, at) = state
        .features()
        .session_for_pull_request(&feature_id, &session_id, &actor)
        .await?;
    let access = state.github_access();
    let (repo, base) = pulls::target(access.host(), &doc)
        .map_err(|m| ApiError::new(StatusCode::CONFLICT, "no_github_repository", m))?;
    let session = doc
        .sessions
        .get(&session_id)
        .ok_or_else(|| ApiError::not_found(format!("no session {session_id}")))?;
    let branch = session
        .sandbox
        .as_ref()
        .and_then(|s| s.branch.clone())
        .filter(|b| b.starts_with("canopy/"))
        .unwrap_or_else(|| {
            canopy_protocol::git::session_branch(&doc.title, &session.title, &session_id)
        });
    // The person the pull request is for: the caller, or for the agent
    // the person whose prompt it is working on.
    let requester = if agent {
        pulls::askers(&doc, &session_id)
            .into_iter()
            .next()
            .unwrap_or_else(|| who.user_id.clone())
    } else {
        who.user_id.clone()
    };
    let agents = state.agents().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "agents_disabled",
            "this server does not run agents (started with --dispatch false)",
        )
    })?;
    let (control_url, secret) = agents
        .dispatcher
        .sidecar_control(&session_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "sandbox_not_running",
                "the session's sandbox is not running, so its branch cannot be pushed; send it a prompt first",
            )
        })?;
    // The agent asks mid-prompt: what it did so far is its asker's work,
    // committed now so the branch has it (the rest is committed, and
    // pushed to the pull request, when the prompt ends).
    if agent
        && let Some(entry) = doc.queue.iter().find(|e| {
            e.session_id == session_id
                && matches!(
                    e.status,
                    canopy_protocol::feature::QueueStatus::Running
                        | canopy_protocol::feature::QueueStatus::Dispatched
                )
        })
    {
        let request = crate::dispatch::commit_request(state.users(), entry).await;
        if let Err(e) = crate::sandbox::sidecar_commit(&control_url, &secret, &request).await {
            tracing::warn!(error = %e, "cannot commit the running prompt's work before the push");
        }
    }
    let pushed = crate::sandbox::sidecar_push(
        &control_url,
        &secret,
        &PushRequest {
            branch: branch.clone(),
        },
    )
    .await
    .map_err(|e| match e {
        crate::sandbox::SidecarError::Failed {
            status: 409,
            message,
        } => ApiError::new(StatusCode::CONFLICT, "nothing_to_push", message),
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "push_failed",
            format!("the session's branch {branch} could not be pushed: {other}"),
        ),
    })?;
    let link = format!(
        "{}/f/{feature_id}/s/{session_id}",
        state.public_url().trim_end_matches('/')
    );
    let (title, body) = pulls::draft(&doc, &session_id, &link);
    let draft = PullRequestDraft {
        title,
        body,
        head: branch.clone(),
        base: base.clone(),
        existing: session.pr.as_ref().map(|p| p.number).filter(|n| *n > 0),
    };
    let opened = open(&state, &requester, &repo, &draft).await?;
    let Some((info, how)) = opened else {
        let compare = access.host().compare_url(&repo, &base, &branch);
        audit(
            &state,
            &who,
            &feature_id,
            format!("compare link for session {session_id} ({branch})"),
        )
        .await;
        return Ok((
            StatusCode::OK,
            Json(json!({
                "session_id": session_id,
                "branch": branch,
                "head": pushed.head,
                "pr": null,
                "compare_url": compare,
                "reason": "neither the asking person (not signed in with GitHub) nor the GitHub App (not configured, or not installed on the repository) could open the pull request; open it from the compare page",
            })),
        )
            .into_response());
    };
    let pr = PullRequest {
        url: info.url.clone(),
        number: info.number,
        state: info.state.clone(),
    };
    let requester_actor = Actor {
        user_id: requester.clone(),
        name: doc
            .participants
            .get(&requester)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| requester.clone()),
    };
    state
        .features()
        .set_pull_request(&at, &requester_actor, pr.clone())
        .await?;
    audit(
        &state,
        &who,
        &feature_id,
        format!(
            "pull request #{} {} for session {session_id} as {}",
            info.number,
            if info.created { "opened" } else { "updated" },
            match &how {
                Opened::AsUser(login) => login.clone(),
                Opened::AsApp => "the GitHub App".into(),
            }
        ),
    )
    .await;
    Ok((
        if info.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({
            "session_id": session_id,
            "branch": branch,
            "head": pushed.head,
            "pr": pr,
            "created": info.created,
            "opened_as": match &how {
                Opened::AsUser(_) => "user",
                Opened::AsApp => "app",
            },
            "opened_by": info.opened_by,
        })),
    )
        .into_response())
}

async fn audit(state: &AppState, who: &Principal, feature_id: &str, what: String) {
    state
        .audit()
        .record(
            Some(&who.user_id),
            Some(feature_id),
            AuditAction::PullRequest,
            what,
        )
        .await;
}

/// Open (or update) the pull request as `requester`, else as the App;
/// `None` when neither can.
async fn open(
    state: &AppState,
    requester: &str,
    repo: &crate::github::RepoRef,
    draft: &PullRequestDraft,
) -> Result<Option<(PullRequestInfo, Opened)>, ApiError> {
    let access = state.github_access();
    let host = access.host();
    let failed = |e: GitHostError| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "github_failed",
            format!("GitHub did not open the pull request: {e}"),
        )
    };
    let token = access.user_token(requester).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "github_unavailable",
            format!("cannot get your GitHub token: {e}"),
        )
    })?;
    if let Some(token) = token {
        match host.pull_request(&token.access_token, repo, draft).await {
            Ok(info) => {
                let login = access
                    .accounts()
                    .by_user(requester)
                    .await
                    .ok()
                    .flatten()
                    .map_or_else(|| info.opened_by.clone(), |a| a.login);
                return Ok(Some((info, Opened::AsUser(login))));
            }
            Err(e) if e.is_refusal() => {
                tracing::warn!(error = %e, "the user's GitHub token was refused; trying the App");
                if matches!(e, GitHostError::Unauthorized(_)) {
                    let _ = access.accounts().forget_token(requester).await;
                }
            }
            Err(e) => return Err(failed(e)),
        }
    }
    match host.installation_token(repo).await {
        Ok(Some(token)) => match host.pull_request(&token.token, repo, draft).await {
            Ok(info) => Ok(Some((info, Opened::AsApp))),
            Err(e) if e.is_refusal() => Ok(None),
            Err(e) => Err(failed(e)),
        },
        Ok(None) => Ok(None),
        Err(e) if e.is_refusal() => Ok(None),
        Err(e) => Err(failed(e)),
    }
}
