//! The audit log: one append-only, hash-chained table for security events (and, later,
//! file access). Entries are written in the same transaction as the change they record
//! whenever there is one, so a committed change always has its entry.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::store::{Conn, Result, Store, Tx};

/// What happened. The string forms are stable: reports and scripts filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    TokenRefreshed,
    RefreshReuseDetected,
    SessionRevoked,
    PasswordChanged,
    PasswordReset,
    TotpEnrolled,
    TotpReset,
    RegionCreated,
    OrganizationCreated,
    OrganizationUpdated,
    UserCreated,
    UserUpdated,
    UserRoleChanged,
    UserDeactivated,
    UserReactivated,
    PolicyChanged,
    GroupCreated,
    GroupUpdated,
    GroupArchived,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    InvitationCreated,
    InvitationAccepted,
    ThreadCreated,
    ThreadMemberAdded,
    ThreadMemberRemoved,
    FileUploaded,
    FileMetadataViewed,
    FileDownloaded,
    FileDeleted,
    FileUpdated,
    FileAccessDenied,
    FileIntegrityFailed,
    KeyRotated,
    AuditReportExported,
    AuditVerified,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::LoginSucceeded => "login_succeeded",
            Action::LoginFailed => "login_failed",
            Action::LoginThrottled => "login_throttled",
            Action::TokenRefreshed => "token_refreshed",
            Action::RefreshReuseDetected => "refresh_reuse_detected",
            Action::SessionRevoked => "session_revoked",
            Action::PasswordChanged => "password_changed",
            Action::PasswordReset => "password_reset",
            Action::TotpEnrolled => "totp_enrolled",
            Action::TotpReset => "totp_reset",
            Action::RegionCreated => "region_created",
            Action::OrganizationCreated => "organization_created",
            Action::OrganizationUpdated => "organization_updated",
            Action::UserCreated => "user_created",
            Action::UserUpdated => "user_updated",
            Action::UserRoleChanged => "user_role_changed",
            Action::UserDeactivated => "user_deactivated",
            Action::UserReactivated => "user_reactivated",
            Action::PolicyChanged => "policy_changed",
            Action::GroupCreated => "group_created",
            Action::GroupUpdated => "group_updated",
            Action::GroupArchived => "group_archived",
            Action::MemberAdded => "member_added",
            Action::MemberRoleChanged => "member_role_changed",
            Action::MemberRemoved => "member_removed",
            Action::InvitationCreated => "invitation_created",
            Action::InvitationAccepted => "invitation_accepted",
            Action::ThreadCreated => "thread_created",
            Action::ThreadMemberAdded => "thread_member_added",
            Action::ThreadMemberRemoved => "thread_member_removed",
            Action::FileUploaded => "file_uploaded",
            Action::FileMetadataViewed => "file_metadata_viewed",
            Action::FileDownloaded => "file_downloaded",
            Action::FileDeleted => "file_deleted",
            Action::FileUpdated => "file_updated",
            Action::FileAccessDenied => "file_access_denied",
            Action::FileIntegrityFailed => "file_integrity_failed",
            Action::KeyRotated => "key_rotated",
            Action::AuditReportExported => "audit_report_exported",
            Action::AuditVerified => "audit_verified",
        }
    }
}

/// Whether the attempt went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Where a request came from; attached to every entry it causes.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Who did it. `None` fields mean "not known" (a failed login for an unknown id) or "the
/// operator at the shell".
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub region_id: Option<String>,
}

/// One entry to append. Ids only: no names, message text or patient data.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: Action,
    pub outcome: Outcome,
    pub actor: Actor,
    pub region_id: Option<String>,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<String>,
    pub group_id: Option<String>,
    pub file_id: Option<String>,
    pub detail: Value,
}

