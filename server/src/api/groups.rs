//! `/api/v1/groups*` and `/api/v1/invitations/accept`: groups, membership, invitations.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tsunagu_protocol::ids::{GroupId, InvitationId, UserId};
use tsunagu_protocol::messaging::{
    AcceptInvitation, AcceptedInvitation, AddMember, CreateGroup, CreateInvitation, CreateThread,
    Group, GroupList, Invitation, InvitationList, JoinRequestList, Member, MemberList, Thread,
    ThreadList, UpdateGroup, UpdateMember,
};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CurrentMember, Meta};
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Groups, membership, invitations, join requests and a group's threads: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_group, list_groups))
        .routes(routes!(get_group, update_group))
        .routes(routes!(archive_group))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(create_invitation, list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(list_join_requests))
        .routes(routes!(approve_join_request))
        .routes(routes!(reject_join_request))
        .routes(routes!(create_thread, list_threads))
}

/// Create a patient group (with a patient profile) or a free group; the caller becomes
/// its owner.
#[utoipa::path(
    post, path = "/api/v1/groups", tag = "groups",
    request_body = CreateGroup,
    responses((status = 201, body = Group), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_group(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppJson(req): AppJson<CreateGroup>,
) -> ApiResult<(StatusCode, AppJson<Group>)> {
    Ok((
        StatusCode::CREATED,
        AppJson(
            state
                .domain
                .groups()
                .create_group(&member, req, &meta)
                .await?,
        ),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListGroupsQuery {
    /// Include archived groups.
    #[serde(default)]
    pub include_archived: bool,
}

/// The caller's groups.
#[utoipa::path(
    get, path = "/api/v1/groups", tag = "groups",
    params(ListGroupsQuery),
    responses((status = 200, body = GroupList)),
    security(("bearer" = []))
)]
pub async fn list_groups(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppQuery(q): AppQuery<ListGroupsQuery>,
) -> ApiResult<AppJson<GroupList>> {
    Ok(AppJson(GroupList {
        groups: state
            .domain
            .groups()
            .list_groups(&member, q.include_archived)
            .await?,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = Group), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_group(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<Group>> {
    Ok(AppJson(state.domain.groups().get_group(&member, id).await?))
}

/// Update name, description or patient profile (group owners and admins).
#[utoipa::path(
    patch, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = UpdateGroup,
    responses(
        (status = 200, body = Group),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_group(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
    AppJson(req): AppJson<UpdateGroup>,
) -> ApiResult<AppJson<Group>> {
    Ok(AppJson(
        state
            .domain
            .groups()
            .update_group(&member, id, req, &meta)
            .await?,
    ))
}

/// Archive a group: readable, no new posts (group owners and admins).
#[utoipa::path(
    post, path = "/api/v1/groups/{id}/archive", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = Group), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn archive_group(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<Group>> {
    Ok(AppJson(
        state
            .domain
            .groups()
            .archive_group(&member, id, &meta)
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = MemberList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_members(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<MemberList>> {
    Ok(AppJson(MemberList {
        members: state.domain.groups().list_members(&member, id).await?,
    }))
}

/// Add a user of the region to the group (group owners and admins).
#[utoipa::path(
    post, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = AddMember,
    responses((status = 201, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn add_member(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
    AppJson(req): AppJson<AddMember>,
) -> ApiResult<(StatusCode, AppJson<Member>)> {
    Ok((
        StatusCode::CREATED,
        AppJson(
            state
                .domain
                .groups()
                .add_member(&member, id, req, &meta)
                .await?,
        ),
    ))
}

/// Change a member's role (group owners and admins).
#[utoipa::path(
    patch, path = "/api/v1/groups/{id}/members/{user_id}", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id"), ("user_id" = uuid::Uuid, Path, description = "User id")),
    request_body = UpdateMember,
    responses(
        (status = 200, body = Member),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The group would be left without an owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_member(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(GroupId, UserId)>,
    AppJson(req): AppJson<UpdateMember>,
) -> ApiResult<AppJson<Member>> {
    Ok(AppJson(
        state
            .domain
            .groups()
            .set_member_role(&member, id, user_id, req.role, &meta)
            .await?,
    ))
}

/// Remove a member (group owners and admins), or leave the group (yourself). Takes
/// effect at once everywhere, live connections included.
#[utoipa::path(
    delete, path = "/api/v1/groups/{id}/members/{user_id}", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id"), ("user_id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove_member(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(GroupId, UserId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .groups()
        .remove_member(&member, id, user_id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group's invitation codes (group owners and admins), newest first, with their uses
/// and state; the codes themselves are never shown again.
#[utoipa::path(
    get, path = "/api/v1/groups/{id}/invitations", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = InvitationList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_invitations(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<InvitationList>> {
    Ok(AppJson(InvitationList {
        invitations: state
            .domain
            .invitations()
            .list_invitations(&member, id)
            .await?,
    }))
}

/// Revoke an invitation code at once (group owners and admins).
#[utoipa::path(
    delete, path = "/api/v1/groups/{id}/invitations/{invitation_id}", tag = "groups",
    params(
        ("id" = uuid::Uuid, Path, description = "Group id"),
        ("invitation_id" = uuid::Uuid, Path, description = "Invitation id"),
    ),
    responses((status = 204, description = "Revoked"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath((id, invitation_id)): AppPath<(GroupId, InvitationId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .invitations()
        .revoke_invitation(&member, id, invitation_id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an invitation code (group owners and admins). The code is shown once.
#[utoipa::path(
    post, path = "/api/v1/groups/{id}/invitations", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = CreateInvitation,
    responses((status = 201, body = Invitation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_invitation(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
    AppJson(req): AppJson<CreateInvitation>,
) -> ApiResult<(StatusCode, AppJson<Invitation>)> {
    Ok((
        StatusCode::CREATED,
        AppJson(
            state
                .domain
                .invitations()
                .create_invitation(&member, id, req, &meta)
                .await?,
        ),
    ))
}

/// Redeem an invitation code: join at once, or wait for approval.
#[utoipa::path(
    post, path = "/api/v1/invitations/accept", tag = "groups",
    request_body = AcceptInvitation,
    responses((status = 200, body = AcceptedInvitation), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn accept_invitation(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppJson(req): AppJson<AcceptInvitation>,
) -> ApiResult<AppJson<AcceptedInvitation>> {
    Ok(AppJson(
        state
            .domain
            .invitations()
            .accept_invitation(&member, &req.code, &meta)
            .await?,
    ))
}

/// Pending join requests (group owners and admins).
#[utoipa::path(
    get, path = "/api/v1/groups/{id}/join-requests", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = JoinRequestList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_join_requests(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<JoinRequestList>> {
    Ok(AppJson(JoinRequestList {
        requests: state
            .domain
            .invitations()
            .list_join_requests(&member, id)
            .await?,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/groups/{id}/join-requests/{user_id}/approve", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id"), ("user_id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Already a member", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn approve_join_request(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(GroupId, UserId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .invitations()
        .decide_join_request(&member, id, user_id, true, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/v1/groups/{id}/join-requests/{user_id}/reject", tag = "groups",
    params(("id" = uuid::Uuid, Path, description = "Group id"), ("user_id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn reject_join_request(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(GroupId, UserId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .invitations()
        .decide_join_request(&member, id, user_id, false, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a 内緒話 thread with chosen professional members of the group.
#[utoipa::path(
    post, path = "/api/v1/groups/{id}/threads", tag = "threads",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = CreateThread,
    responses(
        (status = 201, body = Thread),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The group is archived", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_thread(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<GroupId>,
    AppJson(req): AppJson<CreateThread>,
) -> ApiResult<(StatusCode, AppJson<Thread>)> {
    Ok((
        StatusCode::CREATED,
        AppJson(
            state
                .domain
                .threads()
                .create_thread(&member, id, req, &meta)
                .await?,
        ),
    ))
}

/// The group's main timeline and the 内緒話 threads the caller belongs to, with unread
/// counts. Other threads are not listed.
#[utoipa::path(
    get, path = "/api/v1/groups/{id}/threads", tag = "threads",
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses((status = 200, body = ThreadList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_threads(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<GroupId>,
) -> ApiResult<AppJson<ThreadList>> {
    Ok(AppJson(ThreadList {
        threads: state.domain.threads().list_threads(&member, id).await?,
    }))
}
