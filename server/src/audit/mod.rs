//! The audit log: one append-only, hash-chained table for security events (and, later,
//! file access). Entries are written in the same transaction as the change they record
//! whenever there is one, so a committed change always has its entry.

pub mod checkpoint;
pub mod jobs;
pub mod report;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Connection;

pub use tsunagu_protocol::audit::AuditProblemReason as ProblemReason;

use crate::clock::now_ms;
use crate::store::{Backend, Conn, Result, Store, Tx};

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
    GroupRestored,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    InvitationCreated,
    InvitationAccepted,
    InvitationRevoked,
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
    JoinRequestRejected,
    ApiClientCreated,
    ApiClientUpdated,
    ApiClientDisabled,
    ApiClientSecretRotated,
    AppTokenIssued,
    AppTokenRefused,
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
            Action::GroupRestored => "group_restored",
            Action::MemberAdded => "member_added",
            Action::MemberRoleChanged => "member_role_changed",
            Action::MemberRemoved => "member_removed",
            Action::InvitationCreated => "invitation_created",
            Action::InvitationAccepted => "invitation_accepted",
            Action::InvitationRevoked => "invitation_revoked",
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
            Action::JoinRequestRejected => "join_request_rejected",
            Action::ApiClientCreated => "api_client_created",
            Action::ApiClientUpdated => "api_client_updated",
            Action::ApiClientDisabled => "api_client_disabled",
            Action::ApiClientSecretRotated => "api_client_secret_rotated",
            Action::AppTokenIssued => "app_token_issued",
            Action::AppTokenRefused => "app_token_refused",
        }
    }

    /// Every action, in declaration order.
    pub const ALL: &'static [Action] = &[
        Action::LoginSucceeded,
        Action::LoginFailed,
        Action::LoginThrottled,
        Action::TokenRefreshed,
        Action::RefreshReuseDetected,
        Action::SessionRevoked,
        Action::PasswordChanged,
        Action::PasswordReset,
        Action::TotpEnrolled,
        Action::TotpReset,
        Action::RegionCreated,
        Action::OrganizationCreated,
        Action::OrganizationUpdated,
        Action::UserCreated,
        Action::UserUpdated,
        Action::UserRoleChanged,
        Action::UserDeactivated,
        Action::UserReactivated,
        Action::PolicyChanged,
        Action::GroupCreated,
        Action::GroupUpdated,
        Action::GroupArchived,
        Action::GroupRestored,
        Action::MemberAdded,
        Action::MemberRoleChanged,
        Action::MemberRemoved,
        Action::InvitationCreated,
        Action::InvitationAccepted,
        Action::InvitationRevoked,
        Action::ThreadCreated,
        Action::ThreadMemberAdded,
        Action::ThreadMemberRemoved,
        Action::FileUploaded,
        Action::FileMetadataViewed,
        Action::FileDownloaded,
        Action::FileDeleted,
        Action::FileUpdated,
        Action::FileAccessDenied,
        Action::FileIntegrityFailed,
        Action::KeyRotated,
        Action::AuditReportExported,
        Action::AuditVerified,
        Action::JoinRequestRejected,
        Action::ApiClientCreated,
        Action::ApiClientUpdated,
        Action::ApiClientDisabled,
        Action::ApiClientSecretRotated,
        Action::AppTokenIssued,
        Action::AppTokenRefused,
    ];

    /// Parses the stored form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s)
    }

    /// File access (upload, view, download, delete, refusals): the `file-access` report.
    pub fn is_file_access(self) -> bool {
        self.as_str().starts_with("file_")
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

    /// Parses the stored form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Failure, Outcome::Denied]
            .into_iter()
            .find(|o| o.as_str() == s)
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
    append_many(tx, [(meta.clone(), event)]).await
}

