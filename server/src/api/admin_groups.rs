//! `/api/v1/admin/groups`: region administrators manage the region's groups without
//! reading them (`domain::group_admin`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tsunagu_protocol::ids::{GroupId, UserId};
use tsunagu_protocol::messaging::{AddOwner, AdminGroup, AdminGroupList};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CurrentAdmin, Meta};
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_groups))
        .routes(routes!(admin_add_owner))
        .routes(routes!(admin_remove_owner))
        .routes(routes!(admin_archive_group))
        .routes(routes!(admin_restore_group))
        .routes(routes!(admin_remove_member))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminGroupsQuery {
    /// Include archived groups.
    #[serde(default)]
    pub include_archived: bool,
}

/// The region's groups: name, kind, owners, member count, created, the main timeline's
/// last activity, archived. Nothing of their content.
#[utoipa::path(
    get, path = "/api/v1/admin/groups", tag = "admin",
    params(AdminGroupsQuery),
    responses((status = 200, body = AdminGroupList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn admin_list_groups(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppQuery(q): AppQuery<AdminGroupsQuery>,
) -> ApiResult<AppJson<AdminGroupList>> {
    Ok(AppJson(AdminGroupList {
        groups: state
            .domain
            .group_admin()
            .list(&admin, q.include_archived)
            .await?,
    }))
}

/// Make a professional of the region an owner (added to the group if needed): to hand a
/// leaving nurse's groups to a colleague. Not the administrator themselves.
#[utoipa::path(
    post, path = "/api/v1/admin/groups/{id}/owners", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = AddOwner,
    responses(
        (status = 200, body = AdminGroup),
        (status = 400, description = "An app, patient or family account, or a patient-side member", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The administrator themselves", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn admin_add_owner(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
    AppJson(req): AppJson<AddOwner>,
) -> ApiResult<AppJson<AdminGroup>> {
    Ok(AppJson(
        state
            .domain
            .group_admin()
            .add_owner(&admin, id, req, &meta)
            .await?,
    ))
}

/// Make an owner a plain member (the group keeps at least one owner).
#[utoipa::path(
    delete, path = "/api/v1/admin/groups/{id}/owners/{user_id}", tag = "admin",
    params(
        ("id" = uuid::Uuid, Path, description = "Group id"),
        ("user_id" = uuid::Uuid, Path, description = "The owner"),
    ),
    responses(
        (status = 200, body = AdminGroup),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn admin_remove_owner(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(GroupId, UserId)>,
) -> ApiResult<AppJson<AdminGroup>> {
    Ok(AppJson(
        state
            .domain
            .group_admin()
            .remove_owner(&admin, id, user_id, &meta)
            .await?,
    ))
}

/// Archive a group: readable to its members, no new posts.
#[utoipa::path(
    post, path = "/api/v1/admin/groups/{id}/archive", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = AdminGroup), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn admin_archive_group(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<AdminGroup>> {
    Ok(AppJson(
        state
            .domain
            .group_admin()
            .set_archived(&admin, id, true, &meta)
            .await?,
    ))
}

/// Restore an archived group.
#[utoipa::path(
    post, path = "/api/v1/admin/groups/{id}/restore", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = AdminGroup), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn admin_restore_group(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<AdminGroup>> {
    Ok(AppJson(
        state
            .domain
            .group_admin()
            .set_archived(&admin, id, false, &meta)
            .await?,
    ))
}

/// Remove a member (not the last owner); they cannot come back by a code.
#[utoipa::path(
    delete, path = "/api/v1/admin/groups/{id}/members/{user_id}", tag = "admin",
    params(
        ("id" = uuid::Uuid, Path, description = "Group id"),
        ("user_id" = uuid::Uuid, Path, description = "The member"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn admin_remove_member(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(GroupId, UserId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .group_admin()
        .remove_member(&admin, id, user_id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
