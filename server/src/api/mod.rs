//! HTTP: routes, middleware and handlers. Handlers parse input, call the domain with a
//! capability from an extractor, and shape the answer; they decide nothing themselves.

mod admin;
mod admin_groups;
mod apps;
mod audit;
mod auth;
mod directory;
pub mod error;
pub mod extract;
mod files;
mod groups;
mod health;
mod me;
mod oauth;
pub mod openapi;
pub mod scopes;
mod threads;
pub mod ws;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// How long `GET /admin/audit/verify` waits for its job before answering 202: well
    /// inside the request timeout.
    pub verify_wait: Duration,
}

/// Limits the router enforces.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// Every route, each with its OpenAPI operation: utoipa-axum's `routes!` takes the
/// method and path from the handler's `#[utoipa::path]`, so a route cannot exist
/// without its documentation, and the published document (`openapi::document`) is
/// built from these same routers. Three groups, because they get different layers.
pub(crate) struct Routes {
    /// JSON requests: body limit and request timeout.
    pub json: OpenApiRouter<AppState>,
    /// Streams (uploads, downloads, the websocket): neither.
    pub transfers: OpenApiRouter<AppState>,
    /// Probes and metrics at the root.
    pub probes: OpenApiRouter<AppState>,
}

pub(crate) fn routes() -> Routes {
    Routes {
        json: OpenApiRouter::new()
            .merge(auth::routes())
            .merge(me::routes())
            .merge(directory::routes())
            .merge(admin::routes())
            .merge(admin_groups::routes())
            .merge(apps::routes())
            .merge(oauth::routes())
            .merge(audit::routes())
            .merge(groups::routes())
            .merge(threads::routes())
            .merge(files::routes())
            .routes(routes!(openapi::openapi_json)),
        transfers: OpenApiRouter::new()
            .merge(files::transfer_routes())
            .routes(routes!(ws::upgrade)),
        probes: health::routes(),
    }
}

/// The whole HTTP surface, without a socket: tests can drive it with `oneshot`.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let Routes {
        json,
        transfers,
        probes,
    } = routes();
    let json = Router::from(json)
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
    let transfers = Router::from(transfers).layer(DefaultBodyLimit::disable());

    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    json.merge(transfers)
        .merge(Router::from(probes))
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
