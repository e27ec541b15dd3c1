//! `api_clients`, `api_client_secrets`, `oauth_assertions`: third-party apps, their
//! hashed secrets and the `private_key_jwt` assertions already used. Never deleted:
//! disabling keeps the audit trail and the app account meaningful.

use sqlx::FromRow;

use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct ApiClientRow {
    pub id: String,
    pub region_id: String,
    pub user_id: String,
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub scopes: String,
    pub jwks: Option<String>,
    pub requests_per_minute: Option<i64>,
    pub active: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled_at: Option<i64>,
}

const COLUMNS: &str = "id, region_id, user_id, client_id, name, description, scopes, jwks, \
    requests_per_minute, active, created_by, created_at, updated_at, disabled_at";

pub async fn insert(conn: &mut Conn, row: &ApiClientRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO api_clients ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&row.id)
    .bind(&row.region_id)
    .bind(&row.user_id)
    .bind(&row.client_id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.scopes)
    .bind(&row.jwks)
    .bind(row.requests_per_minute)
    .bind(row.active)
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.disabled_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The client, only if it belongs to `region_id`.
pub async fn get_in_region(
    conn: &mut Conn,
    region_id: &str,
    id: &str,
) -> Result<Option<ApiClientRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_clients WHERE id = $1 AND region_id = $2"
    ))
    .bind(id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

/// The client an app authenticates as, by its public `client_id`.
pub async fn find_by_client_id(conn: &mut Conn, client_id: &str) -> Result<Option<ApiClientRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_clients WHERE client_id = $1"
    ))
    .bind(client_id)
    .fetch_optional(conn)
    .await?)
}

/// The client whose app account is `user_id`.
pub async fn find_by_user(conn: &mut Conn, user_id: &str) -> Result<Option<ApiClientRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_clients WHERE user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn list_in_region(conn: &mut Conn, region_id: &str) -> Result<Vec<ApiClientRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_clients WHERE region_id = $1 ORDER BY created_at, id"
    ))
    .bind(region_id)
    .fetch_all(conn)
    .await?)
}

/// Writes the administrator-editable fields and the enabled state.
pub async fn update(conn: &mut Conn, row: &ApiClientRow) -> Result<()> {
    sqlx::query(
        "UPDATE api_clients SET name = $2, description = $3, scopes = $4, jwks = $5, \
         requests_per_minute = $6, active = $7, updated_at = $8, disabled_at = $9 \
         WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.scopes)
    .bind(&row.jwks)
    .bind(row.requests_per_minute)
    .bind(row.active)
    .bind(row.updated_at)
    .bind(row.disabled_at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct SecretRow {
    pub id: String,
    pub api_client_id: String,
    pub secret_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

pub async fn insert_secret(conn: &mut Conn, row: &SecretRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_client_secrets (id, api_client_id, secret_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&row.id)
    .bind(&row.api_client_id)
    .bind(&row.secret_hash)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The secrets of a client that still work at `now`, newest first.
pub async fn live_secrets(
    conn: &mut Conn,
    api_client_id: &str,
    now: i64,
) -> Result<Vec<SecretRow>> {
    Ok(sqlx::query_as(
        "SELECT id, api_client_id, secret_hash, created_at, expires_at FROM api_client_secrets \
         WHERE api_client_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(api_client_id)
    .bind(now)
    .fetch_all(conn)
    .await?)
}

/// Gives every secret of the client that has no expiry (or a later one) the expiry
/// `expires_at`: the step before a new secret is added.
pub async fn expire_secrets(conn: &mut Conn, api_client_id: &str, expires_at: i64) -> Result<()> {
    sqlx::query(
        "UPDATE api_client_secrets SET expires_at = $2 \
         WHERE api_client_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(api_client_id)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a `private_key_jwt` assertion's `jti`. False when it was already used: a
/// replay.
pub async fn record_assertion(
    conn: &mut Conn,
    api_client_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool> {
    match sqlx::query(
        "INSERT INTO oauth_assertions (api_client_id, jti, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(api_client_id)
    .bind(jti)
    .bind(expires_at)
    .execute(conn)
    .await
    {
        Ok(_) => Ok(true),
        Err(e) => match super::StoreError::from(e) {
            super::StoreError::Conflict => Ok(false),
            other => Err(other),
        },
    }
}

/// Forgets used assertions that expired before `before` (they can no longer be
/// replayed: an expired assertion is refused anyway).
pub async fn prune_assertions(conn: &mut Conn, before: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM oauth_assertions WHERE expires_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
