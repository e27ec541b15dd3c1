//! What an app's token may call: one table from route to scope.
//!
//! It fails closed: a route that is not in the table refuses every app, so a new route
//! is closed to apps until someone decides its scope here. A person's token is never
//! checked against it. What an app may *see* on an allowed route is still decided by
//! the domain's visibility rule for its account, exactly as for a person; scopes only
//! narrow what the app may *do*. The websocket (`GET /api/v1/ws`) is in the table for
//! connecting; its frames are checked by the domain against the same scopes.

use axum::extract::MatchedPath;
use axum::http::request::Parts;
use axum::http::Method;
use tsunagu_protocol::apps::Scope;

use super::error::ApiError;
use crate::domain::{DomainError, Session};

/// What a route needs from an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// This scope.
    Scope(Scope),
    /// Any valid app token (the app's own identity).
    Token,
}

use Needs::{Scope as S, Token};
use Scope::*;

/// Every route an app may call, with what it needs. Paths are the router's templates.
pub const TABLE: &[(&str, &str, Needs)] = &[
    ("GET", "/api/v1/me", Token),
    // Groups the app is in, and their members.
    ("GET", "/api/v1/groups", S(GroupsRead)),
    ("GET", "/api/v1/groups/{id}", S(GroupsRead)),
    ("GET", "/api/v1/groups/{id}/members", S(GroupsRead)),
    // Threads and timelines (only the main timelines of its groups: the app is never
    // in a 内緒話).
    ("GET", "/api/v1/groups/{id}/threads", S(MessagesRead)),
    ("GET", "/api/v1/threads/{id}", S(MessagesRead)),
    ("GET", "/api/v1/threads/{id}/messages", S(MessagesRead)),
    (
        "GET",
        "/api/v1/threads/{id}/messages/{message_id}/history",
        S(MessagesRead),
    ),
    (
        "GET",
        "/api/v1/threads/{id}/messages/{message_id}/readers",
        S(MessagesRead),
    ),
    ("GET", "/api/v1/search", S(MessagesRead)),
    ("GET", "/api/v1/ws", S(MessagesRead)),
    ("POST", "/api/v1/threads/{id}/messages", S(MessagesWrite)),
    (
        "PATCH",
        "/api/v1/threads/{id}/messages/{message_id}",
        S(MessagesWrite),
    ),
    (
        "DELETE",
        "/api/v1/threads/{id}/messages/{message_id}",
        S(MessagesWrite),
    ),
    (
        "POST",
        "/api/v1/threads/{id}/messages/{message_id}/reactions",
        S(MessagesWrite),
    ),
    (
        "DELETE",
        "/api/v1/threads/{id}/messages/{message_id}/reactions/{emoji}",
        S(MessagesWrite),
    ),
    ("POST", "/api/v1/threads/{id}/read", S(MessagesWrite)),
    // Files.
    ("GET", "/api/v1/files/{id}", S(FilesRead)),
    ("GET", "/api/v1/files/{id}/content", S(FilesRead)),
    ("GET", "/api/v1/groups/{id}/files", S(FilesRead)),
    ("POST", "/api/v1/threads/{id}/files", S(FilesWrite)),
    ("PATCH", "/api/v1/files/{id}", S(FilesWrite)),
    ("DELETE", "/api/v1/files/{id}", S(FilesWrite)),
    // The region's audit reports (an archive pulling them nightly).
    ("GET", "/api/v1/admin/audit/events", S(AuditRead)),
    ("GET", "/api/v1/admin/audit/file-access", S(AuditRead)),
    // The directory of professionals.
    ("GET", "/api/v1/users", S(UsersRead)),
    ("GET", "/api/v1/organizations", S(UsersRead)),
];

/// What `method path` needs from an app; `None`: apps may not call it at all.
pub fn needs(method: &Method, path: &str) -> Option<Needs> {
    TABLE
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, n)| *n)
}

/// Refuses an app's call to a route outside its token's scopes (403
/// `insufficient_scope`, naming the scope) or outside the table (403 `forbidden`).
pub fn check(parts: &Parts, session: &Session) -> Result<(), ApiError> {
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    match needs(&parts.method, path) {
        Some(Needs::Token) => Ok(()),
        Some(Needs::Scope(scope)) => Ok(session.require(scope)?),
        None => Err(DomainError::Forbidden("apps cannot call this route").into()),
    }
}
