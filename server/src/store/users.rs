//! `users`: people who sign in. Never hard-deleted; deactivation keeps the audit trail
//! meaningful.

use sqlx::FromRow;
use tsunagu_protocol::accounts::{Profession, UserKind, UserRole};

use super::{flag, Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub region_id: String,
    pub login: String,
    pub login_key: String,
    pub display_name: String,
    pub display_name_kana: Option<String>,
    pub profession: Profession,
    pub organization_id: Option<String>,
    pub role: UserRole,
    pub kind: UserKind,
    pub password_hash: String,
    pub must_change_password: i64,
    pub active: i64,
    pub totp_secret: Option<String>,
    pub totp_enabled: i64,
    pub totp_last_step: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, region_id, login, login_key, display_name, display_name_kana, \
    profession, organization_id, role, kind, password_hash, must_change_password, active, \
    totp_secret, totp_enabled, totp_last_step, created_at, updated_at";

pub async fn insert(conn: &mut Conn, row: &UserRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO users ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    ))
    .bind(&row.id)
    .bind(&row.region_id)
    .bind(&row.login)
    .bind(&row.login_key)
    .bind(&row.display_name)
    .bind(&row.display_name_kana)
    .bind(row.profession)
    .bind(&row.organization_id)
    .bind(row.role)
    .bind(row.kind)
    .bind(&row.password_hash)
    .bind(row.must_change_password)
    .bind(row.active)
    .bind(&row.totp_secret)
    .bind(row.totp_enabled)
    .bind(row.totp_last_step)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<UserRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// The user, only if they belong to `region_id`.
pub async fn get_in_region(conn: &mut Conn, region_id: &str, id: &str) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1 AND region_id = $2"
    ))
    .bind(id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn find_by_login_key(conn: &mut Conn, login_key: &str) -> Result<Option<UserRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE login_key = $1"))
            .bind(login_key)
            .fetch_optional(conn)
            .await?,
    )
}

/// Filters for the administrators' user list.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub include_inactive: bool,
    pub organization_id: Option<String>,
}

pub async fn list_in_region(
    conn: &mut Conn,
    region_id: &str,
    filter: &UserFilter,
) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE region_id = $1 AND (active = 1 OR $2 = 1) \
         AND ($3 IS NULL OR organization_id = $3) ORDER BY login_key"
    ))
    .bind(region_id)
    .bind(flag(filter.include_inactive))
    .bind(&filter.organization_id)
    .fetch_all(conn)
    .await?)
}

/// Writes the administrator-editable fields.
pub async fn update_profile(conn: &mut Conn, row: &UserRow) -> Result<()> {
    sqlx::query(
        "UPDATE users SET display_name = $2, display_name_kana = $3, profession = $4, \
         organization_id = $5, role = $6, updated_at = $7 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.display_name)
    .bind(&row.display_name_kana)
    .bind(row.profession)
    .bind(&row.organization_id)
    .bind(row.role)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_active(conn: &mut Conn, id: &str, active: bool, now: i64) -> Result<()> {
    sqlx::query("UPDATE users SET active = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(flag(active))
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_password(
    conn: &mut Conn,
    id: &str,
    password_hash: &str,
    must_change: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE users SET password_hash = $2, must_change_password = $3, updated_at = $4 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .bind(flag(must_change))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a (pending or active) TOTP secret, or clears it with `None`.
pub async fn set_totp(
    conn: &mut Conn,
    id: &str,
    secret: Option<&str>,
    enabled: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE users SET totp_secret = $2, totp_enabled = $3, totp_last_step = 0, \
         updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(secret)
    .bind(flag(enabled))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the TOTP code of time step `step` was used. Returns false when that
/// step (or a later one) was already used: a replayed code.
pub async fn advance_totp_step(conn: &mut Conn, id: &str, step: i64) -> Result<bool> {
    let done =
        sqlx::query("UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2")
            .bind(id)
            .bind(step)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn count(conn: &mut Conn) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(conn)
        .await?;
    Ok(n)
}

pub async fn count_active_admins(conn: &mut Conn, region_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM users WHERE region_id = $1 AND role = 'region_admin' AND active = 1",
    )
    .bind(region_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// What every authenticated request needs to know, read in one round trip: the user,
/// whether their session is still live, and whether their region demands MFA.
#[derive(Debug, Clone, FromRow)]
pub struct AuthRow {
    pub id: String,
    pub region_id: String,
    pub organization_id: Option<String>,
    pub role: UserRole,
    pub active: i64,
    pub must_change_password: i64,
    pub totp_enabled: i64,
    pub mfa_required: i64,
    pub kind: UserKind,
    /// For an app account: its client's id, granted scopes and rate, if it is active.
    pub client_id: Option<String>,
    pub client_scopes: Option<String>,
    pub client_rpm: Option<i64>,
}

pub async fn auth_context(
    conn: &mut Conn,
    session_id: &str,
    user_id: &str,
) -> Result<Option<AuthRow>> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.region_id, u.organization_id, u.role, u.active, u.must_change_password, \
         u.totp_enabled, r.mfa_required, u.kind, c.id AS client_id, c.scopes AS client_scopes, \
         c.requests_per_minute AS client_rpm \
         FROM sessions s JOIN users u ON u.id = s.user_id JOIN regions r ON r.id = u.region_id \
         LEFT JOIN api_clients c ON c.user_id = u.id AND c.active = 1 \
         WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}
