//! Operational endpoints: liveness, readiness, metrics and a landing page.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the server can take writes, 503 otherwise
/// (storage failed and the server is read-only, or it is shutting down).
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let storage = state.db().health();
    let shutting_down = state.shutdown().is_cancelled();
    let ready = storage.is_ok() && !shutting_down;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "storage": match &storage {
            crate::db::StorageHealth::Ok => json!({ "writable": true }),
            crate::db::StorageHealth::Failed { error } => json!({ "writable": false, "error": error }),
        },
        "shutting_down": shutting_down,
        "sync_connections": state.hub().connection_count(),
        "documents_shared": state.registry().len(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// `GET /`: where to go next.
pub(super) async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    let base = state.public_url();
    Json(json!({
        "name": "canopy",
        "version": env!("CARGO_PKG_VERSION"),
        "api": format!("{base}/api/features"),
        "sync": state.sync_url(),
        "health": format!("{base}/healthz"),
        "ready": format!("{base}/readyz"),
        "metrics": format!("{base}/metrics"),
    }))
}
