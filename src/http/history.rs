//! The history browser's endpoints: `/api/features/{id}/history`, `/at`,
//! `/diff`, `/restore`, and the same reads of a session's transcript under
//! `/api/features/{id}/sessions/{sid}/transcript/…`.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiError,
    auth::Caller,
    extract::{ApiJson, ApiPath, ApiQuery},
};
use crate::{
    features::{Actor, HistoryRequest, HistoryTarget},
    history::MAX_PAGE,
    state::AppState,
};

/// `?limit&cursor&author&path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    author: Option<String>,
    path: Option<String>,
}

/// `?heads=h1,h2`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AtQuery {
    heads: String,
}

/// `?from=…&to=…`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    from: String,
    to: String,
}

/// Heads as a list or one comma-separated string; a path as a list of
/// segments or one `/`-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn joined(self, sep: &str, escape: bool) -> String {
        match self {
            OneOrMany::One(s) => s,
            OneOrMany::Many(v) => v
                .into_iter()
                .map(|s| {
                    if escape {
                        s.replace('~', "~0").replace('/', "~1")
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join(sep),
        }
    }
}

/// `POST …/restore` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreBody {
    heads: OneOrMany,
    path: OneOrMany,
}

fn check_limit(limit: Option<usize>) -> Result<Option<usize>, ApiError> {
    match limit {
        Some(0) => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_limit",
            "limit must be at least 1",
        )),
        Some(n) if n > MAX_PAGE => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit {n} is over the largest page, {MAX_PAGE}"),
        )),
        other => Ok(other),
    }
}

async fn history_of(
    state: &AppState,
    who: &crate::auth::Principal,
    feature_id: &str,
    target: HistoryTarget,
    q: HistoryQuery,
) -> Result<Response, ApiError> {
    let request = HistoryRequest {
        limit: check_limit(q.limit)?,
        cursor: q.cursor,
        author: q.author,
        path: q.path,
    };
    let page = state
        .features()
        .history(feature_id, &Actor::from(who), &target, request)
        .await?;
    Ok(Json(page).into_response())
}

/// `GET /api/features/{id}/history`: changes, newest first, paged.
pub(super) async fn feature_history(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    history_of(&state, &who, &feature_id, HistoryTarget::Feature, q).await
}

/// `GET /api/features/{id}/sessions/{sid}/transcript/history`.
pub(super) async fn transcript_history(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    history_of(
        &state,
        &who,
        &feature_id,
        HistoryTarget::Transcript(session_id),
        q,
    )
    .await
}

async fn at_of(
    state: &AppState,
    who: &crate::auth::Principal,
    feature_id: &str,
    target: HistoryTarget,
    q: AtQuery,
) -> Result<Response, ApiError> {
    let (heads, document) = state
        .features()
        .at(feature_id, &Actor::from(who), &target, &q.heads)
        .await?;
    Ok(Json(json!({ "heads": heads, "document": *document })).into_response())
}

/// `GET /api/features/{id}/at?heads=…`: the document as JSON at those heads.
pub(super) async fn feature_at(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AtQuery>,
) -> Result<Response, ApiError> {
    at_of(&state, &who, &feature_id, HistoryTarget::Feature, q).await
}

/// `GET /api/features/{id}/sessions/{sid}/transcript/at?heads=…`.
pub(super) async fn transcript_at(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<AtQuery>,
) -> Result<Response, ApiError> {
    at_of(
        &state,
        &who,
        &feature_id,
        HistoryTarget::Transcript(session_id),
        q,
    )
    .await
}

async fn diff_of(
    state: &AppState,
    who: &crate::auth::Principal,
    feature_id: &str,
    target: HistoryTarget,
    q: DiffQuery,
) -> Result<Response, ApiError> {
    let patches = state
        .features()
        .diff(feature_id, &Actor::from(who), &target, &q.from, &q.to)
        .await?;
    Ok(Json(json!({ "from": q.from, "to": q.to, "patches": patches })).into_response())
}

/// `GET /api/features/{id}/diff?from=…&to=…`: structured patches.
pub(super) async fn feature_diff(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Response, ApiError> {
    diff_of(&state, &who, &feature_id, HistoryTarget::Feature, q).await
}

/// `GET /api/features/{id}/sessions/{sid}/transcript/diff?from=…&to=…`.
pub(super) async fn transcript_diff(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, session_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Response, ApiError> {
    diff_of(
        &state,
        &who,
        &feature_id,
        HistoryTarget::Transcript(session_id),
        q,
    )
    .await
}

/// `POST /api/features/{id}/restore` `{heads, path}`: the value at `path` as
/// it was at `heads`, written as a new change by the caller.
pub(super) async fn restore(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<Response, ApiError> {
    let heads = body.heads.joined(",", false);
    let path = body.path.joined("/", true);
    let restored = state
        .features()
        .restore(&feature_id, &Actor::from(&who), &heads, &path)
        .await?;
    Ok(Json(restored).into_response())
}
