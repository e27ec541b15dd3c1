//! `audit_verify_jobs`: chain verifications run in the background for an administrator,
//! who polls them. One running job per region (a partial unique index). The node that
//! runs a job beats its heart in `updated_at`; a running job whose heart has stopped for
//! [`STALE_AFTER_MS`] (its node stopped or died) is marked failed (`interrupted`) by the
//! next look at the region's jobs, which frees the region for a new one.

use crate::store::{Conn, Result, StoreError};

/// How often the running node records progress.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// A running job not heard of for this long is taken as interrupted.
pub const STALE_AFTER_MS: i64 = 30_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub region_id: String,
    pub requested_by: Option<String>,
    pub state: String,
    pub checked: i64,
    pub total: i64,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, region_id, requested_by, state, checked, total, result, error, \
    created_at, updated_at, finished_at";

/// Marks the region's running jobs whose heart stopped before `now - STALE_AFTER_MS` as
/// failed (`interrupted`).
pub async fn expire_stale(conn: &mut Conn, region_id: &str, now: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE audit_verify_jobs SET state = 'failed', error = 'interrupted', \
         finished_at = $2, updated_at = $2 \
         WHERE region_id = $1 AND state = 'running' AND updated_at < $3",
    )
    .bind(region_id)
    .bind(now)
    .bind(now - STALE_AFTER_MS)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The region's running job, if any.
pub async fn running(conn: &mut Conn, region_id: &str) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_verify_jobs WHERE region_id = $1 AND state = 'running'"
    ))
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

/// Inserts a running job. `Err(StoreError::Conflict)` when the region already has one
/// (another node started it a moment ago).
pub async fn insert(conn: &mut Conn, row: &JobRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO audit_verify_jobs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&row.id)
    .bind(&row.region_id)
    .bind(&row.requested_by)
    .bind(&row.state)
    .bind(row.checked)
    .bind(row.total)
    .bind(&row.result)
    .bind(&row.error)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.finished_at)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(StoreError::from)
}

/// One job of the region (`None` for an unknown id or another region's).
pub async fn get(conn: &mut Conn, region_id: &str, id: &str) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_verify_jobs WHERE id = $1 AND region_id = $2"
    ))
    .bind(id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

/// Progress of a running job (and its heartbeat).
pub async fn progress(conn: &mut Conn, id: &str, checked: i64, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE audit_verify_jobs SET checked = $2, updated_at = $3 \
         WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(checked)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a running job: `done` with its result (JSON), or `failed` with why.
pub async fn finish(
    conn: &mut Conn,
    id: &str,
    checked: i64,
    outcome: std::result::Result<String, String>,
    now: i64,
) -> Result<bool> {
    let (state, result, error) = match outcome {
        Ok(result) => ("done", Some(result), None),
        Err(error) => ("failed", None, Some(error)),
    };
    let done = sqlx::query(
        "UPDATE audit_verify_jobs SET state = $2, checked = $3, result = $4, error = $5, \
         finished_at = $6, updated_at = $6 WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(state)
    .bind(checked)
    .bind(result)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
