//! Probes and metrics, at the root outside `/api/v1`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::AppState;
use tsunagu_protocol::ErrorCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Probes and metrics: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and the node is not shutting down. A node whose
/// cluster bus is away stays ready (it serves its clients; they catch up from the
/// database when the bus returns) and says `"bus": "degraded"`.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready"))
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "shutting down",
        ));
    }
    state.domain.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: database unreachable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "database unreachable",
        )
    })?;
    let bus = state.domain.bus().health();
    let status = match bus {
        crate::bus::BusHealth::Degraded => "degraded",
        _ => "ready",
    };
    Ok(axum::Json(json!({ "status": status, "bus": bus.as_str() })))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
