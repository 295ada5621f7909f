//! `POST /api/github/webhook`: GitHub's deliveries. Authenticated by the
//! signature, not by a Canopy token (GitHub has none).

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::ApiError;
use crate::{
    audit::AuditAction,
    features::PrSession,
    github::{
        RepoName, deliveries,
        webhook::{self, PullRequest, PullRequestEvent, Repository, ReviewCommentEvent},
    },
    state::AppState,
};

/// Largest delivery accepted. GitHub caps payloads at 25 MB, but the
/// events acted on here are a few kilobytes (a pull request's body is at
/// most 64k characters).
pub(super) const MAX_WEBHOOK_BYTES: usize = 1 << 20;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to a delivery that was understood (counted by outcome).
fn answered(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// A delivery ignored on purpose (an event or pull request that is not
/// Canopy's): 202, so GitHub shows it delivered.
fn ignored(state: &AppState, reason: String) -> Response {
    state.metrics().webhook_delivery("ignored");
    answered(
        StatusCode::ACCEPTED,
        json!({ "status": "ignored", "reason": reason }),
    )
}

pub(super) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Without a secret nothing can be verified: no webhook endpoint.
    let Some(secret) = state.github().webhook_secret() else {
        return Err(ApiError::not_found(
            "no route for POST /api/github/webhook (GitHub webhooks are not configured)",
        ));
    };
    if !secret.verify(&body, header(&headers, "x-hub-signature-256")) {
        refused(
            &state,
            "bad_signature",
            None,
            "bad or missing X-Hub-Signature-256",
        )
        .await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the X-Hub-Signature-256 header is missing or is not the webhook secret's signature of this body",
        ));
    }
    let event = header(&headers, "x-github-event")
        .filter(|e| {
            !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_event",
                "the X-GitHub-Event header is missing or malformed",
            )
        })?
        .to_owned();
    let delivery = header(&headers, "x-github-delivery")
        .filter(|d| webhook::is_delivery_id(d))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_delivery",
                "the X-GitHub-Delivery header is missing or malformed",
            )
        })?
        .to_owned();
    match event.as_str() {
        "ping" => return Ok(answered(StatusCode::OK, json!({ "status": "pong" }))),
        "pull_request" | "pull_request_review_comment" => {}
        other => return Ok(ignored(&state, format!("{other} events are not acted on"))),
    }
    let parsed = Parsed::from(&event, &body)?;
    if !deliveries::claim(state.db(), &delivery, &event)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
    {
        refused(
            &state,
            "replayed",
            None,
            format!("delivery {delivery} replayed"),
        )
        .await;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "replayed_delivery",
            format!("delivery {delivery} was received before; it is not acted on again"),
        ));
    }
    let outcome = apply(&state, &delivery, parsed).await;
    // Only a delivery that changed something keeps its claim: a refused or
    // failed one may come again (after the repository is added, say).
    if !matches!(&outcome, Ok(r) if r.status() == StatusCode::OK)
        && let Err(e) = deliveries::release(state.db(), &delivery).await
    {
        tracing::warn!(delivery, error = %e, "could not release a webhook delivery");
    }
    outcome
}

/// The events acted on, parsed.
enum Parsed {
    PullRequest(PullRequestEvent),
    ReviewComment(ReviewCommentEvent),
}

impl Parsed {
    fn from(event: &str, body: &[u8]) -> Result<Parsed, ApiError> {
        let bad = |e: serde_json::Error| {
            ApiError::bad_request(
                "bad_payload",
                format!("the {event} payload is not what GitHub sends: {e}"),
            )
        };
        Ok(match event {
            "pull_request" => Parsed::PullRequest(serde_json::from_slice(body).map_err(bad)?),
            _ => Parsed::ReviewComment(serde_json::from_slice(body).map_err(bad)?),
        })
    }

    fn repository(&self) -> &Repository {
        match self {
            Parsed::PullRequest(e) => &e.repository,
            Parsed::ReviewComment(e) => &e.repository,
        }
    }

    fn pull_request(&self) -> &PullRequest {
        match self {
            Parsed::PullRequest(e) => &e.pull_request,
            Parsed::ReviewComment(e) => &e.pull_request,
        }
    }
}

async fn refused(
    state: &AppState,
    outcome: &'static str,
    feature_id: Option<&str>,
    why: impl Into<String>,
) {
    state.metrics().webhook_delivery(outcome);
    // Anyone can post to the webhook, and a captured delivery can be
    // replayed: those refusals are audited at most once a minute (the
    // metric counts all), so a flood cannot fill the audit log.
    let trusted = !matches!(outcome, "bad_signature" | "replayed");
    if trusted || state.limit_audit().check("@github-webhook").is_ok() {
        state
            .audit()
            .record(None, feature_id, AuditAction::WebhookRefused, why)
            .await;
    }
}

async fn apply(state: &AppState, delivery: &str, parsed: Parsed) -> Result<Response, ApiError> {
    let repository = parsed.repository();
    let repo = RepoName::from_url(&repository.html_url).ok_or_else(|| {
        ApiError::bad_request(
            "bad_payload",
            format!(
                "repository.html_url {:?} is not a repository URL",
                repository.html_url
            ),
        )
    })?;
    let features = state.features().features_of_repo(&repo).await?;
    if features.is_empty() {
        refused(
            state,
            "unknown_repository",
            None,
            format!("delivery {delivery}: no feature has repository {repo}"),
        )
        .await;
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_repository",
            format!("no feature has the repository {repo}"),
        ));
    }
    let pr = parsed.pull_request();
    let Some(at) = state
        .features()
        .session_of_pull_request(&features, &pr.head.name, pr.number)
        .await?
    else {
        return Ok(ignored(
            state,
            format!(
                "pull request #{} of {repo} is from branch {:?}, which is no Canopy session's",
                pr.number, pr.head.name
            ),
        ));
    };
    match parsed {
        Parsed::PullRequest(event) => pull_request(state, delivery, &at, &event).await,
        Parsed::ReviewComment(event) => review_comment(state, delivery, &at, &event).await,
    }
}

