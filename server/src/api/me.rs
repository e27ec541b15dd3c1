//! `/api/v1/me*`: the caller's own account. These stay open while a password change or
//! MFA enrolment is pending, so the caller can do what is asked of them.

use axum::extract::State;
use axum::http::StatusCode;
use tsunagu_protocol::accounts::{Me, UpdateMe};
use tsunagu_protocol::auth::{ChangePasswordRequest, TotpCodeRequest, TotpEnrollment};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, CurrentSession, Meta};
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The caller's own account: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(totp_begin))
        .routes(routes!(totp_confirm))
}

/// The caller, their region and organisation, and any action pending on their account.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "me", operation_id = "get_me",
    responses(
        (status = 200, body = Me),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn me(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> ApiResult<AppJson<Me>> {
    Ok(AppJson(state.domain.accounts().me(&session).await?))
}

/// Change the caller's password. Other sessions of the caller are signed out.
#[utoipa::path(
    post, path = "/api/v1/me/password", tag = "me",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "`weak_password`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Meta(meta): Meta,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .accounts()
        .change_password(&session, req, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start TOTP enrolment: returns a secret and an `otpauth://` URL for an authenticator app.
#[utoipa::path(
    post, path = "/api/v1/me/totp", tag = "me",
    responses(
        (status = 200, body = TotpEnrollment),
        (status = 409, description = "TOTP is already enabled", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn totp_begin(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> ApiResult<AppJson<TotpEnrollment>> {
    Ok(AppJson(state.domain.accounts().totp_begin(&session).await?))
}

/// Confirm TOTP enrolment with a current code; sign-in needs a code from now on.
#[utoipa::path(
    post, path = "/api/v1/me/totp/confirm", tag = "me",
    request_body = TotpCodeRequest,
    responses(
        (status = 204, description = "Enabled"),
        (status = 401, description = "`invalid_totp`", body = ErrorBody),
        (status = 409, description = "TOTP is already enabled", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn totp_confirm(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Meta(meta): Meta,
    AppJson(req): AppJson<TotpCodeRequest>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .accounts()
        .totp_confirm(&session, &req.code, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Edit one's own display name, kana and profile line (people only; an app's name is
/// its registration's).
#[utoipa::path(
    patch, path = "/api/v1/me", tag = "me", operation_id = "update_me",
    request_body = UpdateMe,
    responses((status = 200, body = Me), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_me(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Meta(meta): Meta,
    AppJson(req): AppJson<UpdateMe>,
) -> ApiResult<AppJson<Me>> {
    state
        .domain
        .directory()
        .update_me(&session, req, &meta)
        .await?;
    Ok(AppJson(state.domain.accounts().me(&session).await?))
}
