//! `/api/v1/admin/api-clients`: third-party apps, registered by a region admin. Scoped
//! to the admin's region by the domain: another region's client answers 404.

use axum::extract::State;
use axum::http::StatusCode;
use tsunagu_protocol::apps::{
    ApiClient, ApiClientCreated, ApiClientList, CreateApiClient, RotateSecret, SecretRotated,
    UpdateApiClient,
};
use tsunagu_protocol::ids::ApiClientId;
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, CurrentAdmin, Meta};
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_clients, create_api_client))
        .routes(routes!(
            get_api_client,
            update_api_client,
            disable_api_client
        ))
        .routes(routes!(rotate_api_client_secret))
}

/// Register an app: its client credentials (the secret is in this answer only) and its
/// app account, which group owners add to groups like a person.
#[utoipa::path(
    post, path = "/api/v1/admin/api-clients", tag = "apps",
    request_body = CreateApiClient,
    responses(
        (status = 201, body = ApiClientCreated),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_api_client(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppJson(req): AppJson<CreateApiClient>,
) -> ApiResult<(StatusCode, AppJson<ApiClientCreated>)> {
    let created = state.domain.apps().create(&admin, req, &meta).await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

/// The apps of the caller's region, disabled ones included.
#[utoipa::path(
    get, path = "/api/v1/admin/api-clients", tag = "apps",
    responses((status = 200, body = ApiClientList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_api_clients(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
) -> ApiResult<AppJson<ApiClientList>> {
    Ok(AppJson(ApiClientList {
        api_clients: state.domain.apps().list(&admin).await?,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/admin/api-clients/{id}", tag = "apps",
    params(("id" = uuid::Uuid, Path, description = "API client id")),
    responses((status = 200, body = ApiClient), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_api_client(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath(id): AppPath<ApiClientId>,
) -> ApiResult<AppJson<ApiClient>> {
    Ok(AppJson(state.domain.apps().get(&admin, id).await?))
}

/// Change the name, description, scopes, keys or rate; `active: true` enables a
/// disabled client. Narrowed scopes apply to tokens already issued.
#[utoipa::path(
    patch, path = "/api/v1/admin/api-clients/{id}", tag = "apps",
    params(("id" = uuid::Uuid, Path, description = "API client id")),
    request_body = UpdateApiClient,
    responses(
        (status = 200, body = ApiClient),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_api_client(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<ApiClientId>,
    AppJson(req): AppJson<UpdateApiClient>,
) -> ApiResult<AppJson<ApiClient>> {
    Ok(AppJson(
        state.domain.apps().update(&admin, id, req, &meta).await?,
    ))
}

/// Disable the app: its tokens stop at once and its sockets close. Nothing is deleted;
/// `PATCH {"active": true}` enables it again.
#[utoipa::path(
    delete, path = "/api/v1/admin/api-clients/{id}", tag = "apps",
    params(("id" = uuid::Uuid, Path, description = "API client id")),
    responses((status = 200, body = ApiClient), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn disable_api_client(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<ApiClientId>,
) -> ApiResult<AppJson<ApiClient>> {
    Ok(AppJson(
        state.domain.apps().disable(&admin, id, &meta).await?,
    ))
}

/// A new client secret (in this answer only). The previous one keeps working for
/// `grace_secs` (default 0), so a running app can switch without downtime.
#[utoipa::path(
    post, path = "/api/v1/admin/api-clients/{id}/secret", tag = "apps",
    params(("id" = uuid::Uuid, Path, description = "API client id")),
    request_body = RotateSecret,
    responses(
        (status = 200, body = SecretRotated),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_api_client_secret(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<ApiClientId>,
    AppJson(req): AppJson<RotateSecret>,
) -> ApiResult<AppJson<SecretRotated>> {
    Ok(AppJson(
        state
            .domain
            .apps()
            .rotate_secret(&admin, id, req, &meta)
            .await?,
    ))
}
