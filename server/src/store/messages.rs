//! `messages`, `message_edits` and `reactions`.

use sqlx::FromRow;

use super::scope::Viewer;
use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct MessageRow {
    pub id: String,
    pub thread_id: String,
    pub seq: i64,
    pub author_id: String,
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<String>,
    pub mentions: String,
    pub attachments: String,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

impl MessageRow {
    /// The attached file ids (stored as a JSON list).
    pub fn attachments_list(&self) -> Vec<String> {
        serde_json::from_str(&self.attachments).unwrap_or_default()
    }
}

const COLUMNS: &str =
    "id, thread_id, seq, author_id, client_msg_id, body, reply_to, mentions, attachments, \
                       created_at, edited_at, deleted_at";

/// Inserts unless this author already posted `client_msg_id` in the thread. Returns
/// whether a row was inserted.
pub async fn insert(conn: &mut Conn, row: &MessageRow) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (thread_id, author_id, client_msg_id) DO NOTHING"
    ))
    .bind(&row.id)
    .bind(&row.thread_id)
    .bind(row.seq)
    .bind(&row.author_id)
    .bind(&row.client_msg_id)
    .bind(&row.body)
    .bind(&row.reply_to)
    .bind(&row.mentions)
    .bind(&row.attachments)
    .bind(row.created_at)
    .bind(row.edited_at)
    .bind(row.deleted_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts many messages at once (multi-row inserts, in the caller's transaction), with
/// the same idempotency rule as [`insert`]. For imports and the bench's million-message
/// thread: the seqs must have been taken first ([`super::threads::take_seqs`]). Returns
/// how many rows were inserted. Rows stored this way are not in the search index until
/// `domain::search::index::add_message` is called for each in the same transaction (as
/// `tsunagu-bench search` does) or the backfill runs.
pub async fn insert_many(conn: &mut Conn, rows: &[MessageRow]) -> Result<u64> {
    let mut inserted = 0;
    // 12 parameters a row: 500 rows stay far below both backends' parameter limits.
    for chunk in rows.chunks(500) {
        let mut sql = format!("INSERT INTO messages ({COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let marks: Vec<String> = (1..=12).map(|k| format!("${}", i * 12 + k)).collect();
            sql.push_str(&format!("({})", marks.join(", ")));
        }
        sql.push_str(" ON CONFLICT (thread_id, author_id, client_msg_id) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = q
                .bind(&row.id)
                .bind(&row.thread_id)
                .bind(row.seq)
                .bind(&row.author_id)
                .bind(&row.client_msg_id)
                .bind(&row.body)
                .bind(&row.reply_to)
                .bind(&row.mentions)
                .bind(&row.attachments)
                .bind(row.created_at)
                .bind(row.edited_at)
                .bind(row.deleted_at);
        }
        inserted += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

pub async fn find_by_client_id(
    conn: &mut Conn,
    thread_id: &str,
    author_id: &str,
    client_msg_id: &str,
) -> Result<Option<MessageRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages WHERE thread_id = $1 AND author_id = $2 AND client_msg_id = $3"
    ))
    .bind(thread_id)
    .bind(author_id)
    .bind(client_msg_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn get(conn: &mut Conn, thread_id: &str, id: &str) -> Result<Option<MessageRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages WHERE id = $1 AND thread_id = $2"
    ))
    .bind(id)
    .bind(thread_id)
    .fetch_optional(conn)
    .await?)
}

/// Messages with `after < seq < before`, ascending when paging forward (an `after`
/// bound or none), descending-then-reversed when paging back from `before`.
pub async fn page(
    conn: &mut Conn,
    thread_id: &str,
    after: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    let forward = after.is_some() || before.is_none();
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE thread_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq {} LIMIT $4",
        if forward && after.is_some() { "ASC" } else { "DESC" }
    );
    let mut rows: Vec<MessageRow> = sqlx::query_as(&sql)
        .bind(thread_id)
        .bind(after.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

pub async fn update_body(conn: &mut Conn, row: &MessageRow) -> Result<()> {
    sqlx::query("UPDATE messages SET body = $2, edited_at = $3, deleted_at = $4, mentions = $5 WHERE id = $1")
        .bind(&row.id)
        .bind(&row.body)
        .bind(row.edited_at)
        .bind(row.deleted_at)
        .bind(&row.mentions)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn add_edit(conn: &mut Conn, message_id: &str, body: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_edits (message_id, version, body, edited_at) \
         VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM message_edits WHERE message_id = $1), $2, $3)",
    )
    .bind(message_id)
    .bind(body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn edits(conn: &mut Conn, message_id: &str) -> Result<Vec<(i64, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT version, body, edited_at FROM message_edits WHERE message_id = $1 ORDER BY version",
    )
    .bind(message_id)
    .fetch_all(conn)
    .await?)
}

/// A deleted message keeps no text: its edit history goes with it.
pub async fn delete_edits(conn: &mut Conn, message_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM message_edits WHERE message_id = $1")
        .bind(message_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn add_reaction(
    conn: &mut Conn,
    message_id: &str,
    user_id: &str,
    emoji: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (message_id, user_id, emoji) DO NOTHING",
    )
    .bind(message_id)
    .bind(user_id)
    .bind(emoji)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn remove_reaction(
    conn: &mut Conn,
    message_id: &str,
    user_id: &str,
    emoji: &str,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3")
            .bind(message_id)
            .bind(user_id)
            .bind(emoji)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Reactions on messages `seq` in `from..=to` of a thread: (message_id, emoji, user_id).
pub async fn reactions_in_range(
    conn: &mut Conn,
    thread_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT r.message_id, r.emoji, r.user_id FROM reactions r JOIN messages m ON m.id = r.message_id \
         WHERE m.thread_id = $1 AND m.seq >= $2 AND m.seq <= $3 ORDER BY r.created_at, r.user_id",
    )
    .bind(thread_id)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}

/// Messages whose text matches `pattern` (an escaped LIKE pattern) in every thread
/// `viewer` can see in their region — the same rule as `threads::access`. ASCII letters
/// match in either case, everything else exactly ([`super::fold_pattern`]).
pub async fn search(
    conn: &mut Conn,
    viewer: &impl Viewer,
    pattern: &str,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.thread_id, m.seq, m.author_id, m.client_msg_id, m.body, m.reply_to, m.mentions, \
         m.attachments, m.created_at, m.edited_at, m.deleted_at \
         FROM messages m JOIN thread_audience a ON a.thread_id = m.thread_id \
         WHERE a.region_id = $1 AND a.user_id = $2 AND m.deleted_at IS NULL \
         AND lower(m.body) LIKE $3 ESCAPE '\\' \
         ORDER BY m.created_at DESC, m.id DESC LIMIT $4",
    )
    .bind(viewer.viewer_region())
    .bind(viewer.viewer_id())
    .bind(super::fold_pattern(pattern))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Attaches uploaded files to a message (ids already checked by the caller).
pub async fn attachment_files_in_thread(
    conn: &mut Conn,
    thread_id: &str,
    ids: &[String],
) -> Result<usize> {
    let mut found = 0;
    for id in ids {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM files WHERE id = $1 AND thread_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(thread_id)
        .fetch_optional(&mut *conn)
        .await?;
        found += usize::from(row.is_some());
    }
    Ok(found)
}
