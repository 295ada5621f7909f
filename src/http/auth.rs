//! Authentication at the HTTP edge: every `/api` request carries
//! `Authorization: Bearer <token>`; the middleware resolves it to a
//! [`Principal`] or answers 401, before any handler (or the fallback) runs,
//! so an unauthenticated caller cannot even learn which routes exist.

use axum::{
    Json,
    extract::{FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::{
    auth::{self, AuthError, Principal, TokenScope},
    state::AppState,
};

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadCredentials => unauthorized(),
            AuthError::BadTicket | AuthError::TicketExpired => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_ticket", e.to_string())
            }
            AuthError::Invalid(m) => ApiError::invalid(m),
            AuthError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            AuthError::NotFound(m) => ApiError::not_found(m),
            AuthError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            AuthError::Key(_) | AuthError::Db(_) => ApiError::internal(e),
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid credentials: send `Authorization: Bearer <token>` (create one with `canopy token create`)",
    )
}

/// Resolve the bearer token, or answer 401.
pub(super) async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let principal = match token {
        Some(token) => state.users().authenticate(token).await,
        None => Err(AuthError::BadCredentials),
    };
    match principal {
        Ok(p) => {
            if let Err(wait) = state.api_limit().check(&p.user_id) {
                state.metrics().limit_hit("api_rate");
                if state.limit_audit().check(&p.user_id).is_ok() {
                    state
                        .audit()
                        .record(
                            Some(&p.user_id),
                            None,
                            crate::audit::AuditAction::LimitHit,
                            format!(
                                "more than {} API requests per minute",
                                state.config().api_rate_per_minute
                            ),
                        )
                        .await;
                }
                let secs = wait.as_secs().max(1);
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} API requests per minute; retry in {secs} s",
                        state.config().api_rate_per_minute
                    ),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return response;
            }
            if let TokenScope::Agent {
                feature_id,
                session_id,
            } = &p.scope
            {
                let path = req.uri().path();
                // Its sync connection, and its own session's way to GitHub.
                let own = format!("/features/{feature_id}/sessions/{session_id}/");
                let github = path
                    .split_once(&own)
                    .is_some_and(|(_, rest)| rest == "git-credential" || rest == "pr");
                if !(path.ends_with("/me") || path.ends_with("/sync-ticket") || github) {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "an agent token only opens its session's sync connection and its GitHub credential and pull request",
                    )
                    .into_response();
                }
            }
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => {
            state.metrics().auth_failure("api_token");
            let mut response = ApiError::from(e).into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"canopy\""),
                );
            }
            response
        }
    }
}

/// The authenticated caller, put there by [`require_token`].
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(unauthorized)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TicketBody {
    /// A peer id this user's client used before (`u:<own user id>:<suffix>`),
    /// so a reconnecting replica keeps its identity. Absent: a new one.
    #[serde(default)]
    peer_id: Option<String>,
}

/// Longest suffix a client may choose for its own peer id.
const MAX_PEER_SUFFIX: usize = 64;

/// `POST /api/sync-ticket`
pub(super) async fn sync_ticket(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: no body asks for a new peer id.
    let body: TicketBody = if body.iter().all(u8::is_ascii_whitespace) {
        TicketBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(e.to_string())
            } else {
                ApiError::bad_request("malformed_json", e.to_string())
            }
        })?
    };
    // People get peer ids in their own namespace; a sandbox's agent in its
    // feature's and session's.
    let prefix = match &who.scope {
        TokenScope::User => auth::user_peer_prefix(&who.user_id),
        TokenScope::Agent {
            feature_id,
            session_id,
        } => auth::agent_peer_prefix(feature_id, session_id),
    };
    let peer_id = match body.peer_id {
        Some(requested) => {
            let suffix = requested.strip_prefix(&prefix).ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("a peer id you choose must start with {prefix:?}"),
                )
            })?;
            if suffix.is_empty()
                || suffix.len() > MAX_PEER_SUFFIX
                || !suffix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ApiError::invalid(format!(
                    "peer id suffix must be 1 to {MAX_PEER_SUFFIX} of A-Z, a-z, 0-9, '-' and '_'"
                )));
            }
            requested
        }
        None => format!("{prefix}{}", canopy_protocol::ids::new_id("")),
    };
    let now = canopy_protocol::unix_ms_now();
    let ticket = state
        .tickets()
        .issue(&peer_id, &who.user_id, now.max(0) as u64)?;
    let url = format!("{}?ticket={ticket}", state.sync_url());
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "peer_id": peer_id,
            "ticket": ticket,
            "url": url,
            "expires_in_secs": auth::ticket::TICKET_TTL.as_secs(),
        })),
    )
        .into_response())
}

/// `GET /api/me`: who the token belongs to.
pub(super) async fn me(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Json<serde_json::Value> {
    // The linked GitHub account, so a client can offer to link one.
    let github = match state.github_access().accounts().by_user(&who.user_id).await {
        Ok(account) => account.map(|a| json!({ "login": a.login })),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the linked GitHub account");
            None
        }
    };
    Json(json!({
        "github": github,
        "user_id": who.user_id,
        "handle": who.handle,
        "display_name": who.display_name,
        "email": who.email,
        "token_id": who.token_id,
        "scope": who.scope,
    }))
}
