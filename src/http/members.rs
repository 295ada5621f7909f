//! `/api/features/{id}/members…` and `/api/features/{id}/audit`: who may
//! work on a feature, and what happened to it.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
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
    audit::AuditAction,
    auth::{Role, User},
    features::Actor,
    state::AppState,
};

/// A user named by id (`usr_…`) or handle.
async fn find_user(state: &AppState, who: &str) -> Result<User, ApiError> {
    let found = if who.starts_with("usr_") {
        state.users().user(who).await?
    } else {
        state.users().user_by_handle(who).await?
    };
    found.ok_or_else(|| ApiError::not_found(format!("no user {who:?}")))
}

/// `GET /api/features/{id}/members`
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let members = state
        .features()
        .members(&feature_id, &Actor::from(&who))
        .await?;
    Ok(Json(json!({ "members": members })))
}

/// `GET /api/features/{id}/members/{user}`
pub(super) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, user)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let members = state
        .features()
        .members(&feature_id, &Actor::from(&who))
        .await?;
    members
        .into_iter()
        .find(|m| m.user_id == user || m.handle == user)
        .map(|m| Json(m).into_response())
        .ok_or_else(|| ApiError::not_found(format!("{user:?} is not a member of this feature")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutBody {
    role: Role,
}

/// `PUT /api/features/{id}/members/{user}` `{role}` (owners only)
pub(super) async fn put(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, user)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutBody>,
) -> Result<Response, ApiError> {
    let actor = Actor::from(&who);
    // Membership first, so a non-member cannot probe for user handles.
    state.features().role(&feature_id, &actor)?;
    let target = find_user(&state, &user).await?;
    state
        .features()
        .set_member(&feature_id, &actor, &target, body.role)
        .await?;
    state
        .audit()
        .record(
            Some(&who.user_id),
            Some(&feature_id),
            AuditAction::MemberSet,
            format!(
                "{} ({}) is now {}",
                target.handle,
                target.user_id,
                body.role.as_str()
            ),
        )
        .await;
    Ok((
        StatusCode::OK,
        Json(json!({
            "feature_id": feature_id,
            "user_id": target.user_id,
            "handle": target.handle,
            "display_name": target.display_name,
            "role": body.role,
        })),
    )
        .into_response())
}

/// `DELETE /api/features/{id}/members/{user}` (owners, or a member leaving)
pub(super) async fn delete(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath((feature_id, user)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let actor = Actor::from(&who);
    state.features().role(&feature_id, &actor)?;
    let target = find_user(&state, &user).await?;
    state
        .features()
        .remove_member(&feature_id, &actor, &target.user_id)
        .await?;
    state
        .audit()
        .record(
            Some(&who.user_id),
            Some(&feature_id),
            AuditAction::MemberRemoved,
            format!("{} ({}) removed", target.handle, target.user_id),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    before: Option<i64>,
}

/// `GET /api/features/{id}/audit` (owners only)
pub(super) async fn audit(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiPath(feature_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let role = state.features().role(&feature_id, &Actor::from(&who))?;
    if role != Role::Owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only owners read a feature's audit log",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let entries = state
        .audit()
        .for_feature(&feature_id, limit, q.before)
        .await
        .map_err(ApiError::internal)?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before": next })))
}
