//! HTTP: routes, middleware and handlers. Handlers parse input, call the domain with a
//! capability from an extractor, and shape the answer; they decide nothing themselves.

mod admin;
mod audit;
mod auth;
pub mod error;
pub mod extract;
mod files;
mod groups;
mod health;
mod me;
pub mod openapi;
mod threads;
pub mod ws;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tsunagu_protocol::{ErrorCode, PROTOCOL_VERSION, REQUEST_ID_HEADER, VERSION_HEADER};

use crate::domain::Domain;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub domain: Domain,
    pub metrics: PrometheusHandle,
    /// Take client addresses from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Set when shutdown starts, so `/readyz` turns the node out of rotation.
    pub shutting_down: Arc<AtomicBool>,
    /// Turns true when shutdown starts, so live connections close cleanly.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Websocket limits.
    pub ws: crate::config::WsConfig,
    /// Per-connection limits on typing and read frames.
    pub live: crate::config::LimitsConfig,
    /// Checks the signatures of audit checkpoints.
    pub audit_verifier: crate::audit::checkpoint::CheckpointVerifier,
}

/// Limits the router enforces.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// The whole HTTP surface, without a socket: tests can drive it with `oneshot`.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let v1 = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(me::me))
        .route("/me/password", post(me::change_password))
        .route("/me/totp", post(me::totp_begin))
        .route("/me/totp/confirm", post(me::totp_confirm))
        .route("/admin/regions", get(admin::list_regions))
        .route("/admin/audit/events", get(audit::events))
        .route("/admin/audit/file-access", get(audit::file_access))
        .route("/admin/audit/verify", get(audit::verify))
        .route(
            "/admin/organizations",
            get(admin::list_organizations).post(admin::create_organization),
        )
        .route(
            "/admin/organizations/{id}",
            get(admin::get_organization).patch(admin::update_organization),
        )
        .route(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route(
            "/admin/users/{id}",
            get(admin::get_user).patch(admin::update_user),
        )
        .route("/admin/users/{id}/deactivate", post(admin::deactivate_user))
        .route("/admin/users/{id}/reactivate", post(admin::reactivate_user))
        .route(
            "/admin/users/{id}/reset-password",
            post(admin::reset_password),
        )
        .route("/admin/users/{id}/reset-totp", post(admin::reset_totp))
        .route(
            "/admin/policy",
            get(admin::get_policy).patch(admin::update_policy),
        )
        .route(
            "/groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route(
            "/groups/{id}",
            get(groups::get_group).patch(groups::update_group),
        )
        .route("/groups/{id}/archive", post(groups::archive_group))
        .route(
            "/groups/{id}/members",
            get(groups::list_members).post(groups::add_member),
        )
        .route(
            "/groups/{id}/members/{user_id}",
            axum::routing::patch(groups::update_member).delete(groups::remove_member),
        )
        .route("/groups/{id}/invitations", post(groups::create_invitation))
        .route("/invitations/accept", post(groups::accept_invitation))
        .route(
            "/groups/{id}/join-requests",
            get(groups::list_join_requests),
        )
        .route(
            "/groups/{id}/join-requests/{user_id}/approve",
            post(groups::approve_join_request),
        )
        .route(
            "/groups/{id}/join-requests/{user_id}/reject",
            post(groups::reject_join_request),
        )
        .route(
            "/groups/{id}/threads",
            get(groups::list_threads).post(groups::create_thread),
        )
        .route("/threads/{id}", get(threads::get_thread))
        .route("/threads/{id}/members", post(threads::add_thread_member))
        .route(
            "/threads/{id}/members/{user_id}",
            axum::routing::delete(threads::remove_thread_member),
        )
        .route(
            "/threads/{id}/messages",
            get(threads::list_messages).post(threads::post_message),
        )
        .route(
            "/threads/{id}/messages/{message_id}",
            axum::routing::patch(threads::edit_message).delete(threads::delete_message),
        )
        .route(
            "/threads/{id}/messages/{message_id}/history",
            get(threads::message_history),
        )
        .route(
            "/threads/{id}/messages/{message_id}/readers",
            get(threads::readers),
        )
        .route(
            "/threads/{id}/messages/{message_id}/reactions",
            post(threads::add_reaction),
        )
        .route(
            "/threads/{id}/messages/{message_id}/reactions/{emoji}",
            axum::routing::delete(threads::remove_reaction),
        )
        .route("/threads/{id}/read", post(threads::mark_read))
        .route(
            "/files/{id}",
            get(files::metadata)
                .patch(files::update)
                .delete(files::delete),
        )
        .route("/groups/{id}/files", get(files::library))
        .route("/search", get(files::search))
        .route("/openapi.json", get(openapi_json))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            ErrorCode::Timeout,
                            "the request took too long",
                        )
                    },
                ))
                .layer(tower::timeout::TimeoutLayer::new(limits.request_timeout)),
        );

    // Long-lived transfers: no request timeout, no JSON body limit (uploads enforce the
    // region's file-size policy while streaming; the socket has its own frame limit).
    let transfers = Router::new()
        .route("/threads/{id}/files", post(files::upload))
        .route("/files/{id}/content", get(files::content))
        .route("/ws", get(ws::upgrade))
        .layer(DefaultBodyLimit::disable());
    let v1 = v1.merge(transfers);

    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(record_metrics))
        .layer(
            ServiceBuilder::new()
                // A client-chosen request id could collide or smuggle text into logs:
                // we always mint our own.
                .map_request(|mut req: Request| {
                    req.headers_mut().remove(REQUEST_ID_HEADER);
                    req
                })
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::COOKIE,
                ]))
                .layer(TraceLayer::new_for_http().make_span_with(make_span))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(SetResponseHeaderLayer::overriding(
                    HeaderName::from_static(VERSION_HEADER),
                    HeaderValue::from_static(PROTOCOL_VERSION),
                ))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::Internal,
                        "internal error",
                    )
                    .into_response()
                })),
        )
        .with_state(state)
}

/// The span of one request: method, route template and request id. Never the URI, whose
/// query string may carry names.
fn make_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-")
        .to_owned();
    tracing::info_span!("http", method = %req.method(), route = %route, request_id = %request_id)
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tsunagu_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("tsunagu_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi::document_json(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
}
