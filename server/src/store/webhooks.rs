//! `webhooks` and their outbox, `webhook_deliveries` (migration 0009).
//!
//! The outbox is claimed with a lease column rather than `FOR UPDATE SKIP LOCKED`, so
//! one query text serves both databases: a conditional `UPDATE` takes a row only if
//! nobody holds an unexpired claim on it, and of two nodes racing for it exactly one
//! changes it.

use sqlx::FromRow;

use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub api_client_id: String,
    pub region_id: String,
    pub url: String,
    pub events: String,
    pub secret_wrapped: String,
    pub secret_kek_id: String,
    pub active: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const WEBHOOK_COLUMNS: &str = "w.id, w.api_client_id, w.region_id, w.url, w.events, \
     w.secret_wrapped, w.secret_kek_id, w.active, w.created_by, w.created_at, w.updated_at";

/// An API client as webhooks need it: its region, app account and whether it is on.
#[derive(Debug, Clone, FromRow)]
pub struct ClientRow {
    pub id: String,
    pub region_id: String,
    pub user_id: String,
    pub active: i64,
}

/// The API client `id` if it belongs to `region_id`.
pub async fn client_in_region(
    conn: &mut Conn,
    region_id: &str,
    id: &str,
) -> Result<Option<ClientRow>> {
    Ok(sqlx::query_as::<_, ClientRow>(
        "SELECT id, region_id, user_id, active FROM api_clients WHERE id = $1 AND region_id = $2",
    )
    .bind(id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(conn: &mut Conn, row: &WebhookRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, api_client_id, region_id, url, events, secret_wrapped, \
         secret_kek_id, active, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id)
    .bind(&row.api_client_id)
    .bind(&row.region_id)
    .bind(&row.url)
    .bind(&row.events)
    .bind(&row.secret_wrapped)
    .bind(&row.secret_kek_id)
    .bind(row.active)
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// `(id, kek_id, wrapped)` of up to `limit` webhook secrets not wrapped by `kek_id`.
pub async fn secrets_not_wrapped_by(
    conn: &mut Conn,
    kek_id: &str,
    limit: i64,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, secret_kek_id, secret_wrapped FROM webhooks WHERE secret_kek_id <> $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(kek_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Replaces a wrapped secret if it is still wrapped by `old_kek`.
pub async fn rewrap_secret(
    conn: &mut Conn,
    id: &str,
    old_kek: &str,
    kek: &str,
    wrapped: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE webhooks SET secret_kek_id = $3, secret_wrapped = $4 \
         WHERE id = $1 AND secret_kek_id = $2",
    )
    .bind(id)
    .bind(old_kek)
    .bind(kek)
    .bind(wrapped)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Webhook `id` of API client `client_id`, if the client is in `region_id`.
pub async fn get_in_region(
    conn: &mut Conn,
    region_id: &str,
    client_id: &str,
    id: &str,
) -> Result<Option<WebhookRow>> {
    Ok(sqlx::query_as::<_, WebhookRow>(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w \
         WHERE w.id = $1 AND w.api_client_id = $2 AND w.region_id = $3"
    ))
    .bind(id)
    .bind(client_id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn list_for_client(conn: &mut Conn, client_id: &str) -> Result<Vec<WebhookRow>> {
    Ok(sqlx::query_as::<_, WebhookRow>(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.api_client_id = $1 \
         ORDER BY w.created_at, w.id"
    ))
    .bind(client_id)
    .fetch_all(conn)
    .await?)
}

/// Saves url, events and active; `false` if the webhook is gone.
pub async fn update(conn: &mut Conn, row: &WebhookRow) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE webhooks SET url = $2, events = $3, active = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.url)
    .bind(&row.events)
    .bind(row.active)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a webhook with its whole outbox; `false` if it was already gone.
pub async fn delete(conn: &mut Conn, id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `region_id` has any active webhook (most regions have none: the outbox
/// then costs a posting transaction this one indexed probe).
pub async fn region_has_active(conn: &mut Conn, region_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM (SELECT 1 FROM webhooks WHERE region_id = $1 AND active = 1 \
         LIMIT 1) x",
    )
    .bind(region_id)
    .fetch_one(conn)
    .await?
        > 0)
}

/// The active webhooks of `region_id` whose app account is in the audience of
/// `thread_id` right now (THE audience rule: the `thread_audience` view), with the
/// events each subscribes to. An app is never in a 内緒話's audience, so a private
/// thread finds none. Sorted by id: the order their rows are locked in.
pub async fn in_audience(
    conn: &mut Conn,
    region_id: &str,
    thread_id: &str,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as::<_, (String, String)>(
        "SELECT w.id, w.events FROM webhooks w \
         JOIN api_clients c ON c.id = w.api_client_id \
         JOIN users u ON u.id = c.user_id \
         WHERE w.region_id = $1 AND w.active = 1 AND c.active = 1 AND u.active = 1 \
           AND EXISTS (SELECT 1 FROM thread_audience a \
                       WHERE a.thread_id = $2 AND a.user_id = c.user_id AND a.region_id = $1) \
         ORDER BY w.id",
    )
    .bind(region_id)
    .bind(thread_id)
    .fetch_all(conn)
    .await?)
}

/// The main timeline of a group (group events are judged by its audience).
pub async fn main_thread(conn: &mut Conn, group_id: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT main_thread_id FROM groups WHERE id = $1")
            .bind(group_id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Takes `n` positions in a webhook's queue; returns the first. The row lock this
/// takes (until commit) is what orders a webhook's deliveries by commit.
pub async fn take_seqs(conn: &mut Conn, webhook_id: &str, n: i64) -> Result<i64> {
    let last: i64 = sqlx::query_scalar(
        "UPDATE webhooks SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq",
    )
    .bind(webhook_id)
    .bind(n)
    .fetch_one(conn)
    .await?;
    Ok(last - n + 1)
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub webhook_id: String,
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub thread_id: Option<String>,
    pub payload: String,
    pub redelivery_of: Option<String>,
    pub created_at: i64,
}

/// Inserts outbox rows, several per statement.
pub async fn insert_deliveries(conn: &mut Conn, rows: &[NewDelivery]) -> Result<()> {
    const PER_STATEMENT: usize = 50;
    for chunk in rows.chunks(PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO webhook_deliveries (id, webhook_id, seq, event_id, event_type, \
             thread_id, payload, redelivery_of, status, attempts, next_attempt_at, created_at) \
             VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 9;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'pending', 0, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 9
            ));
        }
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(&r.webhook_id)
                .bind(r.seq)
                .bind(&r.event_id)
                .bind(&r.event_type)
                .bind(&r.thread_id)
                .bind(&r.payload)
                .bind(&r.redelivery_of)
                .bind(r.created_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The head of each active webhook's queue (its lowest pending `seq`) that is due and
/// unclaimed, oldest due first, at most `limit`. One head per webhook is what keeps a
/// webhook to one delivery in flight: the rows behind it are never claimable.
pub async fn due_heads(conn: &mut Conn, now: i64, limit: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar::<_, String>(
        "SELECT d.id FROM webhooks w \
         JOIN webhook_deliveries d ON d.webhook_id = w.id AND d.seq = \
           (SELECT MIN(h.seq) FROM webhook_deliveries h \
            WHERE h.webhook_id = w.id AND h.status = 'pending') \
         WHERE w.active = 1 AND d.status = 'pending' AND d.next_attempt_at <= $1 \
           AND (d.lease_until IS NULL OR d.lease_until <= $1) \
         ORDER BY d.next_attempt_at, d.webhook_id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// A claimed delivery with what sending it needs.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub thread_id: Option<String>,
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
}

/// Claims a delivery until `lease_until`, counting the attempt; `None` if another
/// worker holds it or it is no longer pending.
pub async fn claim(
    conn: &mut Conn,
    id: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Claimed>> {
    Ok(sqlx::query_as::<_, Claimed>(
        "UPDATE webhook_deliveries SET lease_until = $3, attempts = attempts + 1 \
         WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $2 \
           AND (lease_until IS NULL OR lease_until <= $2) \
         RETURNING id, webhook_id, event_id, thread_id, payload, attempts, created_at",
    )
    .bind(id)
    .bind(now)
    .bind(lease_until)
    .fetch_optional(conn)
    .await?)
}

/// The webhook of a claimed delivery and its app account (active or not).
pub async fn for_delivery(
    conn: &mut Conn,
    webhook_id: &str,
) -> Result<Option<(WebhookRow, String, i64)>> {
    #[derive(FromRow)]
    struct Joined {
        #[sqlx(flatten)]
        webhook: WebhookRow,
        app_user_id: String,
        client_active: i64,
    }
    Ok(sqlx::query_as::<_, Joined>(&format!(
        "SELECT {WEBHOOK_COLUMNS}, c.user_id AS app_user_id, \
         (c.active * u.active) AS client_active \
         FROM webhooks w JOIN api_clients c ON c.id = w.api_client_id \
         JOIN users u ON u.id = c.user_id WHERE w.id = $1"
    ))
    .bind(webhook_id)
    .fetch_optional(conn)
    .await?
    .map(|j| (j.webhook, j.app_user_id, j.client_active)))
}

/// Whether `user_id` is in the audience of `thread_id` now.
pub async fn sees_thread(conn: &mut Conn, thread_id: &str, user_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM thread_audience WHERE thread_id = $1 AND user_id = $2",
    )
    .bind(thread_id)
    .bind(user_id)
    .fetch_one(conn)
    .await?
        > 0)
}

/// How an attempt ended.
pub enum Outcome<'a> {
    Delivered {
        status: i64,
    },
    Retry {
        next_attempt_at: i64,
        status: Option<i64>,
        error: &'a str,
    },
    Dead {
        status: Option<i64>,
        error: &'a str,
    },
}

/// Records an attempt's outcome and releases the claim.
pub async fn finish(
    conn: &mut Conn,
    id: &str,
    now: i64,
    latency_ms: i64,
    outcome: Outcome<'_>,
) -> Result<()> {
    let (status, next, last_status, error, delivered_at) = match outcome {
        Outcome::Delivered { status } => ("delivered", now, Some(status), None, Some(now)),
        Outcome::Retry {
            next_attempt_at,
            status,
            error,
        } => ("pending", next_attempt_at, status, Some(error), None),
        Outcome::Dead { status, error } => ("dead", now, status, Some(error), None),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, next_attempt_at = $3, last_status = $4, \
         last_error = $5, latency_ms = $6, delivered_at = $7, lease_until = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(next)
    .bind(last_status)
    .bind(error)
    .bind(latency_ms)
    .bind(delivered_at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub thread_id: Option<String>,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub latency_ms: Option<i64>,
    pub redelivery_of: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, seq, event_id, event_type, thread_id, payload, \
     status, attempts, next_attempt_at, last_status, last_error, latency_ms, redelivery_of, \
     created_at, delivered_at";

/// A webhook's deliveries, newest first, optionally of one status and before a `seq`.
pub async fn list_deliveries(
    conn: &mut Conn,
    webhook_id: &str,
    status: Option<&str>,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
         WHERE webhook_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR seq < $3) \
         ORDER BY seq DESC LIMIT $4"
    ))
    .bind(webhook_id)
    .bind(status)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn get_delivery(
    conn: &mut Conn,
    webhook_id: &str,
    id: &str,
) -> Result<Option<DeliveryRow>> {
    Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND webhook_id = $2"
    ))
    .bind(id)
    .bind(webhook_id)
    .fetch_optional(conn)
    .await?)
}

/// Removes up to `limit` finished (delivered or dead) deliveries created before
/// `before`; returns how many.
pub async fn purge_finished(conn: &mut Conn, before: i64, limit: i64) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
         WHERE status <> 'pending' AND created_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await?
    .rows_affected())
}
