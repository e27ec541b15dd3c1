//! `/api/v1/admin/audit/*`: audit reports (JSON pages or a streamed CSV export) and chain
//! verification, for region administrators (the reports also for apps with `audit:read`). Reports cover the caller's region only;
//! every pull and every verification is itself audited.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tsunagu_protocol::audit::{AuditPage, AuditVerification};
use tsunagu_protocol::ids::{GroupId, OrganizationId, UserId};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppQuery, CurrentAdmin, CurrentAuditReader, Meta};
use super::AppState;
use crate::domain::audit_reports::{AuditQuery, ReportKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How a report is delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// A page of entries with a cursor for the next.
    #[default]
    Json,
    /// Every matching entry as a spreadsheet (UTF-8 with BOM, CRLF, RFC 4180).
    Csv,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditReportQuery {
    /// `json` (default: one page) or `csv` (every matching entry, streamed).
    pub format: Option<ReportFormat>,
    /// Entries about this file.
    #[param(value_type = Option<uuid::Uuid>)]
    pub file_id: Option<String>,
    /// Entries whose actor is this user.
    pub user_id: Option<UserId>,
    /// Entries about this group.
    pub group_id: Option<GroupId>,
    /// Entries whose actor belonged to this organisation.
    pub organization_id: Option<OrganizationId>,
    /// One action, e.g. `file_downloaded`, `login_failed`.
    #[param(schema_with = action_schema)]
    pub action: Option<String>,
    /// `success`, `failure` or `denied`.
    #[param(schema_with = outcome_schema)]
    pub outcome: Option<String>,
    /// Entries at or after this time (RFC 3339 or Unix milliseconds; inclusive).
    #[param(schema_with = time_schema)]
    pub from: Option<String>,
    /// Entries before this time (RFC 3339 or Unix milliseconds; exclusive).
    #[param(schema_with = time_schema)]
    pub to: Option<String>,
    /// `format=json`: the `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// `format=json`: entries per page, 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The audit actions, as the `action` filter takes them. (The file-access report takes
/// the `file_*` ones only; `openapi.rs` narrows its copy.)
pub fn action_schema() -> utoipa::openapi::Object {
    actions_schema(|_| true)
}

pub fn actions_schema(keep: impl Fn(&crate::audit::Action) -> bool) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(
            crate::audit::Action::ALL
                .iter()
                .filter(|a| keep(a))
                .map(|a| a.as_str()),
        ))
        .build()
}

fn outcome_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["success", "failure", "denied"]))
        .build()
}

/// RFC 3339 (any offset) or Unix milliseconds.
fn time_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, OneOfBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::ObjectBuilder;
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[+-]?[0-9]{1,18}$")),
        )
        .build();
    Schema::OneOf(one_of)
}

impl AuditReportQuery {
    fn split(self) -> (ReportFormat, AuditQuery) {
        (
            self.format.unwrap_or_default(),
            AuditQuery {
                file_id: self.file_id,
                user_id: self.user_id,
                group_id: self.group_id,
                organization_id: self.organization_id,
                action: self.action,
                outcome: self.outcome,
                from: self.from,
                to: self.to,
                cursor: self.cursor,
                limit: self.limit,
            },
        )
    }
}

/// Audit reports and verification: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(file_access))
        .routes(routes!(verify))
}

/// Every audit entry of the caller's region: security events and file access.
#[utoipa::path(
    get, path = "/api/v1/admin/audit/events", tag = "audit", operation_id = "audit_events",
    params(AuditReportQuery),
    responses(
        (status = 200, description = "A page (`format=json`) or the whole report (`format=csv`, \
            UTF-8 with BOM, CRLF line ends; columns time_jst, time_utc, user, organization, \
            profession, group, file, action, outcome, ip, request_id, user_agent, target_kind, \
            target_id, user_id, organization_id, file_id, group_id, seq)",
            content((AuditPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A filter, cursor or limit is malformed", body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    CurrentAuditReader(reader): CurrentAuditReader,
    Meta(meta): Meta,
    AppQuery(q): AppQuery<AuditReportQuery>,
) -> ApiResult<Response> {
    report(state, reader, meta, ReportKind::Events, q).await
}

/// File access in the caller's region: uploads, metadata views, downloads, deletions
/// and refused attempts (`file_*` actions).
#[utoipa::path(
    get, path = "/api/v1/admin/audit/file-access", tag = "audit", operation_id = "audit_file_access",
    params(AuditReportQuery),
    responses(
        (status = 200, description = "A page (`format=json`) or the whole report (`format=csv`, \
            columns as for `/admin/audit/events`)",
            content((AuditPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A filter, cursor or limit is malformed, or `action` is not a file action", body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn file_access(
    State(state): State<AppState>,
    CurrentAuditReader(reader): CurrentAuditReader,
    Meta(meta): Meta,
    AppQuery(q): AppQuery<AuditReportQuery>,
) -> ApiResult<Response> {
    report(state, reader, meta, ReportKind::FileAccess, q).await
}

async fn report(
    state: AppState,
    reader: crate::domain::access::AuditReader,
    meta: crate::audit::RequestMeta,
    kind: ReportKind,
    q: AuditReportQuery,
) -> ApiResult<Response> {
    let (format, q) = q.split();
    match format {
        ReportFormat::Json => Ok(AppJson(
            state
                .domain
                .audit_reports()
                .audit_report_page(&reader, kind, q, &meta)
                .await?,
        )
        .into_response()),
        ReportFormat::Csv => {
            let export = state
                .domain
                .audit_reports()
                .audit_report_csv(&reader, kind, q, &meta)
                .await?;
            let body = Body::from_stream(futures_util::StreamExt::inspect(export.body, |chunk| {
                if let Err(e) = chunk {
                    // The status is already sent: the client sees a cut-off body.
                    tracing::error!(error = %e, "audit CSV export failed midway");
                }
            }));
            let mut response = Response::new(body);
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"{}\"", export.filename))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            Ok(response)
        }
    }
}

/// Re-hashes the whole audit chain and checks every signed checkpoint; names the first
/// entry that was modified, removed, inserted or reordered.
#[utoipa::path(
    get, path = "/api/v1/admin/audit/verify", tag = "audit", operation_id = "verify_audit",
    responses(
        (status = 200, description = "The result, intact or not", body = AuditVerification),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
) -> ApiResult<AppJson<AuditVerification>> {
    Ok(AppJson(
        state
            .domain
            .audit_reports()
            .verify_audit(&admin, &state.audit_verifier, &meta)
            .await?,
    ))
}
