//! `/api/features/{id}/sessions/{sid}/…` agent endpoints and `/api/agent`.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{ApiError, auth::Caller, extract::ApiPath};
use crate::{dispatch::DiffAnswer, features::Actor, state::AppState};

fn agents(state: &AppState) -> Result<&crate::state::Agents, ApiError> {
    state.agents().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "agents_disabled",
            "this server does not run agents (started with --dispatch false)",
        )
    })
}

/// `GET /api/agent`: which model and sandboxes agents use.
pub(super) async fn info(State(state): State<AppState>, Caller(_): Caller) -> Response {
    match state.agents() {
        Some(a) => Json(json!({ "enabled": true, "agent": a.info })).into_response(),
        None => Json(json!({ "enabled": false })).into_response(),
    }
}

/// `POST /api/features/{id}/sessions/{sid}/stop`: abort the run in flight;
/// its entry ends `cancelled` and the next queued entry runs.
pub(super) async fn stop(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .features()
        .check_session(&feature_id, &session_id, &Actor::from(&who), true)
        .await?;
    let stopped = agents(&state)?.dispatcher.stop_session(&session_id);
    if let Some(entry) = &stopped {
        state
            .audit()
            .record(
                Some(&who.user_id),
                Some(&feature_id),
                crate::audit::AuditAction::PromptCancelled,
                format!("stopped the run of {entry} in session {session_id}"),
            )
            .await;
    }
    Ok(Json(json!({ "session_id": session_id, "stopped": stopped })).into_response())
}

/// `POST /api/features/{id}/sessions/{sid}/complete`: the session's work
/// is done; its sandbox stops, and sessions that depend on it may start.
pub(super) async fn complete(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .features()
        .complete_session(&feature_id, &session_id, &Actor::from(&who))
        .await?;
    if let Some(agents) = state.agents() {
        agents.dispatcher.release_sandbox(&session_id).await;
    }
    Ok(Json(json!({ "session_id": session_id, "status": "completed" })).into_response())
}

/// Most log lines `GET …/logs` returns.
const MAX_LOG_LINES: usize = 5_000;

/// `?lines=N` of `GET …/logs`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    lines: Option<usize>,
}

/// `GET /api/features/{id}/sessions/{sid}/logs?lines=N`: the last lines of
/// the session's sandbox output (its sidecar and OpenCode), as text. For
/// members who may prompt: logs show paths and errors of the work.
pub(super) async fn logs(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
    query: Result<axum::extract::Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "{}; expected ?lines=N (1 to {MAX_LOG_LINES})",
                e.body_text()
            ),
        )
    })?;
    let lines = query.lines.unwrap_or(200);
    if !(1..=MAX_LOG_LINES).contains(&lines) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_query",
            format!("lines must be between 1 and {MAX_LOG_LINES}"),
        ));
    }
    state
        .features()
        .check_session(&feature_id, &session_id, &Actor::from(&who), true)
        .await?;
    let text = agents(&state)?
        .dispatcher
        .sandbox_logs(&session_id, lines)
        .await
        .map_err(|e| match e {
            crate::sandbox::SandboxError::Invalid(m) => {
                ApiError::new(axum::http::StatusCode::NOT_FOUND, "no_sandbox", m)
            }
            crate::sandbox::SandboxError::Unavailable(m) => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_backend_unavailable",
                m,
            ),
            other => ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "sandbox_logs_failed",
                other.to_string(),
            ),
        })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /api/features/{id}/sessions/{sid}/tool-outputs/{part_id}`: a tool
/// call's full output (transcripts keep only its start).
pub(super) async fn tool_output(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id, part_id)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    state
        .features()
        .check_session(&feature_id, &session_id, &Actor::from(&who), false)
        .await?;
    if !canopy_protocol::transcript::is_valid_transcript_id(&part_id) {
        return Err(ApiError::invalid(format!("{part_id:?} is not a part id")));
    }
    let found = agents(&state)?
        .dispatcher
        .store()
        .tool_output(&feature_id, &session_id, &part_id)
        .await
        .map_err(ApiError::internal)?;
    match found {
        Some((tool, output)) => Ok(Json(json!({
            "part_id": part_id, "tool": tool, "output": output
        }))
        .into_response()),
        None => Err(ApiError::not_found(format!(
            "no tool output {part_id} in session {session_id}"
        ))),
    }
}

/// `GET /api/features/{id}/sessions/{sid}/diff`: what the session changed
/// since it began, for anyone who may read the feature: from its running
/// sandbox (`"source": "sandbox"`, uncommitted work included), else as kept
/// at its last commit (`"source": "saved"`, with `saved_at`). 409
/// `sandbox_not_running` when the session has neither.
pub(super) async fn diff(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .features()
        .check_session(&feature_id, &session_id, &Actor::from(&who), false)
        .await?;
    let answer = agents(&state)?
        .dispatcher
        .session_diff(&feature_id, &session_id)
        .await;
    let (diff, source, saved_at) = match answer {
        Some(DiffAnswer::Live(diff)) => (diff, "sandbox", None),
        Some(DiffAnswer::Saved { diff, saved_at }) => (diff, "saved", Some(saved_at)),
        Some(DiffAnswer::Failed(e)) => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "sandbox_error",
                format!("the session's diff could not be produced: {e}"),
            ));
        }
        None => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "sandbox_not_running",
                "the session has no diff yet: its sandbox is not running and it has recorded no commit (the next prompt starts it)",
            ));
        }
    };
    let mut body = serde_json::to_value(diff).map_err(ApiError::internal)?;
    body["source"] = json!(source);
    body["saved_at"] = json!(saved_at);
    Ok(Json(body).into_response())
}
