//! `/api/v1/admin/audit/*`: audit reports (JSON pages or a streamed CSV export) and chain
//! verification, for region administrators (the reports also for apps with `audit:read`). Reports cover the caller's region only;
//! every pull and every verification is itself audited.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tsunagu_protocol::audit::{AuditPage, AuditVerification, AuditVerifyJob, AuditVerifyJobState};
use tsunagu_protocol::ids::{GroupId, OrganizationId, UserId};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CurrentAdmin, CurrentAuditReader, Meta};
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
        .routes(routes!(verify, start_verify))
        .routes(routes!(verify_job))
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

/// Verifies the whole chain and its signed checkpoints (the design's verification
/// route). It runs as the region's verification job ([`start_verify`]): when the job
/// finishes within the wait (two thirds of the request timeout), the answer is the
/// verification as ever (200); otherwise 202 with the job, to poll at
/// `GET /api/v1/admin/audit/verify/{job_id}` (also in `Location`).
#[utoipa::path(
    get, path = "/api/v1/admin/audit/verify", tag = "audit", operation_id = "verify_audit",
    responses(
        (status = 200, description = "The result, intact or not", body = AuditVerification),
        (status = 202, description = "Still running: the job to poll", body = AuditVerifyJob,
            headers(("Location" = String, description = "The job's URL"))),
        (status = 403, body = ErrorBody),
        (status = 409, description = "A verification of the region ended just as this one began; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
) -> ApiResult<Response> {
    let reports = state.domain.audit_reports();
    let (mut job, _) = reports
        .start_verify_job(&admin, &state.audit_verifier, &meta)
        .await?;
    let deadline = tokio::time::Instant::now() + state.verify_wait;
    while job.state == AuditVerifyJobState::Running && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        job = reports.verify_job(&admin, &job.id).await?;
    }
    Ok(match (&job.state, job.result.clone()) {
        (AuditVerifyJobState::Done, Some(result)) => AppJson(result).into_response(),
        _ => accepted(job),
    })
}

fn accepted(job: AuditVerifyJob) -> Response {
    let location = format!("/api/v1/admin/audit/verify/{}", job.id);
    let mut response = (StatusCode::ACCEPTED, AppJson(job)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Starts a verification of the whole chain and its checkpoints in the background and
/// answers at once with the job — the region's running one if there is one (one per
/// region at a time). Poll `GET /api/v1/admin/audit/verify/{job_id}`. When the job ends
/// it records `audit_verified`. A job whose server stops before it ends is reported
/// `failed` with `error: "interrupted"` within 30 s; start a new one.
#[utoipa::path(
    post, path = "/api/v1/admin/audit/verify", tag = "audit", operation_id = "start_audit_verify",
    responses(
        (status = 202, description = "The job (new, or the one already running)", body = AuditVerifyJob,
            headers(("Location" = String, description = "The job's URL"))),
        (status = 403, body = ErrorBody),
        (status = 409, description = "A verification of the region ended just as this one began; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start_verify(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
) -> ApiResult<Response> {
    let (job, _) = state
        .domain
        .audit_reports()
        .start_verify_job(&admin, &state.audit_verifier, &meta)
        .await?;
    Ok(accepted(job))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job id `POST /api/v1/admin/audit/verify` answered.
    #[param(value_type = uuid::Uuid)]
    pub job_id: uuid::Uuid,
}

/// A verification job of the caller's region: progress (`checked` of `total`) while
/// running, the verification once `done`, why once `failed`.
#[utoipa::path(
    get, path = "/api/v1/admin/audit/verify/{job_id}", tag = "audit", operation_id = "audit_verify_job",
    params(JobPath),
    responses(
        (status = 200, description = "The job", body = AuditVerifyJob),
        (status = 400, description = "The job id is malformed", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such job in the caller's region", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn verify_job(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath(path): AppPath<JobPath>,
) -> ApiResult<AppJson<AuditVerifyJob>> {
    Ok(AppJson(
        state
            .domain
            .audit_reports()
            .verify_job(&admin, &path.job_id.to_string())
            .await?,
    ))
}
