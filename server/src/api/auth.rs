//! `/api/v1/auth/*`: sign-in, refresh, logout.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;
use tsunagu_protocol::auth::{LoginRequest, RefreshRequest, TokenResponse};
use tsunagu_protocol::{ErrorBody, ErrorCode};

use super::error::{ApiError, ApiResult};
use super::extract::{bearer, AppJson, Meta};
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Sign-in and tokens: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// Sign in with login id and password (+ TOTP when enabled).
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`, `totp_required` or `invalid_totp`", body = ErrorBody),
        (status = 429, description = "Too many attempts for this account or address", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AppJson(req): AppJson<LoginRequest>,
) -> ApiResult<AppJson<TokenResponse>> {
    Ok(AppJson(state.domain.accounts().login(req, &meta).await?))
}

/// Exchange a refresh token for a new access token and a new refresh token. Each
/// refresh token works once; presenting a used one revokes the whole sign-in.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New token pair", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AppJson(req): AppJson<RefreshRequest>,
) -> ApiResult<AppJson<TokenResponse>> {
    Ok(AppJson(
        state
            .domain
            .accounts()
            .refresh(&req.refresh_token, &meta)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct LogoutRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// End the sign-in named by the bearer token and/or the refresh token in the body.
/// Always 204: it does not tell whether there was anything to end.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    request_body(content = LogoutRequest, description = "Optional"),
    responses((status = 204, description = "Signed out")),
    security((), ("bearer" = []))
)]
pub async fn logout(
    State(state): State<AppState>,
    Meta(meta): Meta,
    MaybeSession(session): MaybeSession,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            super::error::payload_too_large()
        } else {
            ApiError::invalid("unreadable body")
        }
    })?;
    // The body is optional: a client may sign out with only its access token.
    let refresh = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let value = serde_json::from_slice(&body).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedJson,
                "the body is not a logout request",
            )
        })?;
        super::extract::json_object::<LogoutRequest>(value)?.refresh_token
    };
    state
        .domain
        .accounts()
        .logout(session.as_ref(), refresh.as_deref(), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A session if the request carries a valid bearer token; nothing otherwise.
pub struct MaybeSession(Option<crate::domain::Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = match bearer(parts) {
            Some(token) => state.domain.accounts().authenticate(token).await.ok(),
            None => None,
        };
        Ok(MaybeSession(session))
    }
}
