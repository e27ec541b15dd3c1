//! `threads`, `thread_members` and `read_receipts`.

use sqlx::FromRow;
use tsunagu_protocol::messaging::{MemberRole, ThreadKind};

use super::scope::{GroupViewer, ThreadViewer, Viewer};
use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct ThreadRow {
    pub id: String,
    pub group_id: String,
    pub kind: ThreadKind,
    pub title: Option<String>,
    pub last_seq: i64,
    pub created_by: String,
    pub created_at: i64,
}

const COLUMNS: &str = "t.id, t.group_id, t.kind, t.title, t.last_seq, t.created_by, t.created_at";

pub async fn insert(conn: &mut Conn, row: &ThreadRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO threads (id, group_id, kind, title, last_seq, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(&row.group_id)
    .bind(row.kind)
    .bind(&row.title)
    .bind(row.last_seq)
    .bind(&row.created_by)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A thread with what the visibility rule needs about the caller.
#[derive(Debug, Clone, FromRow)]
pub struct ThreadAccessRow {
    #[sqlx(flatten)]
    pub thread: ThreadRow,
    pub region_id: String,
    pub archived_at: Option<i64>,
    pub group_role: MemberRole,
    pub patient_side: i64,
}

/// A thread, only if `user_id` is in its audience (the `thread_audience` view, the one
/// definition of the visibility rule: migration `0006_thread_audience.sql`) within
/// `region_id`. Every check on a thread goes through this.
pub async fn access(
    conn: &mut Conn,
    region_id: &str,
    thread_id: &str,
    user_id: &str,
) -> Result<Option<ThreadAccessRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS}, a.region_id, a.archived_at, a.group_role, a.patient_side \
         FROM threads t JOIN thread_audience a ON a.thread_id = t.id \
         WHERE t.id = $1 AND a.user_id = $2 AND a.region_id = $3"
    ))
    .bind(thread_id)
    .bind(user_id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

/// Every thread `viewer` can see, by the same rule as [`access`].
pub async fn visible_to(conn: &mut Conn, viewer: &impl Viewer) -> Result<Vec<ThreadRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM threads t JOIN thread_audience a ON a.thread_id = t.id \
         WHERE a.user_id = $1 AND a.region_id = $2 \
         ORDER BY t.created_at, t.id"
    ))
    .bind(viewer.viewer_id())
    .bind(viewer.viewer_region())
    .fetch_all(conn)
    .await?)
}

/// The threads of `viewer`'s group that they can see.
pub async fn visible_in_group(
    conn: &mut Conn,
    viewer: &impl GroupViewer,
) -> Result<Vec<ThreadRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM threads t JOIN thread_audience a ON a.thread_id = t.id \
         WHERE t.group_id = $1 AND a.user_id = $2 AND a.region_id = $3 \
         ORDER BY CASE WHEN t.kind = 'main' THEN 0 ELSE 1 END, t.created_at, t.id"
    ))
    .bind(viewer.viewed_group())
    .bind(viewer.viewer_id())
    .bind(viewer.viewer_region())
    .fetch_all(conn)
    .await?)
}

