//! `GET /api/v1/users` and `GET /api/v1/organizations`: the directory of the region's
//! professionals, for signed-in professionals (and apps with `users:read`).

use axum::extract::State;
use serde::Deserialize;
use tsunagu_protocol::accounts::{DirectoryPage, OrganizationList, Profession};
use tsunagu_protocol::ids::{OrganizationId, UserId};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppQuery, CurrentMember};
use super::AppState;
use crate::domain::directory::DirectoryQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(directory))
        .routes(routes!(organizations))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DirectoryParams {
    /// Name or kana, any width or script: `さとう` finds `サトウ` and, by its kana, `佐藤`.
    #[param(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub q: Option<String>,
    pub organization_id: Option<OrganizationId>,
    pub profession: Option<Profession>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<UserId>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// The region's professionals in kana order (never patients, family or apps), as the
/// region's policy lets the caller see them.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "directory",
    params(DirectoryParams),
    responses(
        (status = 200, body = DirectoryPage),
        (status = 403, description = "Patients and family (they talk in their group)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn directory(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppQuery(p): AppQuery<DirectoryParams>,
) -> ApiResult<AppJson<DirectoryPage>> {
    let q = DirectoryQuery {
        q: p.q,
        organization_id: p.organization_id,
        profession: p.profession,
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(AppJson(state.domain.directory().users(&member, q).await?))
}

/// The region's active organisations (name, kind), for the directory's filter.
#[utoipa::path(
    get, path = "/api/v1/organizations", tag = "directory",
    responses((status = 200, body = OrganizationList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn organizations(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
) -> ApiResult<AppJson<OrganizationList>> {
    Ok(AppJson(OrganizationList {
        organizations: state.domain.directory().organizations(&member).await?,
    }))
}
