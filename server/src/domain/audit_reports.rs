//! Audit reports and chain verification, for region administrators. A report covers
//! the administrator's own region only; pulling one is itself audited
//! (`audit_report_exported`, with the filters — ids only — in `detail`), and so is a
//! verification (`audit_verified`).

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Map, Value};
use tsunagu_protocol::audit::{AuditPage, AuditProblem, AuditVerification};
use tsunagu_protocol::ids::{GroupId, OrganizationId, UserId};

use super::access::{AuditReader, RegionAdmin};
use super::error::{DomainError, Result};
use super::shared::Shared;
use crate::audit::checkpoint::CheckpointVerifier;
use crate::audit::report::{self, ReportFilter, DEFAULT_LIMIT, MAX_LIMIT};
use crate::audit::{self, Action, Event, Outcome, RequestMeta};
use crate::store::StoreError;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Every entry of the region.
    Events,
    /// File access only: upload, metadata view, download, delete, refusals.
    FileAccess,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Events => "events",
            ReportKind::FileAccess => "file_access",
        }
    }
}

/// How the report is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
        }
    }
}

/// Report filters as the caller gave them. Times are RFC 3339 or Unix milliseconds;
/// `from` is inclusive, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub file_id: Option<String>,
    pub user_id: Option<UserId>,
    pub group_id: Option<GroupId>,
    pub organization_id: Option<OrganizationId>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// JSON paging: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// JSON paging: 1–1000, default 100.
    pub limit: Option<i64>,
}

/// A CSV export ready to stream.
pub struct CsvExport {
    /// A suggested file name (ASCII): `audit-events-20261124T050305Z.csv`.
    pub filename: String,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::result::Result<Bytes, StoreError>> + Send>>,
}

/// Filters checked and in stored form, plus what the audit entry of the pull records.
struct Checked {
    filter: ReportFilter,
    after_seq: i64,
    limit: i64,
    /// Ids and codes only.
    recorded: Map<String, Value>,
}

/// File-access and event reports and chain verification.
#[derive(Clone)]
pub struct AuditReports {
    shared: Shared,
}

impl AuditReports {
    pub(super) fn new(shared: Shared) -> Self {
        AuditReports { shared }
    }

