//! The HTTP surface: the JSON API under `/api`, the `/sync` WebSocket and
//! the operational endpoints.

mod auth;
mod error;
mod extract;
mod features;
mod github;
mod github_auth;
mod history;
mod members;
mod ops;
mod pulls;
mod sessions;
mod web;

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{
        ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State, WebSocketUpgrade,
        ws::rejection::WebSocketUpgradeRejection,
    },
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer, trace::TraceLayer};

pub use error::ApiError;

use crate::{metrics::HttpLabels, state::AppState};

/// Build the router. Tests call this directly.
pub fn router(state: AppState) -> Router {
    let config = state.config();
    let body_limit = usize::try_from(config.max_request_bytes).unwrap_or(usize::MAX);
    let api = Router::new()
        .route(
            "/features",
            post(features::create_feature).get(features::list_features),
        )
        .route("/features/{feature_id}", get(features::get_feature))
        .route(
            "/features/{feature_id}/sessions",
            post(features::create_session),
        )
        .route("/features/{feature_id}/queue", post(features::enqueue))
        .route(
            "/features/{feature_id}/sessions/{session_id}/stop",
            post(sessions::stop),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/complete",
            post(sessions::complete),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/pr",
            post(pulls::pull_request),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/git-credential",
            post(pulls::git_credential).layer(DefaultBodyLimit::max(pulls::MAX_CREDENTIAL_BYTES)),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/logs",
            get(sessions::logs),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/diff",
            get(sessions::diff),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/tool-outputs/{part_id}",
            get(sessions::tool_output),
        )
        .route(
            "/features/{feature_id}/history",
            get(history::feature_history),
        )
        .route("/features/{feature_id}/at", get(history::feature_at))
        .route("/features/{feature_id}/diff", get(history::feature_diff))
        .route("/features/{feature_id}/restore", post(history::restore))
        .route(
            "/features/{feature_id}/sessions/{session_id}/transcript/history",
            get(history::transcript_history),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/transcript/at",
            get(history::transcript_at),
        )
        .route(
            "/features/{feature_id}/sessions/{session_id}/transcript/diff",
            get(history::transcript_diff),
        )
        .route("/agent", get(sessions::info))
        .route("/features/{feature_id}/members", get(members::list))
        .route(
            "/features/{feature_id}/members/{user}",
            get(members::get).put(members::put).delete(members::delete),
        )
        .route("/features/{feature_id}/audit", get(members::audit))
        .route("/github/link", post(github_auth::link))
        .route("/sync-ticket", post(auth::sync_ticket))
        .route("/me", get(auth::me))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outside the handlers and the fallback: no route answers, or
        // reveals that it exists, before the caller is authenticated.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ));

    // Signed by GitHub, not a Canopy token: outside `require_token`, with
    // its own body limit.
    let api = Router::new()
        .route("/github/webhook", post(github::webhook))
        .layer(DefaultBodyLimit::max(github::MAX_WEBHOOK_BYTES))
        // A browser navigates to these (no bearer token): the OAuth state
        // and cookie protect them.
        .route("/github/login", get(github_auth::login))
        .route("/github/callback", get(github_auth::callback))
        // What the sign-in page offers, asked before anyone is signed in.
        .route("/github/config", get(github_auth::config))
        .merge(api);

    let web = config.web_dir.as_deref().and_then(|dir| {
        let routes = web::router(dir);
        if routes.is_none() {
            tracing::warn!(dir = %dir.display(), "no index.html in the web client directory; not serving it (run `make web`)");
        }
        routes
    });
    let app = Router::new()
        .nest("/api", api)
        .route("/sync", get(sync_upgrade))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", {
            let route = get(ops::metrics);
            if config.metrics_auth {
                route.route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::require_token,
                ))
            } else {
                route
            }
        });
    let app = match web {
        // The web client answers every other path (client-side routes).
        Some(web) => app.merge(web),
        None => app.route("/", get(ops::index)).fallback(not_found),
    };
    app.layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            tracing::info_span!("http", method = %req.method(), route)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed for this endpoint",
    )
}

/// Count and time every request by route pattern.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    let metrics = state.metrics();
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

#[derive(Debug, Deserialize)]
struct SyncQuery {
    #[serde(default)]
    ticket: Option<String>,
}

/// `GET /sync?ticket=…`: upgrade to the automerge-repo protocol. The ticket
/// (from `POST /api/sync-ticket`) is checked and used up before the upgrade;
/// the connection is pinned to the peer id it names.
async fn sync_upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    query: Result<axum::extract::Query<SyncQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(ticket) = query.ok().and_then(|q| q.0.ticket) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ticket_required",
            "connect to /sync?ticket=…, with a ticket from POST /api/sync-ticket",
        )
        .into_response();
    };
    let now = u64::try_from(canopy_protocol::unix_ms_now()).unwrap_or(0);
    let claims = match state.tickets().redeem(&ticket, now) {
        Ok(c) => c,
        Err(e) => {
            state.metrics().reject("invalid_ticket");
            state.metrics().auth_failure("sync_ticket");
            return ApiError::from(e).into_response();
        }
    };
    // The ticket is at most a minute old; a user disabled since must not
    // get in with it.
    match state.users().user(&claims.principal).await {
        Ok(Some(user)) if !user.disabled => {}
        Ok(_) => {
            return ApiError::from(crate::auth::AuthError::BadCredentials).into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "websocket_required",
                format!(
                    "/sync speaks the automerge-repo protocol over a WebSocket: {}",
                    rejection.body_text()
                ),
            )
            .into_response();
        }
    };
    let hub = state.hub().clone();
    let limit = hub.limits().max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            hub.accept(
                socket,
                remote,
                crate::sync::Authenticated {
                    principal: crate::auth::author_of_peer(&claims.peer_id)
                        .unwrap_or(claims.principal),
                    peer_id: claims.peer_id,
                },
            )
        })
}
