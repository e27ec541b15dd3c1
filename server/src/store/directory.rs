//! The directory of professionals and people's own profile lines (`user_profiles`).

use sqlx::FromRow;
use tsunagu_protocol::accounts::Profession;

use super::{Conn, Result};

/// A listed professional.
#[derive(Debug, Clone, FromRow)]
pub struct DirectoryRow {
    pub id: String,
    pub display_name: String,
    pub display_name_kana: Option<String>,
    pub profession: Profession,
    pub organization_id: Option<String>,
    pub organization_name: Option<String>,
    pub about: Option<String>,
}

/// The active people of a region who may be listed: never patients, family or apps.
pub async fn professionals(conn: &mut Conn, region_id: &str) -> Result<Vec<DirectoryRow>> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.display_name, u.display_name_kana, u.profession, u.organization_id, \
         o.name AS organization_name, p.about \
         FROM users u LEFT JOIN organizations o ON o.id = u.organization_id \
         LEFT JOIN user_profiles p ON p.user_id = u.id \
         WHERE u.region_id = $1 AND u.active = 1 AND u.kind = 'person' \
         AND u.profession NOT IN ('patient', 'family')",
    )
    .bind(region_id)
    .fetch_all(conn)
    .await?)
}

/// The people who share at least one group with `user_id`.
pub async fn group_peers(conn: &mut Conn, user_id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT other.user_id FROM group_members mine \
         JOIN group_members other ON other.group_id = mine.group_id \
         WHERE mine.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(u,)| u).collect())
}

pub async fn about(conn: &mut Conn, user_id: &str) -> Result<Option<String>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT about FROM user_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(a,)| a))
}

pub async fn set_about(
    conn: &mut Conn,
    user_id: &str,
    about: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO user_profiles (user_id, about, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET about = $2, updated_at = $3",
    )
    .bind(user_id)
    .bind(about)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