pub async fn add_member(conn: &mut Conn, thread_id: &str, user_id: &str, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO thread_members (thread_id, user_id, added_at) VALUES ($1, $2, $3)")
        .bind(thread_id)
        .bind(user_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn remove_member(conn: &mut Conn, thread_id: &str, user_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM thread_members WHERE thread_id = $1 AND user_id = $2")
        .bind(thread_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn member_ids(conn: &mut Conn, thread_id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT user_id FROM thread_members WHERE thread_id = $1 ORDER BY added_at, user_id",
    )
    .bind(thread_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(u,)| u).collect())
}

/// Private threads of a group that `user_id` belongs to (to announce their removal).
pub async fn private_threads_of_member(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT t.id FROM threads t JOIN thread_members tm ON tm.thread_id = t.id \
         WHERE t.group_id = $1 AND tm.user_id = $2",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// Allocates the next `seq`. Called first in the posting transaction: on PostgreSQL it
/// locks the thread row, on SQLite it takes the write lock, so posters serialise here.
pub async fn next_seq(conn: &mut Conn, thread_id: &str) -> Result<i64> {
    let (seq,): (i64,) = sqlx::query_as(
        "UPDATE threads SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(thread_id)
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

/// Takes the next `n` seqs at once, like `n` calls of [`next_seq`]; returns the last.
/// The block is `last - n + 1 ..= last`, gap-free if the caller stores every one of
/// them in the same transaction (a batch import: `messages::insert_many`).
pub async fn take_seqs(conn: &mut Conn, thread_id: &str, n: i64) -> Result<i64> {
    let (seq,): (i64,) = sqlx::query_as(
        "UPDATE threads SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq",
    )
    .bind(thread_id)
    .bind(n)
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

/// Undoes [`next_seq`] inside the same transaction (the post's row was not stored).
/// Only the holder of the thread row's lock calls it, so `seq` is still the last one.
pub async fn give_back_seq(conn: &mut Conn, thread_id: &str, seq: i64) -> Result<()> {
    sqlx::query("UPDATE threads SET last_seq = last_seq - 1 WHERE id = $1 AND last_seq = $2")
        .bind(thread_id)
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the next `seq` of `thread_id` — only if `user_id` may post there right now: a
/// current member of the thread's audience (the same rule as [`access`]), in
/// `region_id`, the group not archived. One statement instead of a check and an
/// update: posting is the hottest write path. `None`: not allowed (or unknown); the
/// caller finds out why with [`access`].
pub async fn next_seq_if_postable(
    conn: &mut Conn,
    region_id: &str,
    thread_id: &str,
    user_id: &str,
) -> Result<Option<ThreadRow>> {
    Ok(sqlx::query_as(
        "UPDATE threads SET last_seq = last_seq + 1 \
         WHERE id = $1 \
         AND EXISTS (SELECT 1 FROM thread_audience a WHERE a.thread_id = threads.id \
                     AND a.user_id = $2 AND a.region_id = $3 AND a.archived_at IS NULL) \
         RETURNING id, group_id, kind, title, last_seq, created_by, created_at",
    )
    .bind(thread_id)
    .bind(user_id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

/// Moves several read positions forward at once (never back): the authors of one
/// batch of posts, `(thread_id, user_id, seq)`, at most one entry per pair.
pub async fn advance_reads(
    conn: &mut Conn,
    positions: &[(String, String, i64)],
    now: i64,
) -> Result<()> {
    for chunk in positions.chunks(200) {
        let mut sql = String::from(
            "INSERT INTO read_receipts (thread_id, user_id, last_read_seq, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let b = i * 4;
            sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
        }
        sql.push_str(
            " ON CONFLICT (thread_id, user_id) DO UPDATE SET last_read_seq = excluded.last_read_seq, \
             updated_at = excluded.updated_at WHERE read_receipts.last_read_seq < excluded.last_read_seq",
        );
        let mut q = sqlx::query(&sql);
        for (thread_id, user_id, seq) in chunk {
            q = q.bind(thread_id).bind(user_id).bind(*seq).bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn last_read(conn: &mut Conn, thread_id: &str, user_id: &str) -> Result<i64> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT last_read_seq FROM read_receipts WHERE thread_id = $1 AND user_id = $2",
    )
    .bind(thread_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(s,)| s).unwrap_or(0))
}

/// Moves the read position forward only. Returns the position after the call.
pub async fn mark_read(
    conn: &mut Conn,
    thread_id: &str,
    user_id: &str,
    seq: i64,
    now: i64,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO read_receipts (thread_id, user_id, last_read_seq, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (thread_id, user_id) DO UPDATE SET last_read_seq = excluded.last_read_seq, \
         updated_at = excluded.updated_at WHERE read_receipts.last_read_seq < excluded.last_read_seq",
    )
    .bind(thread_id)
    .bind(user_id)
    .bind(seq)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    last_read(conn, thread_id, user_id).await
}

/// Read positions of the thread's current audience (other readers are not counted).
#[derive(Debug, Clone, FromRow)]
pub struct ReceiptRow {
    pub user_id: String,
    pub last_read_seq: i64,
    pub updated_at: i64,
    pub display_name: String,
}

/// The read positions of the thread's current audience (who has read what: 既読), for a
/// reader of that thread.
pub async fn audience_receipts(
    conn: &mut Conn,
    reader: &impl ThreadViewer,
) -> Result<Vec<ReceiptRow>> {
    Ok(sqlx::query_as(
        "SELECT r.user_id, r.last_read_seq, r.updated_at, u.display_name FROM read_receipts r \
         JOIN users u ON u.id = r.user_id \
         JOIN thread_audience a ON a.thread_id = r.thread_id AND a.user_id = r.user_id \
         WHERE r.thread_id = $1 \
         ORDER BY r.updated_at, r.user_id",
    )
    .bind(reader.viewed_thread())
    .fetch_all(conn)
    .await?)
}

/// Messages by others, not deleted, after `after_seq`.
pub async fn unread_count(
    conn: &mut Conn,
    thread_id: &str,
    user_id: &str,
    after_seq: i64,
) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE thread_id = $1 AND seq > $2 AND author_id <> $3 AND deleted_at IS NULL",
    )
    .bind(thread_id)
    .bind(after_seq)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}
