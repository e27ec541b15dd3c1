//! `sessions` and `refresh_tokens`: one session per sign-in, a family of single-use
//! refresh tokens inside it. Only SHA-256 hashes of tokens are stored.

use super::{Conn, Result};

pub async fn insert_session(conn: &mut Conn, id: &str, user_id: &str, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_refresh_token(
    conn: &mut Conn,
    id: &str,
    session_id: &str,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(session_id)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a live refresh token used, atomically: of two concurrent refreshes with the same
/// token exactly one gets `Some(session_id)`.
pub async fn consume_refresh_token(
    conn: &mut Conn,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         AND session_id IN (SELECT id FROM sessions WHERE revoked_at IS NULL) \
         RETURNING session_id",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(s,)| s))
}

/// A refresh token whatever its state, for telling reuse apart from garbage.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenState {
    pub session_id: String,
    pub user_id: String,
    pub used_at: Option<i64>,
}

pub async fn find_refresh_token(
    conn: &mut Conn,
    token_hash: &str,
) -> Result<Option<RefreshTokenState>> {
    Ok(sqlx::query_as(
        "SELECT t.session_id, s.user_id, t.used_at FROM refresh_tokens t \
         JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?)
}

pub async fn session_user(conn: &mut Conn, session_id: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT user_id FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(u,)| u))
}

/// Revokes one session. Returns whether it was live.
pub async fn revoke_session(
    conn: &mut Conn,
    session_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(now)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live session of a user except `keep` (the caller's own, when a user
/// changes their password). Returns how many were revoked.
pub async fn revoke_user_sessions(
    conn: &mut Conn,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL AND ($4 IS NULL OR id <> $4)",
    )
    .bind(user_id)
    .bind(now)
    .bind(reason)
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Sessions revoked at or after `since` (ms): `(session_id, user_id, region_id)`.
pub async fn revoked_since(conn: &mut Conn, since: i64) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT s.id, s.user_id, u.region_id FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.revoked_at IS NOT NULL AND s.revoked_at >= $1",
    )
    .bind(since)
    .fetch_all(conn)
    .await?)
}
