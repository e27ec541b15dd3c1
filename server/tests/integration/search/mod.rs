//! Search that finds Japanese (`GET /api/v1/search`), on SQLite and PostgreSQL: one-,
//! two- and three-plus-character terms, width/kana/case folding, phrases, AND, edits
//! and deletes, filters, snippets and jump targets, the text inside PDF/.docx/.xlsx
//! files (generated here), hostile files, the backfill of data older than the index,
//! bad input — and the leak tests: a 内緒話 term never reaches anyone outside it.

mod files;
mod leaks;
mod queries;

use reqwest::StatusCode;
use serde_json::Value;
use tsunagu_protocol::files::{SearchQuery, SearchResults};
use tsunagu_testkit::{Person, TestApp};

/// The results of `q` for `who`, which must be a 200.
pub async fn results(who: &Person, query: &SearchQuery) -> SearchResults {
    who.client
        .search_with(query)
        .await
        .unwrap_or_else(|e| panic!("{}: search {:?}: {e}", who.who(), query.q))
}

/// The message bodies `q` finds for `who`, in ranked order.
pub async fn bodies(who: &Person, q: &str) -> Vec<String> {
    results(who, &SearchQuery::text(q))
        .await
        .messages
        .into_iter()
        .map(|m| m.body)
        .collect()
}

/// The same, sorted (for sets).
pub async fn sorted_bodies(who: &Person, q: &str) -> Vec<String> {
    let mut v = bodies(who, q).await;
    v.sort();
    v
}

/// A raw `GET /search` with these query parameters: status and body.
pub async fn raw(app: &TestApp, who: &Person, params: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = app
        .http
        .get(app.url("/api/v1/search"))
        .query(params)
        .bearer_auth(who.token())
        .send()
        .await
        .expect("search");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}
