//! Audit reports: filtered, paged reads of one region's entries with the names of the
//! people, organisations, groups and files they refer to, as JSON pages or as a CSV
//! export that streams with constant memory.
//!
//! The rules (who may pull which report, auditing the pull) live in
//! `domain::audit_reports`; this module only reads and formats.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use futures_util::Stream;
use tsunagu_protocol::audit::AuditEntry;

use crate::store::{Result, Store, StoreError};

/// The most entries one JSON page holds.
pub const MAX_LIMIT: i64 = 1000;
/// Entries per page when the caller does not say.
pub const DEFAULT_LIMIT: i64 = 100;
/// Entries read per query while exporting.
const EXPORT_PAGE: i64 = 1000;

/// UTF-8 byte-order mark: without it Japanese Excel reads a CSV as Shift_JIS.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The CSV header row.
pub const CSV_COLUMNS: &[&str] = &[
    "time_jst",
    "time_utc",
    "user",
    "organization",
    "profession",
    "group",
    "file",
    "action",
    "outcome",
    "ip",
    "request_id",
    "user_agent",
    "target_kind",
    "target_id",
    "user_id",
    "organization_id",
    "file_id",
    "group_id",
    "seq",
];

/// Which entries a report covers. Everything is ANDed; `region_id` is always set (a
/// region administrator sees their own region only).
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub region_id: String,
    /// Only file access (`file_*` actions).
    pub file_access_only: bool,
    pub file_id: Option<String>,
    /// The actor.
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    /// The actor's organisation at the time.
    pub organization_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Inclusive lower bound on the entry time (ms).
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on the entry time (ms).
    pub to_ms: Option<i64>,
    /// Entries with a seq up to this only (an export's snapshot of the chain).
    pub max_seq: Option<i64>,
}

/// One entry with the names it refers to, as stored now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub seq: i64,
    pub id: String,
    pub at_ms: i64,
    pub action: String,
    pub outcome: String,
    pub actor_user_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_profession: Option<String>,
    pub actor_org_id: Option<String>,
    pub actor_org_name: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub file_id: Option<String>,
    pub file_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub detail: String,
}

enum Arg {
    Text(String),
    Int(i64),
}

