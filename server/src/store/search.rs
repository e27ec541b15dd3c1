//! The search index: `search_docs`, `search_grams` and the trigram index (FTS5 on
//! SQLite, pg_trgm on PostgreSQL — the one place the two backends' search SQL differs).
//! Text arrives normalised and grams computed by the domain
//! (`domain::search::normalize`); this module stores and looks up.
//!
//! Every look-up names its viewer: the hits are only ever computed inside the threads
//! `thread_audience` gives that viewer — the subquery is part of the one statement that
//! finds them, so a hidden thread's documents are never counted, ranked or returned.

use sqlx::FromRow;
use tsunagu_protocol::files::FileKind;

use super::scope::Viewer;
use super::{Backend, Conn, Result};

/// One searchable document as stored.
#[derive(Debug, Clone, FromRow)]
pub struct DocRow {
    pub doc_no: i64,
    pub source: String,
    pub source_id: String,
    pub group_id: String,
    pub thread_id: String,
    pub author_id: String,
    pub seq: Option<i64>,
    pub created_at: i64,
    pub has_file: i64,
    pub file_kinds: String,
    pub body: String,
}

/// A document to index (a new one, or the new text of an existing one).
#[derive(Debug, Clone)]
pub struct NewDoc<'a> {
    pub source: &'static str,
    pub source_id: &'a str,
    pub region_id: &'a str,
    pub group_id: &'a str,
    pub thread_id: &'a str,
    pub author_id: &'a str,
    pub seq: Option<i64>,
    pub created_at: i64,
    pub file_kinds: &'a [FileKind],
    pub extract_state: i64,
    /// Normalised text.
    pub body: &'a str,
}

const COLUMNS: &str =
    "d.doc_no, d.source, d.source_id, d.group_id, d.thread_id, d.author_id, d.seq, \
    d.created_at, d.has_file, d.file_kinds, d.body";

/// ' pdf image ': the kinds as the `file_kinds` column holds them.
pub fn kinds_column(kinds: &[FileKind]) -> String {
    if kinds.is_empty() {
        return String::new();
    }
    let mut out = String::from(" ");
    for k in kinds {
        out.push_str(k.as_str());
        out.push(' ');
    }
    out
}

/// Inserts a document and its grams. Returns its number, or `None` when the source is
/// indexed already (a backfill racing a live write: the live one stands).
pub async fn insert(conn: &mut Conn, doc: &NewDoc<'_>, grams: &[i64]) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO search_docs (source, source_id, region_id, group_id, thread_id, author_id, seq, \
         created_at, has_file, file_kinds, extract_state, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (source_id) DO NOTHING RETURNING doc_no",
    )
    .bind(doc.source)
    .bind(doc.source_id)
    .bind(doc.region_id)
    .bind(doc.group_id)
    .bind(doc.thread_id)
    .bind(doc.author_id)
    .bind(doc.seq)
    .bind(doc.created_at)
    .bind(super::flag(!doc.file_kinds.is_empty()))
    .bind(kinds_column(doc.file_kinds))
    .bind(doc.extract_state)
    .bind(doc.body)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((doc_no,)) = row else {
        return Ok(None);
    };
    insert_grams(conn, doc_no, grams).await?;
    Ok(Some(doc_no))
}

/// Multi-row inserts of `(gram, doc_no)`.
async fn insert_grams(conn: &mut Conn, doc_no: i64, grams: &[i64]) -> Result<()> {
    // Two parameters a row: 400 rows stay far below both backends' limits.
    for chunk in grams.chunks(400) {
        let mut sql = String::from("INSERT INTO search_grams (gram, doc_no) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(&sql);
        for g in chunk {
            q = q.bind(*g).bind(doc_no);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes `(gram, doc_no)` rows by their primary key.
async fn delete_grams(conn: &mut Conn, doc_no: i64, grams: &[i64]) -> Result<()> {
    for chunk in grams.chunks(400) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "DELETE FROM search_grams WHERE doc_no = $1 AND gram IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(doc_no);
        for g in chunk {
            q = q.bind(*g);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A document by its source id, with its stored (normalised) text.
pub async fn get(conn: &mut Conn, source_id: &str) -> Result<Option<DocRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM search_docs d WHERE d.source_id = $1"
    ))
    .bind(source_id)
    .fetch_optional(conn)
    .await?)
}

/// Replaces a document's text: `old_grams`/`new_grams` are those of the stored and of
/// the new text (the domain computes both), so only the difference is written.
pub async fn update_body(
    conn: &mut Conn,
    doc_no: i64,
    body: &str,
    old_grams: &[i64],
    new_grams: &[i64],
    extract_state: Option<i64>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE search_docs SET body = $2, extract_state = COALESCE($3, extract_state) WHERE doc_no = $1",
    )
    .bind(doc_no)
    .bind(body)
    .bind(extract_state)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        // Deleted by a transaction that committed while this one waited: no grams
        // may be left behind for it.
        return Ok(());
    }
    let gone: Vec<i64> = old_grams
        .iter()
        .filter(|g| new_grams.binary_search(g).is_err())
        .copied()
        .collect();
    let added: Vec<i64> = new_grams
        .iter()
        .filter(|g| old_grams.binary_search(g).is_err())
        .copied()
        .collect();
    delete_grams(conn, doc_no, &gone).await?;
    insert_grams(conn, doc_no, &added).await
}