    /// One page of a report, oldest first.
    pub async fn audit_report_page(
        &self,
        reader: &AuditReader,
        kind: ReportKind,
        q: AuditQuery,
        meta: &RequestMeta,
    ) -> Result<AuditPage> {
        let checked = check(reader, kind, &q)?;
        self.record_pull(reader, kind, ReportFormat::Json, &checked, meta)
            .await?;
        let mut conn = self.shared.store().conn().await?;
        let mut rows = report::page(
            &mut conn,
            &checked.filter,
            checked.after_seq,
            checked.limit + 1,
        )
        .await?;
        let more = rows.len() as i64 > checked.limit;
        rows.truncate(checked.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(r.seq))
        } else {
            None
        };
        Ok(AuditPage {
            entries: rows.iter().map(report::ReportRow::to_entry).collect(),
            next_cursor,
        })
    }

    /// The whole filtered report as CSV (UTF-8 with BOM, CRLF), streamed. It covers the
    /// chain as it stood when the export started, this export's own entry included.
    pub async fn audit_report_csv(
        &self,
        reader: &AuditReader,
        kind: ReportKind,
        q: AuditQuery,
        meta: &RequestMeta,
    ) -> Result<CsvExport> {
        let mut checked = check(reader, kind, &q)?;
        if q.cursor.is_some() || q.limit.is_some() {
            return Err(DomainError::Invalid(
                "cursor and limit apply to format=json; a CSV export has every matching entry"
                    .into(),
            ));
        }
        self.record_pull(reader, kind, ReportFormat::Csv, &checked, meta)
            .await?;
        let mut conn = self.shared.store().conn().await?;
        checked.filter.max_seq = Some(report::head_seq(&mut conn).await?);
        drop(conn);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        Ok(CsvExport {
            filename: format!("audit-{}-{stamp}.csv", kind.as_str().replace('_', "-")),
            body: Box::pin(report::csv_stream(
                self.shared.store().clone(),
                checked.filter,
            )),
        })
    }

    /// Verifies the whole chain and its signed checkpoints, and records that it did.
    pub async fn verify_audit(
        &self,
        admin: &RegionAdmin,
        verifier: &CheckpointVerifier,
        meta: &RequestMeta,
    ) -> Result<AuditVerification> {
        let result = audit::verify_store(self.shared.store(), verifier).await?;
        let verification = verification(&result);
        let event = Event::new(
            Action::AuditVerified,
            if verification.intact {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            &admin.session().actor(),
        )
        .detail(verified_detail(&verification));
        // A chain broken at its end can refuse new entries; the report matters more.
        if let Err(e) = audit::append_alone(self.shared.store(), meta, event).await {
            tracing::error!(error = %e, "could not record the audit verification");
        }
        Ok(verification)
    }

    /// [`AuditReports::verify_audit`] for the operator at the shell (`audit verify`): the
    /// entry it records has no actor.
    pub async fn operator_verify_audit(
        &self,
        verifier: &CheckpointVerifier,
    ) -> Result<AuditVerification> {
        let result = audit::verify_store(self.shared.store(), verifier).await?;
        let verification = verification(&result);
        let event = Event::new(
            Action::AuditVerified,
            if verification.intact {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            &audit::Actor::default(),
        )
        .detail(verified_detail(&verification));
        if let Err(e) =
            audit::append_alone(self.shared.store(), &RequestMeta::default(), event).await
        {
            tracing::error!(error = %e, "could not record the audit verification");
        }
        Ok(verification)
    }

    async fn record_pull(
        &self,
        reader: &AuditReader,
        kind: ReportKind,
        format: ReportFormat,
        checked: &Checked,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut detail = Map::new();
        detail.insert("report".into(), kind.as_str().into());
        detail.insert("format".into(), format.as_str().into());
        detail.insert("filters".into(), Value::Object(checked.recorded.clone()));
        audit::append_alone(
            self.shared.store(),
            meta,
            Event::new(
                Action::AuditReportExported,
                Outcome::Success,
                &reader.session().actor(),
            )
            .detail(Value::Object(detail)),
        )
        .await?;
        Ok(())
    }
}

/// The wire form of a verification.
pub fn verification(report: &audit::VerifyReport) -> AuditVerification {
    AuditVerification {
        intact: report.intact(),
        checked: report.checked,
        checkpoints: report.checkpoints,
        first_problem: report.first_problem.as_ref().map(|p| AuditProblem {
            seq: p.seq,
            reason: p.reason,
            detail: p.detail.clone(),
        }),
    }
}

/// What an `audit_verified` entry records.
pub fn verified_detail(v: &AuditVerification) -> Value {
    json!({
        "intact": v.intact,
        "checked": v.checked,
        "checkpoints": v.checkpoints,
        "first_problem": v.first_problem.as_ref().map(|p| json!({
            "seq": p.seq,
            "reason": p.reason.as_str(),
        })),
    })
}

fn check(reader: &AuditReader, kind: ReportKind, q: &AuditQuery) -> Result<Checked> {
    let mut recorded = Map::new();
    let mut filter = ReportFilter {
        region_id: reader.region_id().to_string(),
        file_access_only: kind == ReportKind::FileAccess,
        ..Default::default()
    };
    if let Some(id) = &q.file_id {
        let id = uuid::Uuid::parse_str(id)
            .map_err(|_| DomainError::Invalid("file_id is not a file id".into()))?
            .to_string();
        recorded.insert("file_id".into(), id.clone().into());
        filter.file_id = Some(id);
    }
    if let Some(id) = q.user_id {
        recorded.insert("user_id".into(), id.to_string().into());
        filter.user_id = Some(id.to_string());
    }
    if let Some(id) = q.group_id {
        recorded.insert("group_id".into(), id.to_string().into());
        filter.group_id = Some(id.to_string());
    }
    if let Some(id) = q.organization_id {
        recorded.insert("organization_id".into(), id.to_string().into());
        filter.organization_id = Some(id.to_string());
    }
    if let Some(a) = &q.action {
        let action = Action::parse(a)
            .ok_or_else(|| DomainError::Invalid("action is not a known audit action".into()))?;
        if kind == ReportKind::FileAccess && !action.is_file_access() {
            return Err(DomainError::Invalid(
                "the file-access report has file_* actions only".into(),
            ));
        }
        recorded.insert("action".into(), action.as_str().into());
        filter.action = Some(action.as_str().to_owned());
    }
    if let Some(o) = &q.outcome {
        let outcome = Outcome::parse(o).ok_or_else(|| {
            DomainError::Invalid("outcome must be success, failure or denied".into())
        })?;
        recorded.insert("outcome".into(), outcome.as_str().into());
        filter.outcome = Some(outcome.as_str().to_owned());
    }
    if let Some(t) = &q.from {
        let ms = parse_time("from", t)?;
        recorded.insert("from_ms".into(), ms.into());
        filter.from_ms = Some(ms);
    }
    if let Some(t) = &q.to {
        let ms = parse_time("to", t)?;
        recorded.insert("to_ms".into(), ms.into());
        filter.to_ms = Some(ms);
    }
    let after_seq = match &q.cursor {
        Some(c) => {
            let seq = decode_cursor(c)?;
            recorded.insert("after_seq".into(), seq.into());
            seq
        }
        None => 0,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(DomainError::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(Checked {
        filter,
        after_seq,
        limit,
        recorded,
    })
}

/// RFC 3339 (any offset) or Unix milliseconds.
fn parse_time(field: &str, s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            DomainError::Invalid(format!(
                "{field} must be an RFC 3339 time (2026-11-24T14:03:05+09:00) or Unix milliseconds"
            ))
        })
}

/// The cursor is the chain position of the last entry of the page, in decimal: the
/// published contract can state its form (`^[0-9]{1,18}$`), and a position names nothing
/// the region filter does not already bound.
fn encode_cursor(seq: i64) -> String {
    seq.to_string()
}

fn decode_cursor(cursor: &str) -> Result<i64> {
    Some(cursor)
        .filter(|c| (1..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<i64>().ok())
        .ok_or_else(|| DomainError::Invalid("cursor is not one this server issued".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(1234)).unwrap(), 1234);
        for foreign in [
            "",
            "-1",
            "+5",
            "12a",
            "1234567890123456789",
            "YXVkaXQtc2VxOjE",
        ] {
            assert!(decode_cursor(foreign).is_err(), "{foreign}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_milliseconds() {
        assert_eq!(parse_time("from", "1000").unwrap(), 1000);
        assert_eq!(
            parse_time("from", "2026-11-24T14:03:05+09:00").unwrap(),
            1_795_496_585_000
        );
        assert_eq!(
            parse_time("from", "2026-11-24T05:03:05Z").unwrap(),
            1_795_496_585_000
        );
        assert!(parse_time("from", "yesterday").is_err());
    }
}