/// Entries matching `filter` with a seq greater than `after_seq`, oldest first.
pub async fn page(
    conn: &mut crate::store::Conn,
    filter: &ReportFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<ReportRow>> {
    // Names are joined only from the entry's own region: an id that somehow points
    // elsewhere shows no name rather than another region's.
    let mut sql = String::from(
        "SELECT e.seq, e.id, e.at_ms, e.action, e.outcome, e.actor_user_id, \
         u.display_name AS actor_name, u.profession AS actor_profession, \
         e.actor_org_id, o.name AS actor_org_name, e.target_kind, e.target_id, \
         e.group_id, g.name AS group_name, e.file_id, f.name AS file_name, \
         e.ip, e.user_agent, e.request_id, e.detail \
         FROM audit_events e \
         LEFT JOIN users u ON u.id = e.actor_user_id AND u.region_id = e.region_id \
         LEFT JOIN organizations o ON o.id = e.actor_org_id AND o.region_id = e.region_id \
         LEFT JOIN groups g ON g.id = e.group_id AND g.region_id = e.region_id \
         LEFT JOIN files f ON f.id = e.file_id AND f.region_id = e.region_id \
         WHERE e.region_id = $1 AND e.seq > $2",
    );
    let mut args = vec![Arg::Text(filter.region_id.clone()), Arg::Int(after_seq)];
    let mut push = |sql: &mut String, clause: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&format!(" AND {clause} ${}", args.len()));
    };
    if filter.file_access_only {
        sql.push_str(" AND substr(e.action, 1, 5) = 'file_'");
    }
    if let Some(v) = &filter.file_id {
        push(&mut sql, "e.file_id =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.user_id {
        push(&mut sql, "e.actor_user_id =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.group_id {
        push(&mut sql, "e.group_id =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.organization_id {
        push(&mut sql, "e.actor_org_id =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.action {
        push(&mut sql, "e.action =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.outcome {
        push(&mut sql, "e.outcome =", Arg::Text(v.clone()));
    }
    if let Some(v) = filter.from_ms {
        push(&mut sql, "e.at_ms >=", Arg::Int(v));
    }
    if let Some(v) = filter.to_ms {
        push(&mut sql, "e.at_ms <", Arg::Int(v));
    }
    if let Some(v) = filter.max_seq {
        push(&mut sql, "e.seq <=", Arg::Int(v));
    }
    args.push(Arg::Int(limit.max(1)));
    sql.push_str(&format!(" ORDER BY e.seq LIMIT ${}", args.len()));
    let mut query = sqlx::query_as::<_, ReportRow>(&sql);
    for arg in args {
        query = match arg {
            Arg::Text(s) => query.bind(s),
            Arg::Int(i) => query.bind(i),
        };
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// The last seq written so far: an export covers the chain up to here.
pub async fn head_seq(conn: &mut crate::store::Conn) -> Result<i64> {
    let (seq,): (i64,) = sqlx::query_as("SELECT last_seq FROM audit_chain_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    Ok(seq)
}

impl ReportRow {
    /// The wire form.
    pub fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            seq: self.seq,
            id: self.id.clone(),
            at: crate::clock::rfc3339(self.at_ms),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            actor_user_id: self.actor_user_id.clone(),
            actor_name: self.actor_name.clone(),
            actor_profession: self.actor_profession.clone(),
            actor_organization_id: self.actor_org_id.clone(),
            actor_organization_name: self.actor_org_name.clone(),
            target_kind: self.target_kind.clone(),
            target_id: self.target_id.clone(),
            group_id: self.group_id.clone(),
            group_name: self.group_name.clone(),
            file_id: self.file_id.clone(),
            file_name: self.file_name.clone(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
            detail: serde_json::from_str(&self.detail)
                .unwrap_or(serde_json::Value::String(self.detail.clone())),
        }
    }

    /// The CSV record, in [`CSV_COLUMNS`] order.
    fn csv_record(&self) -> [String; 19] {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            jst(self.at_ms),
            crate::clock::rfc3339(self.at_ms),
            o(&self.actor_name),
            o(&self.actor_org_name),
            o(&self.actor_profession),
            o(&self.group_name),
            o(&self.file_name),
            self.action.clone(),
            self.outcome.clone(),
            o(&self.ip),
            o(&self.request_id),
            o(&self.user_agent),
            o(&self.target_kind),
            o(&self.target_id),
            o(&self.actor_user_id),
            o(&self.actor_org_id),
            o(&self.file_id),
            o(&self.group_id),
            self.seq.to_string(),
        ]
    }
}

/// `2026-11-24 14:03:05 JST` (Japan has no daylight saving time: always UTC+9).
pub fn jst(ms: i64) -> String {
    let offset = FixedOffset::east_opt(9 * 3600).expect("UTC+9 is a valid offset");
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S JST")
        .to_string()
}

/// A cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a leading
/// tab or carriage return) gets a leading `'`, so it shows as the text it is.
pub fn defuse_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new())
}

fn csv_bytes<'a, I>(records: I) -> Result<Bytes>
where
    I: IntoIterator<Item = Vec<std::borrow::Cow<'a, str>>>,
{
    let mut w = csv_writer();
    for record in records {
        w.write_record(record.iter().map(|c| c.as_bytes()))
            .map_err(|e| StoreError::Corrupt(format!("csv: {e}")))?;
    }
    let buf = w
        .into_inner()
        .map_err(|e| StoreError::Corrupt(format!("csv: {e}")))?;
    Ok(Bytes::from(buf))
}

/// The BOM and the header row.
pub fn csv_head() -> Bytes {
    let mut head = BOM.to_vec();
    let header = csv_bytes([CSV_COLUMNS.iter().map(|c| (*c).into()).collect()]).unwrap_or_default();
    head.extend_from_slice(&header);
    Bytes::from(head)
}

/// Rows as CSV lines.
pub fn csv_rows(rows: &[ReportRow]) -> Result<Bytes> {
    let records: Vec<[String; 19]> = rows.iter().map(ReportRow::csv_record).collect();
    csv_bytes(
        records
            .iter()
            .map(|r| r.iter().map(|c| defuse_formula(c)).collect::<Vec<_>>()),
    )
}

/// The whole filtered report as CSV: BOM, header, then pages of [`EXPORT_PAGE`] rows
/// fetched one after the other by seq, each on a connection taken for that page only,
/// so memory stays flat and a slow reader holds no database connection.
pub fn csv_stream(
    store: Store,
    filter: ReportFilter,
) -> impl Stream<Item = std::result::Result<Bytes, StoreError>> + Send + 'static {
    async_stream::try_stream! {
        yield csv_head();
        let mut after = 0_i64;
        loop {
            let rows = {
                let mut conn = store.conn().await?;
                page(&mut conn, &filter, after, EXPORT_PAGE).await?
            };
            let Some(last) = rows.last() else { break };
            after = last.seq;
            let full = rows.len() as i64 == EXPORT_PAGE;
            yield csv_rows(&rows)?;
            if !full {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jst_is_utc_plus_nine() {
        // 2026-11-24T05:03:05Z
        let ms = 1_795_496_585_000;
        assert_eq!(crate::clock::rfc3339(ms), "2026-11-24T05:03:05.000Z");
        assert_eq!(jst(ms), "2026-11-24 14:03:05 JST");
    }

    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(defuse_formula("=1+1"), "'=1+1");
        assert_eq!(defuse_formula("+81"), "'+81");
        assert_eq!(defuse_formula("-x"), "'-x");
        assert_eq!(defuse_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse_formula("看護師"), "看護師");
        assert_eq!(defuse_formula(""), "");
    }

    #[test]
    fn csv_quotes_commas_and_quotes_and_ends_lines_with_crlf() {
        let bytes = csv_bytes([vec!["a,b".into(), "say \"hi\"".into(), "x".into()]]).unwrap();
        assert_eq!(&bytes[..], b"\"a,b\",\"say \"\"hi\"\"\",x\r\n");
        assert!(csv_head().starts_with(BOM));
        assert!(csv_head().ends_with(b"seq\r\n"));
    }
}