/// Appends several entries in order, in the caller's transaction, with one chain-head
/// update and multi-row inserts: how a batch import (and the bench, which seeds a
/// million entries) extends the chain exactly as [`append`] would, entry by entry.
/// Returns the last entry's seq (the head's, unchanged, for no entries).
pub async fn append_many(
    tx: &mut Tx,
    entries: impl IntoIterator<Item = (RequestMeta, Event)>,
) -> Result<i64> {
    let conn: &mut Conn = tx;
    let entries: Vec<(RequestMeta, Event)> = entries.into_iter().collect();
    let n = entries.len() as i64;
    // Bumping the head first takes its write lock before anything is read.
    let (last, mut prev_hash): (i64, String) = sqlx::query_as(
        "UPDATE audit_chain_head SET last_seq = last_seq + $1 WHERE id = 1 \
         RETURNING last_seq, last_hash",
    )
    .bind(n)
    .fetch_one(&mut *conn)
    .await?;
    let mut rows = Vec::with_capacity(entries.len());
    for (i, (meta, event)) in entries.into_iter().enumerate() {
        let mut row = EntryRow {
            seq: last - n + 1 + i as i64,
            id: uuid::Uuid::now_v7().to_string(),
            at_ms: now_ms(),
            region_id: event.region_id,
            actor_user_id: event.actor.user_id,
            actor_org_id: event.actor.organization_id,
            ip: meta.ip,
            user_agent: meta.user_agent.map(|ua| truncate(ua, 256)),
            action: event.action.as_str().to_owned(),
            target_kind: event.target_kind.map(str::to_owned),
            target_id: event.target_id,
            group_id: event.group_id,
            file_id: event.file_id,
            outcome: event.outcome.as_str().to_owned(),
            request_id: meta.request_id,
            detail: event.detail.to_string(),
            prev_hash: std::mem::take(&mut prev_hash),
            hash: String::new(),
        };
        row.hash = row.compute_hash();
        prev_hash = row.hash.clone();
        rows.push(row);
    }
    // 18 parameters a row: 500 rows stay far below both backends' parameter limits.
    for chunk in rows.chunks(500) {
        let mut sql = format!("INSERT INTO audit_events ({ENTRY_COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let b = i * 18;
            let marks: Vec<String> = (1..=18).map(|k| format!("${}", b + k)).collect();
            sql.push_str(&format!("({})", marks.join(", ")));
        }
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = q
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
                .bind(&row.hash);
        }
        q.execute(&mut *conn).await?;
    }
    if !rows.is_empty() {
        sqlx::query("UPDATE audit_chain_head SET last_hash = $1 WHERE id = 1")
            .bind(&prev_hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(last)
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

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Every column of an entry, in [`EntryRow`] order.
const ENTRY_COLUMNS: &str = "seq, id, at_ms, region_id, actor_user_id, actor_org_id, ip, \
     user_agent, action, target_kind, target_id, group_id, file_id, outcome, request_id, \
     detail, prev_hash, hash";

/// Entries read per query while verifying: memory stays flat however long the chain.
const VERIFY_PAGE: i64 = 1000;

/// How far from its position a renumbered entry is looked for (telling "removed" from
/// "modified" when an entry's own hash no longer matches).
const RENUMBER_WINDOW: i64 = 1000;

/// The first entry at which the chain breaks, if any: the first entry that was
/// modified, removed, inserted or reordered, as far as the evidence tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: ProblemReason,
    /// A sentence for people (positions and hashes only, never names).
    pub detail: String,
}

impl ChainBreak {
    fn new(seq: i64, reason: ProblemReason, detail: impl Into<String>) -> Self {
        ChainBreak {
            seq,
            reason,
            detail: detail.into(),
        }
    }
}

/// The outcome of a full verification: chain and signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries verified before the first problem (all of them when intact).
    pub checked: i64,
    /// Checkpoints whose signature and hash verified.
    pub checkpoints: i64,
    pub first_problem: Option<ChainBreak>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// Re-hashes the whole chain in `seq` order and checks it against the chain head.
/// Reads in pages so memory stays flat. Does not look at checkpoints: see
/// [`verify_report`].
pub async fn verify(conn: &mut Conn) -> Result<(i64, Option<ChainBreak>)> {
    verify_with_progress(conn, &|_| {}).await
}

/// [`verify`], telling `progress` how many entries are verified after each page.
pub async fn verify_with_progress(
    conn: &mut Conn,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<(i64, Option<ChainBreak>)> {
    let (head_seq, head_hash): (i64, String) =
        sqlx::query_as("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut expected_seq = 1_i64;
    let mut checked = 0_i64;
    // Start below 1: a forged row at seq 0 or below is an insertion too.
    let mut after = i64::MIN;
    loop {
        let page: Vec<EntryRow> = sqlx::query_as(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(VERIFY_PAGE)
        .fetch_all(&mut *conn)
        .await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if let Some(problem) =
                check_entry(conn, &row, expected_seq, &expected_prev, head_seq).await?
            {
                // The problem may lie before this row (an insertion, a rewritten
                // predecessor): only the entries before it count as checked.
                return Ok((checked.min(problem.seq - 1).max(0), Some(problem)));
            }
            after = row.seq;
            expected_prev = row.hash;
            expected_seq += 1;
            checked += 1;
        }
        progress(checked);
    }
    if head_seq > checked {
        return Ok((
            checked,
            Some(ChainBreak::new(
                checked + 1,
                ProblemReason::Truncated,
                format!(
                    "the chain ends at seq {checked} but the server wrote up to seq {head_seq}: \
                     the entries after {checked} were removed"
                ),
            )),
        ));
    }
    if checked > 0 && head_hash != expected_prev {
        return Ok((
            checked - 1,
            Some(ChainBreak::new(
                checked,
                ProblemReason::Modified,
                "the last entry is not the one the server wrote (its hash differs from the chain head)",
            )),
        ));
    }
    Ok((checked, None))
}

/// Checks one entry against its expected position and predecessor; on a mismatch,
/// works out what most likely happened (this runs once, on the failure path only).
async fn check_entry(
    conn: &mut Conn,
    row: &EntryRow,
    expected_seq: i64,
    expected_prev: &str,
    head_seq: i64,
) -> Result<Option<ChainBreak>> {
    let e = expected_seq;
    if row.seq < e {
        return Ok(Some(ChainBreak::new(
            row.seq,
            ProblemReason::Inserted,
            format!(
                "an entry at seq {} lies before the start of the chain",
                row.seq
            ),
        )));
    }
    if row.seq > e {
        return Ok(Some(if e > head_seq {
            ChainBreak::new(
                row.seq,
                ProblemReason::Inserted,
                format!(
                    "seq {} lies beyond seq {head_seq}, the last entry the server wrote",
                    row.seq
                ),
            )
        } else {
            ChainBreak::new(
                e,
                ProblemReason::Missing,
                format!("entries {e} to {} are missing", row.seq - 1),
            )
        }));
    }
    if e > head_seq {
        return Ok(Some(ChainBreak::new(
            e,
            ProblemReason::Inserted,
            format!("seq {e} lies beyond seq {head_seq}, the last entry the server wrote"),
        )));
    }
    let self_consistent = row.compute_hash() == row.hash;
    if row.prev_hash == expected_prev {
        return Ok((!self_consistent).then(|| {
            ChainBreak::new(
                e,
                ProblemReason::Modified,
                format!("entry {e} no longer matches its hash"),
            )
        }));
    }
    // The link is broken. Where does this entry's prev_hash point?
    let linked: Option<(i64,)> =
        sqlx::query_as("SELECT seq FROM audit_events WHERE hash = $1 ORDER BY seq LIMIT 1")
            .bind(&row.prev_hash)
            .fetch_optional(&mut *conn)
            .await?;
    match linked {
        Some((j,)) if j >= e => {
            return Ok(Some(ChainBreak::new(
                e,
                ProblemReason::Reordered,
                format!("entry {e} follows entry {j}, which now comes after it"),
            )))
        }
        Some((j,)) if j < e - 1 => {
            return Ok(Some(ChainBreak::new(
                j + 1,
                ProblemReason::Inserted,
                format!(
                    "entry {e} follows entry {j}: the entries from {} to {} were inserted",
                    j + 1,
                    e - 1
                ),
            )))
        }
        Some(_) => {
            return Ok(Some(ChainBreak::new(
                e,
                ProblemReason::BrokenLink,
                format!("entry {e} does not link to its predecessor"),
            )))
        }
        None => {}
    }
    // Does another entry follow this entry's expected predecessor? Then this one is an
    // interloper.
    let follower: Option<(i64,)> = sqlx::query_as(
        "SELECT seq FROM audit_events WHERE prev_hash = $1 AND seq <> $2 ORDER BY seq LIMIT 1",
    )
    .bind(expected_prev)
    .bind(e)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((s,)) = follower {
        if s > e {
            return Ok(Some(ChainBreak::new(
                e,
                ProblemReason::Inserted,
                format!(
                    "entry {s} follows entry {}: the entries from {e} to {} were inserted",
                    e - 1,
                    s - 1
                ),
            )));
        }
    }
    if self_consistent {
        // This entry is as written; its predecessor was rewritten (hash recomputed).
        return Ok(Some(if e > 1 {
            ChainBreak::new(
                e - 1,
                ProblemReason::Modified,
                format!(
                    "entry {} is not the one entry {e} was chained to (rewritten with a new hash)",
                    e - 1
                ),
            )
        } else {
            ChainBreak::new(
                e,
                ProblemReason::BrokenLink,
                "the first entry does not start the chain",
            )
        }));
    }
    if let Some(original) = original_seq(row) {
        if original > e {
            return Ok(Some(ChainBreak::new(
                e,
                ProblemReason::Missing,
                format!(
                    "entry {e} was renumbered from seq {original}: {} entries before it were removed",
                    original - e
                ),
            )));
        }
        if original < e {
            return Ok(Some(ChainBreak::new(
                e,
                ProblemReason::Reordered,
                format!("entry {e} was renumbered from seq {original}"),
            )));
        }
    }
    Ok(Some(ChainBreak::new(
        e,
        ProblemReason::Modified,
        format!("entry {e} no longer matches its hash"),
    )))
}

/// The seq at which `row` (with everything else unchanged) hashes to its stored hash,
/// searched near its current position: the position it was moved from.
fn original_seq(row: &EntryRow) -> Option<i64> {
    let mut probe = row.clone();
    (1..=RENUMBER_WINDOW)
        .flat_map(|d| [row.seq + d, row.seq - d])
        .filter(|s| *s >= 1)
        .find(|s| {
            probe.seq = *s;
            probe.compute_hash() == row.hash
        })
}

/// Verifies the chain and every signed checkpoint, and reports the first problem (the
/// lowest seq) of either.
pub async fn verify_report(
    conn: &mut Conn,
    verifier: &checkpoint::CheckpointVerifier,
) -> Result<VerifyReport> {
    verify_report_with_progress(conn, verifier, &|_| {}).await
}

/// [`verify_report`] with progress (see [`verify_with_progress`]).
pub async fn verify_report_with_progress(
    conn: &mut Conn,
    verifier: &checkpoint::CheckpointVerifier,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<VerifyReport> {
    let (checked, chain_break) = verify_with_progress(conn, progress).await?;
    let (checkpoints, checkpoint_break) =
        checkpoint::verify_checkpoints(conn, verifier, checked, chain_break.as_ref()).await?;
    let first_problem = match (chain_break, checkpoint_break) {
        (Some(a), Some(b)) => Some(if b.seq < a.seq { b } else { a }),
        (a, b) => a.or(b),
    };
    let checked = match &first_problem {
        Some(p) => checked.min(p.seq - 1).max(0),
        None => checked,
    };
    Ok(VerifyReport {
        checked,
        checkpoints,
        first_problem,
    })
}

/// [`verify_report`] over one consistent snapshot of the database, so that entries
/// appended while it runs are neither half-seen nor mistaken for insertions. Does not
/// block writers.
pub async fn verify_store(
    store: &Store,
    verifier: &checkpoint::CheckpointVerifier,
) -> Result<VerifyReport> {
    verify_store_with_progress(store, verifier, &|_| {}).await
}

/// [`verify_store`] with progress (see [`verify_with_progress`]): what a verification
/// job runs.
pub async fn verify_store_with_progress(
    store: &Store,
    verifier: &checkpoint::CheckpointVerifier,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<VerifyReport> {
    // Keys rotated since start (on any node) are known before anything is checked.
    verifier.refresh();
    let mut conn = store.conn().await?;
    // A read-only snapshot: on SQLite (WAL) a deferred transaction reads one snapshot
    // from its first read on; PostgreSQL needs REPEATABLE READ for the same.
    let begin = match store.backend() {
        Backend::Sqlite => "BEGIN",
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    };
    let mut tx = (*conn).begin_with(begin).await?;
    let report = verify_report_with_progress(&mut tx, verifier, progress).await?;
    tx.rollback().await?;
    Ok(report)
}

/// Membership changes that narrow or widen what a user sees, recorded after `after_seq`:
/// `(seq, region_id, user_id)`. Every node reads them to reload the visibility of its
/// own sockets, so a removal reaches them even while the cluster bus is away.
pub async fn access_changes_after(
    conn: &mut Conn,
    after_seq: i64,
) -> Result<Vec<(i64, Option<String>, String)>> {
    Ok(sqlx::query_as(
        "SELECT seq, region_id, target_id FROM audit_events \
         WHERE seq > $1 AND outcome = 'success' AND target_kind = 'user' AND target_id IS NOT NULL \
         AND action IN ('member_removed', 'member_added', 'thread_member_removed', 'thread_member_added') \
         ORDER BY seq LIMIT 1000",
    )
    .bind(after_seq)
    .fetch_all(conn)
    .await?)
}

/// The newest audit seq (0 for an empty log).
pub async fn last_seq(conn: &mut Conn) -> Result<i64> {
    let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM audit_events")
        .fetch_one(conn)
        .await?;
    Ok(seq.unwrap_or(0))
}