impl Event {
    pub fn new(action: Action, outcome: Outcome, actor: &Actor) -> Self {
        Event {
            action,
            outcome,
            region_id: actor.region_id.clone(),
            actor: actor.clone(),
            target_kind: None,
            target_id: None,
            group_id: None,
            file_id: None,
            detail: Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl Into<String>) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id.into());
        self
    }

    pub fn region(mut self, region_id: impl Into<String>) -> Self {
        self.region_id = Some(region_id.into());
        self
    }

    pub fn file(mut self, file_id: impl Into<String>) -> Self {
        self.file_id = Some(file_id.into());
        self
    }

    pub fn group(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Extra machine-readable facts (reason codes, changed field names). Never values
    /// that identify a patient.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored entry, as the chain hashes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntryRow {
    pub seq: i64,
    pub id: String,
    pub at_ms: i64,
    pub region_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub actor_org_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub group_id: Option<String>,
    pub file_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl EntryRow {
    /// SHA-256 over a canonical encoding: a JSON array of every field in a fixed order,
    /// the previous entry's hash included, so that changing, removing, inserting or
    /// reordering any entry breaks every hash after it.
    pub fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            1, // encoding version
            self.seq,
            self.id,
            self.at_ms,
            self.region_id,
            self.actor_user_id,
            self.actor_org_id,
            self.ip,
            self.user_agent,
            self.action,
            self.target_kind,
            self.target_id,
            self.group_id,
            self.file_id,
            self.outcome,
            self.request_id,
            self.detail,
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Appends `event` to the chain, inside the transaction of the change it records (so a
/// committed change always has its entry). The head row lock serialises writers so the
/// chain never forks; taking a transaction, not a bare connection, makes the three
/// statements one atomic step.
pub async fn append(tx: &mut Tx, meta: &RequestMeta, event: Event) -> Result<i64> {
    let conn: &mut Conn = tx;
    // Bumping the head first takes its write lock before anything is read.
    let (seq, prev_hash): (i64, String) = sqlx::query_as(
        "UPDATE audit_chain_head SET last_seq = last_seq + 1 WHERE id = 1 \
         RETURNING last_seq, last_hash",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut row = EntryRow {
        seq,
        id: uuid::Uuid::now_v7().to_string(),
        at_ms: now_ms(),
        region_id: event.region_id,
        actor_user_id: event.actor.user_id,
        actor_org_id: event.actor.organization_id,
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone().map(|ua| truncate(ua, 256)),
        action: event.action.as_str().to_owned(),
        target_kind: event.target_kind.map(str::to_owned),
        target_id: event.target_id,
        group_id: event.group_id,
        file_id: event.file_id,
        outcome: event.outcome.as_str().to_owned(),
        request_id: meta.request_id.clone(),
        detail: event.detail.to_string(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.compute_hash();
    sqlx::query(
        "INSERT INTO audit_events (seq, id, at_ms, region_id, actor_user_id, actor_org_id, ip, \
         user_agent, action, target_kind, target_id, group_id, file_id, outcome, request_id, \
         detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18)",
    )
    .bind(row.seq)
    .bind(&row.id)
    .bind(row.at_ms)
    .bind(&row.region_id)
    .bind(&row.actor_user_id)
    .bind(&row.actor_org_id)
    .bind(&row.ip)
    .bind(&row.user_agent)
    .bind(&row.action)
    .bind(&row.target_kind)
    .bind(&row.target_id)
    .bind(&row.group_id)
    .bind(&row.file_id)
    .bind(&row.outcome)
    .bind(&row.request_id)
    .bind(&row.detail)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_chain_head SET last_hash = $1 WHERE id = 1")
        .bind(&row.hash)
        .execute(&mut *conn)
        .await?;
    Ok(seq)
}

/// Appends an entry that records no other change (a failed login), in a transaction of
/// its own.
pub async fn append_alone(store: &Store, meta: &RequestMeta, event: Event) -> Result<i64> {
    let mut tx = store.begin().await?;
    let seq = append(&mut tx, meta, event).await?;
    tx.commit().await?;
    Ok(seq)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The first entry at which the chain breaks, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: &'static str,
}

/// Re-hashes the whole chain in `seq` order. Reads in pages so memory stays flat.
pub async fn verify(conn: &mut Conn) -> Result<(i64, Option<ChainBreak>)> {
    let mut expected_prev = "0".repeat(64);
    let mut expected_seq = 1_i64;
    let mut checked = 0_i64;
    loop {
        let page: Vec<EntryRow> = sqlx::query_as(
            "SELECT seq, id, at_ms, region_id, actor_user_id, actor_org_id, ip, user_agent, \
             action, target_kind, target_id, group_id, file_id, outcome, request_id, detail, \
             prev_hash, hash FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT 1000",
        )
        .bind(expected_seq)
        .fetch_all(&mut *conn)
        .await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if row.seq != expected_seq {
                return Ok((
                    checked,
                    Some(ChainBreak {
                        seq: expected_seq,
                        reason: "missing",
                    }),
                ));
            }
            if row.prev_hash != expected_prev {
                return Ok((
                    checked,
                    Some(ChainBreak {
                        seq: row.seq,
                        reason: "broken_link",
                    }),
                ));
            }
            if row.compute_hash() != row.hash {
                return Ok((
                    checked,
                    Some(ChainBreak {
                        seq: row.seq,
                        reason: "modified",
                    }),
                ));
            }
            expected_prev = row.hash;
            expected_seq += 1;
            checked += 1;
        }
    }
    let (last_seq, last_hash): (i64, String) =
        sqlx::query_as("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
    if last_seq != checked || last_hash != expected_prev {
        return Ok((
            checked,
            Some(ChainBreak {
                seq: checked + 1,
                reason: "truncated",
            }),
        ));
    }
    Ok((checked, None))
}
