//! Audit reports and chain verification, for region administrators.

use serde::{Deserialize, Serialize};

/// One audit entry as a report shows it. Ids are strings as recorded (an audit log must
/// stay readable even if a row it names is gone); names are looked up at report time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Position in the chain: gap-free and increasing.
    pub seq: i64,
    pub id: String,
    /// Server time, RFC 3339 UTC.
    pub at: String,
    /// e.g. `login_succeeded`, `file_downloaded`, `audit_report_exported`.
    pub action: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_profession: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_organization_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Machine-readable facts (reason codes, changed field names).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// A page of a report (`format=json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Why verification stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditProblemReason {
    /// The entry's content no longer matches its hash (or what its successor recorded).
    Modified,
    /// The entry was removed.
    Missing,
    /// The entry was not written by the server.
    Inserted,
    /// The entry is not at its original position.
    Reordered,
    /// The entry does not link to its predecessor, for a reason not narrowed down.
    BrokenLink,
    /// Entries at the end of the chain were removed.
    Truncated,
    /// A signed checkpoint does not verify (bad signature or unknown key).
    BadCheckpoint,
}

impl AuditProblemReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditProblemReason::Modified => "modified",
            AuditProblemReason::Missing => "missing",
            AuditProblemReason::Inserted => "inserted",
            AuditProblemReason::Reordered => "reordered",
            AuditProblemReason::BrokenLink => "broken_link",
            AuditProblemReason::Truncated => "truncated",
            AuditProblemReason::BadCheckpoint => "bad_checkpoint",
        }
    }
}

impl std::fmt::Display for AuditProblemReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditProblem {
    /// The first entry (chain position) that was tampered with.
    pub seq: i64,
    pub reason: AuditProblemReason,
    /// A sentence for people.
    pub detail: String,
}

/// `GET /api/v1/admin/audit/verify`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// True when every entry and every checkpoint verifies.
    pub intact: bool,
    /// Entries verified before the first problem (all of them when intact).
    pub checked: i64,
    /// Signed checkpoints verified.
    pub checkpoints: i64,
    pub first_problem: Option<AuditProblem>,
}

/// Where an audit verification job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuditVerifyJobState {
    /// Verifying; `checked` grows towards `total`.
    Running,
    /// Finished: `result` holds the verification (intact or not).
    Done,
    /// Could not finish: `error` says why (`interrupted` when the server running it
    /// stopped). Start a new one.
    Failed,
}

/// `POST /api/v1/admin/audit/verify`, `GET /api/v1/admin/audit/verify/{job_id}`: a
/// verification of the whole audit chain running in the background, which the
/// administrator polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerifyJob {
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub id: String,
    pub state: AuditVerifyJobState,
    /// Entries verified so far.
    pub checked: i64,
    /// The chain's length when the job started.
    pub total: i64,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once done or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The verification, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<AuditVerification>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
