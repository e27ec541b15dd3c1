//! Search over the messages and files the caller may see (`GET /search`).
//!
//! - [`normalize`]: the one normalisation of text (width, case, kana, spaces);
//! - [`query`]: what a user typed → literal terms, ANDed;
//! - [`index`]: index maintenance, inside the transaction of every write;
//! - [`extract`]: text out of PDF, .docx, .xlsx and text files, bounded;
//! - `snippet`: excerpts with the matches marked.
//!
//! A look-up ([`find`]) takes the newest [`WINDOW`] matching documents *inside the
//! caller's audience* — the store applies `thread_audience` in the statement that finds
//! them — then ranks them by match quality and recency. Hidden threads are never
//! searched, so nothing about them (hits, counts, snippets, time) can leak.

pub mod extract;
pub mod index;
pub mod normalize;
pub mod query;
mod snippet;

use std::collections::HashMap;

use tsunagu_protocol::apps::Scope;
use tsunagu_protocol::files::{
    FileKind, JumpTarget, SearchHit, SearchHitKind, SearchResults, ThreadHits,
};
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};

use super::access::Member;
use super::convert;
use super::error::{DomainError, Result};
use super::files::wire_file;
use super::shared::Shared;
use crate::clock::{now_ms, rfc3339};
use crate::store::scope::Viewer;
use crate::store::search::{self as store_search, DocRow, Driver, Filter};
use crate::store::{files, messages, Backend, Conn};
use index::CONTENT_SEPARATOR;
use query::Query;

/// How many matching documents (the newest) are ranked per search.
pub const WINDOW: i64 = 200;
/// Messages or files indexed per backfill transaction.
pub const BACKFILL_BATCH: i64 = 1000;
/// Most hits in one answer.
pub const MAX_LIMIT: usize = 50;

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub q: String,
    pub group_id: Option<GroupId>,
    pub thread_id: Option<ThreadId>,
    pub author_id: Option<UserId>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub has_file: Option<bool>,
    pub file_kind: Option<FileKind>,
    /// Only messages or only files.
    pub kind: Option<SearchHitKind>,
    pub limit: Option<usize>,
}

/// Ranked documents.
#[derive(Debug)]
pub struct Found {
    pub ranked: Vec<(DocRow, f64)>,
    /// The window was full: older matches were not ranked.
    pub more: bool,
}

/// Finds and ranks the documents `viewer` may see that contain every term of `query`.
/// The bench calls this too, so what it measures is what the server runs.
pub async fn find(
    conn: &mut Conn,
    backend: Backend,
    viewer: &impl Viewer,
    query: &Query,
    filter: &Filter,
) -> crate::store::Result<Found> {
    let driver_term = query.driver();
    let (driver, contains): (Driver, Vec<String>) = match index::term_gram(driver_term) {
        Some(gram) => (Driver::Gram(gram), query.terms[1..].to_vec()),
        None => {
            let (long, short): (Vec<String>, Vec<String>) = query
                .terms
                .iter()
                .cloned()
                .partition(|t| t.chars().count() >= 3);
            let contains = match backend {
                // FTS5's trigram phrases are exact substrings already.
                Backend::Sqlite => short,
                // On PostgreSQL the LIKE terms are what the trigram index answers.
                Backend::Postgres => query.terms.clone(),
            };
            (Driver::Trigram(long), contains)
        }
    };
    let rows =
        store_search::candidates(conn, backend, viewer, &driver, &contains, filter, WINDOW).await?;
    let more = rows.len() as i64 >= WINDOW;
    let now = now_ms();
    let mut ranked: Vec<(DocRow, f64)> = rows
        .into_iter()
        .map(|d| {
            let s = score(&d, &query.terms, now);
            (d, s)
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.0.doc_no.cmp(&a.0.doc_no))
    });
    Ok(Found { ranked, more })
}

