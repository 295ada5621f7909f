//! `/api/features…` handlers: parse, call [`FeatureService`], shape JSON.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use canopy_protocol::feature::RepoRef;
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiError,
    auth::Caller,
    extract::{ApiJson, ApiPath, ApiQuery},
};
use crate::{
    features::{Actor, CreateFeature, CreateSession, Enqueue, FeatureError, FeatureService},
    state::AppState,
};

impl From<FeatureError> for ApiError {
    fn from(e: FeatureError) -> Self {
        match e {
            FeatureError::NotFound(_) => ApiError::not_found(e.to_string()),
            FeatureError::SessionNotFound(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_session",
                e.to_string(),
            ),
            FeatureError::Invalid(_) => ApiError::invalid(e.to_string()),
            FeatureError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            FeatureError::QueueFull(..) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
            }
            FeatureError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            FeatureError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            FeatureError::Busy(_) => {
                ApiError::new(StatusCode::CONFLICT, "session_busy", e.to_string())
            }
            FeatureError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
            FeatureError::History(ref h) => match h {
                crate::history::HistoryError::BadHeads(_) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_heads", e.to_string())
                }
                crate::history::HistoryError::BadCursor(_) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string())
                }
                crate::history::HistoryError::BadPath(_) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.to_string())
                }
                crate::history::HistoryError::Document(_) => ApiError::internal(e),
            },
            FeatureError::Document(_) | FeatureError::Registry(_) => ApiError::internal(e),
        }
    }
}

fn service(state: &AppState) -> &FeatureService {
    state.features()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RepoBody {
    url: String,
    #[serde(default = "default_branch")]
    base_branch: String,
    #[serde(default)]
    feature_branch: Option<String>,
    /// Clone the whole history rather than the shallow default.
    #[serde(default)]
    full_clone: bool,
}

fn default_branch() -> String {
    "main".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateFeatureBody {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    repo: Option<RepoBody>,
}

/// `POST /api/features`
pub(super) async fn create_feature(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<CreateFeatureBody>,
) -> Result<Response, ApiError> {
    let created = service(&state)
        .create(
            CreateFeature {
                title: body.title,
                description: body.description,
                repo: body.repo.map(|r| RepoRef {
                    url: r.url,
                    base_branch: r.base_branch,
                    feature_branch: r.feature_branch,
                    full_clone: r.full_clone,
                }),
            },
            &Actor::from(&who),
        )
        .await?;
    let location = format!("/api/features/{}", created.feature_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json!({
            "feature_id": created.feature_id,
            "doc_url": created.doc_url,
            "document_id": created.document_id,
            "sync_url": state.sync_url(),
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    cursor
        .split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .ok_or_else(|| ApiError::bad_request("bad_cursor", "cursor is not one this server issued"))
}

/// `GET /api/features`
pub(super) async fn list_features(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > crate::features::limits::PAGE_MAX {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {}",
            crate::features::limits::PAGE_MAX
        )));
    }
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let features = service(&state)
        .list(&Actor::from(&who), limit, before)
        .await?;
    let next_cursor = (features.len() == limit as usize)
        .then(|| features.last())
        .flatten()
        .map(|f| format!("{}.{}", f.created_at, f.feature_id));
    let items: Vec<_> = features
        .into_iter()
        .map(|f| {
            json!({
                "feature_id": f.feature_id,
                "doc_url": format!("automerge:{}", f.document_id),
                "title": f.title,
                "status": f.status,
                "created_by": f.created_by,
                "created_at": f.created_at,
                "updated_at": f.updated_at,
            })
        })
        .collect();
    Ok(Json(
        json!({ "features": items, "next_cursor": next_cursor }),
    ))
}

/// `GET /api/features/{id}`
pub(super) async fn get_feature(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let snapshot = service(&state)
        .snapshot(&feature_id, &Actor::from(&who))
        .await?;
    Ok(Json(snapshot).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateSessionBody {
    title: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    depends_on: Vec<String>,
}

/// `POST /api/features/{id}/sessions`
pub(super) async fn create_session(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSessionBody>,
) -> Result<Response, ApiError> {
    let (session_id, session) = service(&state)
        .add_session(
            &feature_id,
            CreateSession {
                title: body.title,
                scope: body.scope,
                depends_on: body.depends_on,
            },
            &Actor::from(&who),
        )
        .await?;
    let mut value = serde_json::to_value(&session).map_err(ApiError::internal)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("session_id".into(), json!(session_id));
        obj.insert("feature_id".into(), json!(feature_id));
    }
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnqueueBody {
    session_id: String,
    text: String,
}

/// `POST /api/features/{id}/queue`
pub(super) async fn enqueue(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiJson(body): ApiJson<EnqueueBody>,
) -> Result<Response, ApiError> {
    let result = service(&state)
        .enqueue(
            &feature_id,
            Enqueue {
                session_id: body.session_id,
                text: body.text,
            },
            &Actor::from(&who),
        )
        .await;
    let entry = match result {
        Ok(entry) => entry,
        Err(e @ (FeatureError::QueueFull(..) | FeatureError::TooLarge(_))) => {
            state.metrics().limit_hit(match e {
                FeatureError::QueueFull(..) => "queued_prompts",
                _ => "prompt_size",
            });
            state
                .audit()
                .record(
                    Some(&who.user_id),
                    Some(&feature_id),
                    crate::audit::AuditAction::LimitHit,
                    e.to_string(),
                )
                .await;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    state
        .audit()
        .record(
            Some(&who.user_id),
            Some(&feature_id),
            crate::audit::AuditAction::PromptQueued,
            format!("prompt {} for session {} (API)", entry.id, entry.session_id),
        )
        .await;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}