/// Removes a document and its grams (`grams`: those of its stored text).
pub async fn delete(conn: &mut Conn, doc_no: i64, grams: &[i64]) -> Result<()> {
    delete_grams(conn, doc_no, grams).await?;
    sqlx::query("DELETE FROM search_docs WHERE doc_no = $1")
        .bind(doc_no)
        .execute(conn)
        .await?;
    Ok(())
}

/// Filters; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub source: Option<&'static str>,
    pub group_id: Option<String>,
    pub thread_id: Option<String>,
    pub author_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub has_file: Option<bool>,
    pub file_kind: Option<FileKind>,
}

/// How the candidates are found: the gram table for a one- or two-character driving
/// term, the trigram index for a longer one.
#[derive(Debug, Clone)]
pub enum Driver {
    Gram(i64),
    /// Every term of three characters or more (all must match), normalised.
    Trigram(Vec<String>),
}

/// The newest `limit` documents that `viewer` may see, that the driver finds and that
/// contain every term of `contains` (normalised text; matched literally), within the
/// filter.
pub async fn candidates(
    conn: &mut Conn,
    backend: Backend,
    viewer: &impl Viewer,
    driver: &Driver,
    contains: &[String],
    f: &Filter,
    limit: i64,
) -> Result<Vec<DocRow>> {
    // $1 region, $2 user, $3..$10 filters, $11 limit, then the driver's and the terms'.
    let mut sql = format!("SELECT {COLUMNS} FROM ");
    let mut next = 12;
    let mut texts: Vec<String> = Vec::new();
    let order = match (driver, backend) {
        (Driver::Gram(_), _) => {
            sql.push_str(
                "search_grams g JOIN search_docs d ON d.doc_no = g.doc_no WHERE g.gram = $12",
            );
            next += 1;
            "g.doc_no DESC"
        }
        (Driver::Trigram(terms), Backend::Sqlite) => {
            sql.push_str(
                "search_fts s JOIN search_docs d ON d.doc_no = s.rowid WHERE search_fts MATCH $12",
            );
            texts.push(fts_phrases(terms));
            next += 1;
            "s.rowid DESC"
        }
        (Driver::Trigram(_), Backend::Postgres) => {
            // The LIKE terms below are what the GIN index answers.
            sql.push_str("search_docs d WHERE 1 = 1");
            "d.doc_no DESC"
        }
    };
    let like_start = next;
    for _ in contains {
        sql.push_str(&format!(" AND d.body LIKE ${next} ESCAPE '\\'"));
        next += 1;
    }
    sql.push_str(
        " AND d.region_id = $1 AND d.thread_id IN \
         (SELECT a.thread_id FROM thread_audience a WHERE a.region_id = $1 AND a.user_id = $2) \
         AND ($3 IS NULL OR d.source = $3) AND ($4 IS NULL OR d.group_id = $4) \
         AND ($5 IS NULL OR d.thread_id = $5) AND ($6 IS NULL OR d.author_id = $6) \
         AND ($7 IS NULL OR d.created_at >= $7) AND ($8 IS NULL OR d.created_at < $8) \
         AND ($9 IS NULL OR d.has_file = $9) AND ($10 IS NULL OR d.file_kinds LIKE $10)",
    );
    sql.push_str(&format!(" ORDER BY {order} LIMIT $11"));
    debug_assert_eq!(like_start + contains.len(), next);
    let mut q = sqlx::query_as::<_, DocRow>(&sql)
        .bind(viewer.viewer_region())
        .bind(viewer.viewer_id())
        .bind(f.source)
        .bind(f.group_id.as_deref())
        .bind(f.thread_id.as_deref())
        .bind(f.author_id.as_deref())
        .bind(f.from_ms)
        .bind(f.to_ms)
        .bind(f.has_file.map(super::flag))
        .bind(f.file_kind.map(|k| format!("% {} %", k.as_str())))
        .bind(limit);
    if let Driver::Gram(g) = driver {
        q = q.bind(*g);
    }
    for t in &texts {
        q = q.bind(t.clone());
    }
    for term in contains {
        q = q.bind(super::contains_pattern(term));
    }
    Ok(q.fetch_all(conn).await?)
}