/// Match quality times a recency boost. Quality: each term counts 1, more for repeats
/// (up to 4), 1.5 more for a file whose name or tags hold it; a message that is exactly
/// the query counts 1 more. Recency: half-life of 30 days, never below the quality
/// alone — an old exact hit still beats nothing, a fresh weak one beats an old weak one.
fn score(doc: &DocRow, terms: &[String], now: i64) -> f64 {
    let (meta, _) = doc
        .body
        .split_once(CONTENT_SEPARATOR)
        .unwrap_or((doc.body.as_str(), ""));
    let mut quality = 0.0;
    for t in terms {
        let count = doc.body.matches(t.as_str()).count().max(1);
        quality += 1.0 + 0.25 * (count - 1).min(4) as f64;
        if doc.source == "file" && meta.contains(t.as_str()) {
            quality += 1.5;
        }
    }
    if terms.len() == 1 && doc.body == terms[0] {
        quality += 1.0;
    }
    let age_days = (now - doc.created_at).max(0) as f64 / 86_400_000.0;
    let recency = 0.5f64.powf(age_days / 30.0);
    ((quality * (1.0 + recency)) * 1000.0).round() / 1000.0
}

/// Message and file search.
#[derive(Clone)]
pub struct Search {
    shared: Shared,
}

impl Search {
    pub(super) fn new(shared: Shared) -> Self {
        Search { shared }
    }

    /// Indexes the messages and files stored before the index existed: in batches of
    /// [`BACKFILL_BATCH`], each its own transaction, the cursor saved with it (so a
    /// restart resumes), progress in the log. Files are indexed by name and tags and
    /// queued for text extraction. A no-op once done.
    pub async fn backfill(&self) -> Result<()> {
        let store = self.shared.store();
        let mut conn = store.conn().await?;
        if store_search::get_state(&mut conn, "backfill")
            .await?
            .as_deref()
            == Some("done")
        {
            return Ok(());
        }
        let (messages_total, files_total) = store_search::source_counts(&mut conn).await?;
        drop(conn);
        let started = std::time::Instant::now();
        for (source, total) in [("messages", messages_total), ("files", files_total)] {
            let cursor_name = format!("backfill_{source}");
            let mut done = 0i64;
            loop {
                let mut tx = store.begin().await?;
                let after = store_search::get_state(&mut tx, &cursor_name)
                    .await?
                    .unwrap_or_default();
                let last = if source == "messages" {
                    let page =
                        store_search::messages_after(&mut tx, &after, BACKFILL_BATCH).await?;
                    for (row, group_id, region_id) in &page {
                        if row.deleted_at.is_some() {
                            continue;
                        }
                        let ids = row.attachments_list();
                        let kinds = if ids.is_empty() {
                            Vec::new()
                        } else {
                            files::kinds_of(&mut tx, &ids).await?
                        };
                        index::add_message(&mut tx, region_id, group_id, row, &kinds).await?;
                    }
                    done += page.len() as i64;
                    page.last().map(|(r, _, _)| r.id.clone())
                } else {
                    let page = files::live_after(&mut tx, &after, BACKFILL_BATCH).await?;
                    for row in &page {
                        index::add_file(&mut tx, row).await?;
                    }
                    done += page.len() as i64;
                    page.last().map(|r| r.id.clone())
                };
                let Some(last) = last else {
                    tx.commit().await?;
                    break;
                };
                store_search::set_state(&mut tx, &cursor_name, &last).await?;
                tx.commit().await?;
                tracing::info!(
                    source,
                    done,
                    total,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "search index backfill"
                );
            }
        }
        let mut conn = store.conn().await?;
        store_search::set_state(&mut conn, "backfill", "done").await?;
        if messages_total + files_total > 0 {
            tracing::info!(
                messages = messages_total,
                files = files_total,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "search index backfill finished"
            );
        }
        Ok(())
    }

