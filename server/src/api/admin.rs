//! `/api/v1/admin/*`: region administration. Everything is scoped to the caller's region
//! by the domain; another region's ids answer 404.

use axum::extract::State;
use serde::Deserialize;
use tsunagu_protocol::accounts::{
    CreateOrganization, CreateUser, Organization, OrganizationList, Policy, RegionList,
    ResetPassword, UpdateOrganization, UpdatePolicy, UpdateUser, User, UserList,
};
use tsunagu_protocol::ids::{OrganizationId, UserId};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CurrentAdmin, Meta};
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Region administration: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_regions))
        .routes(routes!(list_organizations, create_organization))
        .routes(routes!(get_organization, update_organization))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(reset_password))
        .routes(routes!(reset_totp))
        .routes(routes!(get_policy, update_policy))
}

/// The caller's region (a region administrator administers exactly one).
#[utoipa::path(
    get, path = "/api/v1/admin/regions", tag = "admin",
    responses((status = 200, body = RegionList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_regions(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
) -> ApiResult<AppJson<RegionList>> {
    Ok(AppJson(RegionList {
        regions: state.domain.admin().admin_regions(&admin).await?,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrganizationsQuery {
    /// Include deactivated organisations.
    #[serde(default)]
    pub include_inactive: bool,
}

/// Organisations of the caller's region.
#[utoipa::path(
    get, path = "/api/v1/admin/organizations", tag = "admin",
    params(ListOrganizationsQuery),
    responses((status = 200, body = OrganizationList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_organizations(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppQuery(q): AppQuery<ListOrganizationsQuery>,
) -> ApiResult<AppJson<OrganizationList>> {
    Ok(AppJson(OrganizationList {
        organizations: state
            .domain
            .admin()
            .list_organizations(&admin, q.include_inactive)
            .await?,
    }))
}

/// Create an organisation (clinic, nursing station, pharmacy…).
#[utoipa::path(
    post, path = "/api/v1/admin/organizations", tag = "admin",
    request_body = CreateOrganization,
    responses((status = 201, body = Organization), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_organization(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppJson(req): AppJson<CreateOrganization>,
) -> ApiResult<(axum::http::StatusCode, AppJson<Organization>)> {
    let org = state
        .domain
        .admin()
        .create_organization(&admin, req, &meta)
        .await?;
    Ok((axum::http::StatusCode::CREATED, AppJson(org)))
}

#[utoipa::path(
    get, path = "/api/v1/admin/organizations/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "Organisation id")),
    responses((status = 200, body = Organization), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_organization(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath(id): AppPath<OrganizationId>,
) -> ApiResult<AppJson<Organization>> {
    Ok(AppJson(
        state.domain.admin().get_organization(&admin, id).await?,
    ))
}

#[utoipa::path(
    patch, path = "/api/v1/admin/organizations/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "Organisation id")),
    request_body = UpdateOrganization,
    responses((status = 200, body = Organization), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_organization(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<OrganizationId>,
    AppJson(req): AppJson<UpdateOrganization>,
) -> ApiResult<AppJson<Organization>> {
    Ok(AppJson(
        state
            .domain
            .admin()
            .update_organization(&admin, id, req, &meta)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Include deactivated users.
    #[serde(default)]
    pub include_inactive: bool,
    /// Only members of this organisation.
    pub organization_id: Option<OrganizationId>,
}

/// Users of the caller's region.
#[utoipa::path(
    get, path = "/api/v1/admin/users", tag = "admin",
    params(ListUsersQuery),
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_users(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppQuery(q): AppQuery<ListUsersQuery>,
) -> ApiResult<AppJson<UserList>> {
    Ok(AppJson(UserList {
        users: state
            .domain
            .admin()
            .list_users(&admin, q.include_inactive, q.organization_id)
            .await?,
    }))
}

/// Create a user in the caller's region. By default they must change the password at
/// first sign-in.
#[utoipa::path(
    post, path = "/api/v1/admin/users", tag = "admin",
    request_body = CreateUser,
    responses(
        (status = 201, body = User),
        (status = 400, description = "`invalid_request` or `weak_password`", body = ErrorBody),
        (status = 404, description = "The organisation is not in this region", body = ErrorBody),
        (status = 409, description = "The login id is taken", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_user(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppJson(req): AppJson<CreateUser>,
) -> ApiResult<(axum::http::StatusCode, AppJson<User>)> {
    let user = state.domain.admin().create_user(&admin, req, &meta).await?;
    Ok((axum::http::StatusCode::CREATED, AppJson(user)))
}

#[utoipa::path(
    get, path = "/api/v1/admin/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_user(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath(id): AppPath<UserId>,
) -> ApiResult<AppJson<User>> {
    Ok(AppJson(state.domain.admin().get_user(&admin, id).await?))
}

#[utoipa::path(
    patch, path = "/api/v1/admin/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = UpdateUser,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_user(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<UserId>,
    AppJson(req): AppJson<UpdateUser>,
) -> ApiResult<AppJson<User>> {
    Ok(AppJson(
        state
            .domain
            .admin()
            .update_user(&admin, id, req, &meta)
            .await?,
    ))
}

/// Deactivate a user: every session ends at once, sign-in is refused.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/deactivate", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn deactivate_user(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<UserId>,
) -> ApiResult<AppJson<User>> {
    Ok(AppJson(
        state
            .domain
            .admin()
            .deactivate_user(&admin, id, &meta)
            .await?,
    ))
}

#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/reactivate", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, body = User),
        (status = 404, body = ErrorBody),
        (status = 409, description = "An app's account: enable the app under `/admin/api-clients`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reactivate_user(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<UserId>,
) -> ApiResult<AppJson<User>> {
    Ok(AppJson(
        state
            .domain
            .admin()
            .reactivate_user(&admin, id, &meta)
            .await?,
    ))
}

/// Set a new password (temporary by default) and sign the user out everywhere.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/reset-password", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = ResetPassword,
    responses(
        (status = 200, body = User),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Your own account (use `POST /api/v1/me/password`), or an app's account", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reset_password(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<UserId>,
    AppJson(req): AppJson<ResetPassword>,
) -> ApiResult<AppJson<User>> {
    Ok(AppJson(
        state
            .domain
            .admin()
            .reset_password(&admin, id, req, &meta)
            .await?,
    ))
}

/// Remove a user's TOTP second factor (lost phone).
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/reset-totp", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, body = User),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Your own account (another administrator resets it), or an app's account", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reset_totp(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<UserId>,
) -> ApiResult<AppJson<User>> {
    Ok(AppJson(
        state.domain.admin().reset_totp(&admin, id, &meta).await?,
    ))
}

/// The region's security policy.
#[utoipa::path(
    get, path = "/api/v1/admin/policy", tag = "admin",
    responses((status = 200, body = Policy), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_policy(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
) -> ApiResult<AppJson<Policy>> {
    Ok(AppJson(state.domain.admin().get_policy(&admin).await?))
}

/// Change the region's security policy (MFA requirement, password length, token lifetimes).
#[utoipa::path(
    patch, path = "/api/v1/admin/policy", tag = "admin",
    request_body = UpdatePolicy,
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_policy(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppJson(req): AppJson<UpdatePolicy>,
) -> ApiResult<AppJson<Policy>> {
    Ok(AppJson(
        state
            .domain
            .admin()
            .update_policy(&admin, req, &meta)
            .await?,
    ))
}
