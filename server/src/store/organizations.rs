//! `organizations`: clinics, stations, pharmacies… always scoped by region.

use sqlx::FromRow;
use tsunagu_protocol::accounts::OrganizationKind;

use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct OrganizationRow {
    pub id: String,
    pub region_id: String,
    pub name: String,
    pub kind: OrganizationKind,
    pub active: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, region_id, name, kind, active, created_at, updated_at";

pub async fn insert(conn: &mut Conn, row: &OrganizationRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO organizations (id, region_id, name, kind, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(&row.region_id)
    .bind(&row.name)
    .bind(row.kind)
    .bind(row.active)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The organisation, only if it belongs to `region_id`: a region never sees another's.
pub async fn get_in_region(
    conn: &mut Conn,
    region_id: &str,
    id: &str,
) -> Result<Option<OrganizationRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE id = $1 AND region_id = $2"
    ))
    .bind(id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn list_in_region(
    conn: &mut Conn,
    region_id: &str,
    include_inactive: bool,
) -> Result<Vec<OrganizationRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE region_id = $1 AND (active = 1 OR $2 = 1) \
         ORDER BY name, id"
    ))
    .bind(region_id)
    .bind(super::flag(include_inactive))
    .fetch_all(conn)
    .await?)
}

pub async fn update(conn: &mut Conn, row: &OrganizationRow) -> Result<()> {
    sqlx::query(
        "UPDATE organizations SET name = $3, kind = $4, active = $5, updated_at = $6 \
         WHERE id = $1 AND region_id = $2",
    )
    .bind(&row.id)
    .bind(&row.region_id)
    .bind(&row.name)
    .bind(row.kind)
    .bind(row.active)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}