    /// Ranked hits for `req` among what the caller may see, with snippets, a jump
    /// target per hit and the hits grouped by thread.
    pub async fn search(&self, member: &Member, req: SearchRequest) -> Result<SearchResults> {
        let query = Query::parse(&req.q).map_err(|e| DomainError::Invalid(e.to_string()))?;
        let limit = req.limit.unwrap_or(20);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(DomainError::Invalid("limit must be 1 to 50".into()));
        }
        if let (Some(from), Some(to)) = (req.from_ms, req.to_ms) {
            if from >= to {
                return Err(DomainError::Invalid("from must be before to".into()));
            }
        }
        // An app sees file hits only with `files:read` (the route needs `messages:read`):
        // without it, files are not searched at all.
        let files_allowed = member.session().require(Scope::FilesRead).is_ok();
        let source = match (req.kind, files_allowed) {
            (Some(SearchHitKind::File), false) => {
                return Ok(SearchResults {
                    hits: Vec::new(),
                    threads: Vec::new(),
                    more: false,
                    messages: Vec::new(),
                    files: Vec::new(),
                })
            }
            (Some(SearchHitKind::File), true) => Some("file"),
            (Some(SearchHitKind::Message), _) | (None, false) => Some("message"),
            (None, true) => None,
        };
        let filter = Filter {
            source,
            group_id: req.group_id.map(|g| g.to_string()),
            thread_id: req.thread_id.map(|t| t.to_string()),
            author_id: req.author_id.map(|u| u.to_string()),
            from_ms: req.from_ms,
            to_ms: req.to_ms,
            has_file: req.has_file,
            file_kind: req.file_kind,
        };
        let mut conn = self.shared.store().conn().await?;
        let backend = self.shared.store().backend();
        let found = find(&mut conn, backend, member, &query, &filter).await?;

        let mut threads: Vec<ThreadHits> = Vec::new();
        for (doc, _) in &found.ranked {
            match threads
                .iter_mut()
                .find(|t| t.thread_id.to_string() == doc.thread_id)
            {
                Some(t) => t.count += 1,
                None => threads.push(ThreadHits {
                    group_id: convert::id(&doc.group_id)?,
                    thread_id: convert::id(&doc.thread_id)?,
                    count: 1,
                }),
            }
        }
        let mut out = SearchResults {
            hits: Vec::new(),
            threads,
            more: found.more,
            messages: Vec::new(),
            files: Vec::new(),
        };
        let mut readers = HashMap::new();
        for (doc, score) in found.ranked.into_iter().take(limit) {
            let thread_id: ThreadId = convert::id(&doc.thread_id)?;
            let mut hit = SearchHit {
                kind: SearchHitKind::Message,
                score,
                group_id: convert::id(&doc.group_id)?,
                thread_id,
                author_id: convert::id(&doc.author_id)?,
                created_at: rfc3339(doc.created_at),
                message_id: None,
                file_id: None,
                jump: JumpTarget {
                    thread_id,
                    seq: doc.seq,
                },
                snippet: Vec::new(),
            };
            if doc.source == "message" {
                let Some(row) = messages::get(&mut conn, &doc.thread_id, &doc.source_id).await?
                else {
                    continue;
                };
                if !readers.contains_key(&doc.thread_id) {
                    let reader = self
                        .shared
                        .thread_reader(&mut conn, member, &thread_id)
                        .await?;
                    readers.insert(doc.thread_id.clone(), reader);
                }
                let reader = &readers[&doc.thread_id];
                hit.message_id = Some(convert::id(&row.id)?);
                hit.snippet = snippet::snippet(&row.body, &query.terms);
                out.messages.extend(
                    self.shared
                        .wire_messages(&mut conn, reader, vec![row])
                        .await?,
                );
            } else {
                let Some(row) = files::get_live(&mut conn, &doc.source_id).await? else {
                    continue;
                };
                hit.kind = SearchHitKind::File;
                hit.file_id = Some(row.id.clone());
                let (meta, content) = doc
                    .body
                    .split_once(CONTENT_SEPARATOR)
                    .unwrap_or((doc.body.as_str(), ""));
                let in_meta = query.terms.iter().any(|t| meta.contains(t.as_str()));
                hit.snippet = if in_meta || content.is_empty() {
                    let tags: Vec<String> = serde_json::from_str(&row.tags).unwrap_or_default();
                    let mut shown = row.name.clone();
                    for t in tags {
                        shown.push_str(" #");
                        shown.push_str(&t);
                    }
                    snippet::snippet(&shown, &query.terms)
                } else {
                    snippet::snippet(content, &query.terms)
                };
                out.files.push(wire_file(&row)?);
            }
            out.hits.push(hit);
        }
        Ok(out)
    }
}
