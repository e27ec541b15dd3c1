//! `regions`: tenants and their security policy.

use sqlx::FromRow;
use tsunagu_protocol::accounts::DirectoryScope;

use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct RegionRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub mfa_required: i64,
    pub password_min_length: i64,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_file_bytes: i64,
    /// JSON array of allowed file kinds; `None` allows every kind.
    pub allowed_file_kinds: Option<String>,
    pub directory_scope: DirectoryScope,
}

const COLUMNS: &str = "id, slug, name, mfa_required, password_min_length, access_token_ttl_secs, \
                       refresh_token_ttl_secs, created_at, updated_at, max_file_bytes, allowed_file_kinds, \
                       directory_scope";

pub async fn insert(conn: &mut Conn, row: &RegionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO regions (id, slug, name, mfa_required, password_min_length, \
         access_token_ttl_secs, refresh_token_ttl_secs, created_at, updated_at, max_file_bytes, \
         allowed_file_kinds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id)
    .bind(&row.slug)
    .bind(&row.name)
    .bind(row.mfa_required)
    .bind(row.password_min_length)
    .bind(row.access_token_ttl_secs)
    .bind(row.refresh_token_ttl_secs)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.max_file_bytes)
    .bind(&row.allowed_file_kinds)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: &str) -> Result<Option<RegionRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM regions WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn get_by_slug(conn: &mut Conn, slug: &str) -> Result<Option<RegionRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM regions WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn count(conn: &mut Conn) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM regions")
        .fetch_one(conn)
        .await?;
    Ok(n)
}

pub async fn update_policy(conn: &mut Conn, row: &RegionRow) -> Result<()> {
    sqlx::query(
        "UPDATE regions SET mfa_required = $2, password_min_length = $3, \
         access_token_ttl_secs = $4, refresh_token_ttl_secs = $5, updated_at = $6, \
         max_file_bytes = $7, allowed_file_kinds = $8, directory_scope = $9 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(row.mfa_required)
    .bind(row.password_min_length)
    .bind(row.access_token_ttl_secs)
    .bind(row.refresh_token_ttl_secs)
    .bind(row.updated_at)
    .bind(row.max_file_bytes)
    .bind(&row.allowed_file_kinds)
    .bind(row.directory_scope)
    .execute(conn)
    .await?;
    Ok(())
}
