//! `files`: metadata and wrapped keys of encrypted blobs.

use sqlx::FromRow;
use tsunagu_protocol::files::FileKind;

use super::scope::{GroupViewer, Viewer};
use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct FileRow {
    pub id: String,
    pub region_id: String,
    pub group_id: String,
    pub thread_id: String,
    pub uploader_id: String,
    pub name: String,
    pub kind: FileKind,
    pub content_type: String,
    pub size: i64,
    pub segment_size: i64,
    pub nonce_prefix: String,
    pub wrapped_key: Option<String>,
    pub kek_id: Option<String>,
    pub folder: Option<String>,
    pub tags: String,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    pub deleted_by: Option<String>,
}

const COLUMNS: &str = "f.id, f.region_id, f.group_id, f.thread_id, f.uploader_id, f.name, f.kind, f.content_type, \
    f.size, f.segment_size, f.nonce_prefix, f.wrapped_key, f.kek_id, f.folder, f.tags, f.created_at, f.deleted_at, \
    f.deleted_by";

pub async fn insert(conn: &mut Conn, r: &FileRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO files (id, region_id, group_id, thread_id, uploader_id, name, kind, content_type, size, \
         segment_size, nonce_prefix, wrapped_key, kek_id, folder, tags, created_at, deleted_at, deleted_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&r.id)
    .bind(&r.region_id)
    .bind(&r.group_id)
    .bind(&r.thread_id)
    .bind(&r.uploader_id)
    .bind(&r.name)
    .bind(r.kind)
    .bind(&r.content_type)
    .bind(r.size)
    .bind(r.segment_size)
    .bind(&r.nonce_prefix)
    .bind(&r.wrapped_key)
    .bind(&r.kek_id)
    .bind(&r.folder)
    .bind(&r.tags)
    .bind(r.created_at)
    .bind(r.deleted_at)
    .bind(&r.deleted_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// A live (not deleted) file, whatever its region: callers check visibility next.
pub async fn get_live(conn: &mut Conn, id: &str) -> Result<Option<FileRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM files f WHERE f.id = $1 AND f.deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn update_organisation(
    conn: &mut Conn,
    id: &str,
    folder: Option<&str>,
    tags: &str,
) -> Result<()> {
    sqlx::query("UPDATE files SET folder = $2, tags = $3 WHERE id = $1")
        .bind(id)
        .bind(folder)
        .bind(tags)
        .execute(conn)
        .await?;
    Ok(())
}

/// Crypto-shredding: the wrapped data key is destroyed with the metadata's liveness.
pub async fn shred(conn: &mut Conn, id: &str, by: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE files SET wrapped_key = NULL, kek_id = NULL, deleted_at = $3, deleted_by = $2 \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Library filters. `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct LibraryFilter {
    pub kind: Option<FileKind>,
    pub uploader_id: Option<String>,
    pub thread_id: Option<String>,
    pub folder: Option<String>,
    /// A LIKE pattern over the JSON tag list, already escaped. Like every search, ASCII
    /// letters match in either case, everything else exactly ([`super::fold_pattern`]).
    pub tag_pattern: Option<String>,
    /// A LIKE pattern over the name, already escaped.
    pub name_pattern: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// Sort orders; the SQL is fixed per variant (never built from input).
#[derive(Debug, Clone, Copy, Default)]
pub enum LibrarySort {
    #[default]
    Newest,
    Oldest,
    Name,
    Largest,
}

impl LibrarySort {
    fn sql(self) -> &'static str {
        match self {
            LibrarySort::Newest => "f.created_at DESC, f.id DESC",
            LibrarySort::Oldest => "f.created_at ASC, f.id ASC",
            LibrarySort::Name => "f.name ASC, f.id ASC",
            LibrarySort::Largest => "f.size DESC, f.id ASC",
        }
    }
}

/// The files of `viewer`'s group that they may see: those of the main timeline and of
/// the 内緒話 threads they belong to — the same rule as `threads::access`.
pub async fn library(
    conn: &mut Conn,
    viewer: &impl GroupViewer,
    f: &LibraryFilter,
    sort: LibrarySort,
    limit: i64,
    offset: i64,
) -> Result<Vec<FileRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM files f \
         JOIN thread_audience a ON a.thread_id = f.thread_id AND a.user_id = $2 \
         WHERE f.group_id = $1 AND a.region_id = $13 AND f.deleted_at IS NULL \
         AND ($3 IS NULL OR f.kind = $3) AND ($4 IS NULL OR f.uploader_id = $4) \
         AND ($5 IS NULL OR f.thread_id = $5) AND ($6 IS NULL OR f.folder = $6) \
         AND ($7 IS NULL OR lower(f.tags) LIKE $7 ESCAPE '\\') \
         AND ($8 IS NULL OR lower(f.name) LIKE $8 ESCAPE '\\') \
         AND ($9 IS NULL OR f.created_at >= $9) AND ($10 IS NULL OR f.created_at < $10) \
         ORDER BY {} LIMIT $11 OFFSET $12",
        sort.sql()
    ))
    .bind(viewer.viewed_group())
    .bind(viewer.viewer_id())
    .bind(f.kind)
    .bind(&f.uploader_id)
    .bind(&f.thread_id)
    .bind(&f.folder)
    .bind(f.tag_pattern.as_deref().map(super::fold_pattern))
    .bind(f.name_pattern.as_deref().map(super::fold_pattern))
    .bind(f.from_ms)
    .bind(f.to_ms)
    .bind(limit)
    .bind(offset)
    .bind(viewer.viewer_region())
    .fetch_all(conn)
    .await?)
}

/// Files by name across every thread `viewer` can see in their region.
pub async fn search(
    conn: &mut Conn,
    viewer: &impl Viewer,
    name_pattern: &str,
    limit: i64,
) -> Result<Vec<FileRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM files f \
         JOIN thread_audience a ON a.thread_id = f.thread_id AND a.user_id = $2 \
         WHERE f.region_id = $1 AND a.region_id = $1 AND f.deleted_at IS NULL \
         AND lower(f.name) LIKE $3 ESCAPE '\\' \
         ORDER BY f.created_at DESC LIMIT $4"
    ))
    .bind(viewer.viewer_region())
    .bind(viewer.viewer_id())
    .bind(super::fold_pattern(name_pattern))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Live files whose data key is wrapped by another KEK than `current`, a page at a time.
pub async fn wrapped_not_by(conn: &mut Conn, current: &str, limit: i64) -> Result<Vec<FileRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM files f WHERE f.wrapped_key IS NOT NULL AND f.kek_id <> $1 ORDER BY f.id LIMIT $2"
    ))
    .bind(current)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Replaces a wrapped key only if it is still the one that was read (no lost update).
pub async fn rewrap(
    conn: &mut Conn,
    id: &str,
    old_kek: &str,
    kek: &str,
    wrapped: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE files SET kek_id = $3, wrapped_key = $4 WHERE id = $1 AND kek_id = $2 AND wrapped_key IS NOT NULL",
    )
    .bind(id)
    .bind(old_kek)
    .bind(kek)
    .bind(wrapped)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The kinds of the live files among `ids`, each once, in a fixed order.
pub async fn kinds_of(conn: &mut Conn, ids: &[String]) -> Result<Vec<FileKind>> {
    let mut kinds = Vec::new();
    for id in ids {
        let row: Option<(FileKind,)> =
            sqlx::query_as("SELECT kind FROM files WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some((k,)) = row {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    kinds.sort_by_key(|k| k.as_str());
    Ok(kinds)
}

/// A page of live files after `after` (by id, which is time-ordered), for the search
/// backfill.
pub async fn live_after(conn: &mut Conn, after: &str, limit: i64) -> Result<Vec<FileRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM files f WHERE f.id > $1 AND f.deleted_at IS NULL ORDER BY f.id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Whether any metadata row (live or deleted) names this file id.
pub async fn exists(conn: &mut Conn, id: &str) -> Result<bool> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM files WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}
