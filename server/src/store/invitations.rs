//! `invitations` and `join_requests`.

use sqlx::FromRow;
use tsunagu_protocol::accounts::Profession;

use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct InvitationRow {
    pub id: String,
    pub group_id: String,
    pub code_hash: String,
    pub created_by: String,
    pub expires_at: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub requires_approval: i64,
    pub patient_side: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

pub async fn insert(conn: &mut Conn, row: &InvitationRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO invitations (id, group_id, code_hash, created_by, expires_at, max_uses, uses, \
         requires_approval, patient_side, revoked_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id)
    .bind(&row.group_id)
    .bind(&row.code_hash)
    .bind(&row.created_by)
    .bind(row.expires_at)
    .bind(row.max_uses)
    .bind(row.uses)
    .bind(row.requires_approval)
    .bind(row.patient_side)
    .bind(row.revoked_at)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Spends one use of a live invitation, atomically. `None` when the code is unknown,
/// expired, revoked or used up — indistinguishable on purpose.
pub async fn redeem(conn: &mut Conn, code_hash: &str, now: i64) -> Result<Option<InvitationRow>> {
    Ok(sqlx::query_as(
        "UPDATE invitations SET uses = uses + 1 WHERE code_hash = $1 AND revoked_at IS NULL \
         AND expires_at > $2 AND uses < max_uses \
         RETURNING id, group_id, code_hash, created_by, expires_at, max_uses, uses, requires_approval, \
         patient_side, revoked_at, created_at",
    )
    .bind(code_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

/// A group's invitations, newest first.
pub async fn list_for_group(conn: &mut Conn, group_id: &str) -> Result<Vec<InvitationRow>> {
    Ok(sqlx::query_as(
        "SELECT id, group_id, code_hash, created_by, expires_at, max_uses, uses, requires_approval, \
         patient_side, revoked_at, created_at FROM invitations WHERE group_id = $1 \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await?)
}

/// Revokes an invitation of the group; false when there is none (or it was revoked).
pub async fn revoke(conn: &mut Conn, group_id: &str, id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE invitations SET revoked_at = $3 WHERE group_id = $1 AND id = $2 \
         AND revoked_at IS NULL",
    )
    .bind(group_id)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn add_join_request(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
    invitation_id: &str,
    patient_side: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO join_requests (group_id, user_id, invitation_id, patient_side, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_id, user_id) DO NOTHING",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(invitation_id)
    .bind(super::flag(patient_side))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct JoinRequestRow {
    pub user_id: String,
    pub patient_side: i64,
    pub created_at: i64,
    pub display_name: String,
    pub profession: Profession,
}

pub async fn join_requests(conn: &mut Conn, group_id: &str) -> Result<Vec<JoinRequestRow>> {
    Ok(sqlx::query_as(
        "SELECT j.user_id, j.patient_side, j.created_at, u.display_name, u.profession FROM join_requests j \
         JOIN users u ON u.id = j.user_id WHERE j.group_id = $1 ORDER BY j.created_at",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await?)
}

/// Removes a pending request; returns it if there was one.
pub async fn take_join_request(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "DELETE FROM join_requests WHERE group_id = $1 AND user_id = $2 RETURNING patient_side",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(p,)| p))
}