/// An FTS5 query that matches each term as one literal string: every term in double
/// quotes, its own quotes doubled — FTS5's only escape — so no operator (`AND`, `NEAR`,
/// `*`, `^`, a column filter) can be spelt by a user. Terms are ANDed.
fn fts_phrases(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A page of live messages after `after` (by id, which is time-ordered), with their
/// group and region, for the backfill.
pub async fn messages_after(
    conn: &mut Conn,
    after: &str,
    limit: i64,
) -> Result<Vec<(super::messages::MessageRow, String, String)>> {
    let rows: Vec<BackfillMessage> = sqlx::query_as(
        "SELECT m.id, m.thread_id, m.seq, m.author_id, m.client_msg_id, m.body, m.reply_to, m.mentions, \
         m.attachments, m.created_at, m.edited_at, m.deleted_at, t.group_id, g.region_id \
         FROM messages m JOIN threads t ON t.id = m.thread_id JOIN groups g ON g.id = t.group_id \
         WHERE m.id > $1 ORDER BY m.id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                super::messages::MessageRow {
                    id: r.id,
                    thread_id: r.thread_id,
                    seq: r.seq,
                    author_id: r.author_id,
                    client_msg_id: r.client_msg_id,
                    body: r.body,
                    reply_to: r.reply_to,
                    mentions: r.mentions,
                    attachments: r.attachments,
                    created_at: r.created_at,
                    edited_at: r.edited_at,
                    deleted_at: r.deleted_at,
                },
                r.group_id,
                r.region_id,
            )
        })
        .collect())
}

#[derive(FromRow)]
struct BackfillMessage {
    id: String,
    thread_id: String,
    seq: i64,
    author_id: String,
    client_msg_id: String,
    body: String,
    reply_to: Option<String>,
    mentions: String,
    attachments: String,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
    group_id: String,
    region_id: String,
}

/// How many messages and files exist (live or not): the backfill's progress total.
pub async fn source_counts(conn: &mut Conn) -> Result<(i64, i64)> {
    let (m,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut *conn)
        .await?;
    let (f,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files")
        .fetch_one(&mut *conn)
        .await?;
    Ok((m, f))
}

/// A value of the index's own state (the backfill's cursor).
pub async fn get_state(conn: &mut Conn, name: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM search_state WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(v,)| v))
}

pub async fn set_state(conn: &mut Conn, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO search_state (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// Files whose text is still to be extracted (their upload's job did not finish: the
/// node stopped), oldest first.
pub async fn pending_extraction(conn: &mut Conn, limit: i64) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT source_id FROM search_docs WHERE source = 'file' AND extract_state = 0 \
         ORDER BY doc_no LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// Bytes the index takes on disk, when the backend can say: (documents with their
/// trigram index, gram table).
pub async fn size_on_disk(conn: &mut Conn, backend: Backend) -> Result<(i64, i64)> {
    match backend {
        Backend::Sqlite => {
            let docs: (i64,) = sqlx::query_as(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'search_docs%' \
                 OR name LIKE 'search_fts%' OR name LIKE 'sqlite_autoindex_search_docs%'",
            )
            .fetch_one(&mut *conn)
            .await?;
            let grams: (i64,) = sqlx::query_as(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'search_grams%' \
                 OR name LIKE 'sqlite_autoindex_search_grams%'",
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok((docs.0, grams.0))
        }
        Backend::Postgres => {
            let docs: (i64,) =
                sqlx::query_as("SELECT CAST(pg_total_relation_size('search_docs') AS BIGINT)")
                    .fetch_one(&mut *conn)
                    .await?;
            let grams: (i64,) =
                sqlx::query_as("SELECT CAST(pg_total_relation_size('search_grams') AS BIGINT)")
                    .fetch_one(&mut *conn)
                    .await?;
            Ok((docs.0, grams.0))
        }
    }
}