async fn pull_request(
    state: &AppState,
    delivery: &str,
    at: &PrSession,
    event: &PullRequestEvent,
) -> Result<Response, ApiError> {
    let pr = &event.pull_request;
    let recorded = state
        .features()
        .record_pull_request(
            at,
            canopy_protocol::feature::PullRequest {
                url: pr.html_url.clone(),
                number: pr.number,
                state: pr.canopy_state().to_owned(),
            },
        )
        .await?;
    if recorded.completed
        && let Some(agents) = state.agents()
    {
        agents.dispatcher.release_sandbox(&at.session_id).await;
    }
    state
        .audit()
        .record(
            None,
            Some(&at.feature_id),
            AuditAction::WebhookApplied,
            format!(
                "delivery {delivery}: pull request #{} {} ({}) for session {}",
                pr.number, recorded.state, event.action, at.session_id
            ),
        )
        .await;
    state.metrics().webhook_delivery("applied");
    let mut body = serde_json::to_value(&recorded).map_err(ApiError::internal)?;
    body["status"] = json!("applied");
    Ok(answered(StatusCode::OK, body))
}

/// A review comment that asks `@canopy` for something becomes a prompt in
/// the session, by the member who wrote it. Canopy knows a GitHub account
/// only once its owner has signed in with GitHub; until then every
/// commenter is a stranger, and a stranger's request is ignored and
/// audited (anyone may comment on a public repository).
async fn review_comment(
    state: &AppState,
    delivery: &str,
    at: &PrSession,
    event: &ReviewCommentEvent,
) -> Result<Response, ApiError> {
    if event.action != "created" || !webhook::mentions_canopy(&event.comment.body) {
        return Ok(ignored(
            state,
            "the comment does not ask @canopy for anything".into(),
        ));
    }
    let login = &event.comment.user.login;
    let member = member_of(state, &at.feature_id, event.comment.user.id).await;
    let Some(actor) = member else {
        refused(
            state,
            "stranger",
            Some(&at.feature_id),
            format!(
                "delivery {delivery}: @canopy request by GitHub user {login:?} in session {} ignored: not a member",
                at.session_id
            ),
        )
        .await;
        return Ok(answered(
            StatusCode::ACCEPTED,
            json!({
                "status": "ignored",
                "reason": format!("GitHub user {login} is not a member of the feature who may prompt"),
            }),
        ));
    };
    let text = review_prompt(event);
    let entry = state
        .features()
        .enqueue(
            &at.feature_id,
            crate::features::Enqueue {
                session_id: at.session_id.clone(),
                text,
            },
            &actor,
        )
        .await?;
    state
        .audit()
        .record(
            Some(&actor.user_id),
            Some(&at.feature_id),
            AuditAction::WebhookApplied,
            format!(
                "delivery {delivery}: @canopy review comment by {login} queued as {} in session {}",
                entry.id, at.session_id
            ),
        )
        .await;
    state.metrics().webhook_delivery("applied");
    Ok(answered(
        StatusCode::OK,
        json!({
            "status": "applied",
            "feature_id": at.feature_id,
            "session_id": at.session_id,
            "queue_entry": entry.id,
            "author": actor.user_id,
        }),
    ))
}

/// The Canopy member behind GitHub account `github_id`, if its owner
/// linked it and may prompt in the feature.
async fn member_of(
    state: &AppState,
    feature_id: &str,
    github_id: u64,
) -> Option<crate::features::Actor> {
    if github_id == 0 {
        return None;
    }
    let account = state
        .github_access()
        .accounts()
        .by_github_id(github_id)
        .await
        .ok()
        .flatten()?;
    let user = state.users().user(&account.user_id).await.ok().flatten()?;
    if user.disabled {
        return None;
    }
    let actor = crate::features::Actor {
        user_id: user.user_id,
        name: user.display_name,
    };
    let role = state.features().role(feature_id, &actor).ok()?;
    role.can_write().then_some(actor)
}

/// The prompt a review comment becomes: the request, and where in the
/// diff it was made.
fn review_prompt(event: &ReviewCommentEvent) -> String {
    let c = &event.comment;
    let mut text = format!(
        "Review comment by @{} on pull request #{}",
        c.user.login, event.pull_request.number
    );
    if let Some(path) = &c.path {
        text.push_str(&format!(" at {path}"));
        if let Some(line) = c.line {
            text.push_str(&format!(":{line}"));
        }
    }
    text.push_str(":\n\n");
    text.push_str(c.body.trim());
    if let Some(hunk) = c.diff_hunk.as_deref().filter(|h| !h.is_empty()) {
        let hunk: String = hunk.chars().take(4_000).collect();
        text.push_str(&format!("\n\nThe diff it refers to:\n```diff\n{hunk}\n```"));
    }
    if !c.html_url.is_empty() {
        text.push_str(&format!("\n\n({})", c.html_url));
    }
    text
}
