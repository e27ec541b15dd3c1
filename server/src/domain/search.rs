//! Search over the messages and file names the caller may see. Every hit is re-checked
//! through the thread capability: search never widens visibility.

use tsunagu_protocol::apps::Scope;
use tsunagu_protocol::files::SearchResults;
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::Message;

use super::access::Member;
use super::convert;
use super::error::{DomainError, Result};
use super::files::wire_file;
use super::shared::Shared;
use crate::store::contains_pattern;
use crate::store::{files, messages};

/// Message and file-name search.
#[derive(Clone)]
pub struct Search {
    shared: Shared,
}

impl Search {
    pub(super) fn new(shared: Shared) -> Self {
        Search { shared }
    }

    /// Messages and files matching `q` (a substring, Japanese included) that the caller
    /// may see.
    pub async fn search(&self, member: &Member, q: &str) -> Result<SearchResults> {
        let too_long = q.chars().count() > 200;
        let q = q.trim();
        if q.is_empty() || too_long {
            return Err(DomainError::Invalid(
                "q must have 1 to 200 characters".into(),
            ));
        }
        let pattern = contains_pattern(q);
        let mut conn = self.shared.store().conn().await?;
        let message_rows = messages::search(&mut conn, member, &pattern, 50).await?;
        // An app sees file hits only with `files:read` (the route needs `messages:read`).
        let file_rows = if member.session().require(Scope::FilesRead).is_ok() {
            files::search(&mut conn, member, &pattern, 50).await?
        } else {
            Vec::new()
        };
        let mut out: Vec<Message> = Vec::with_capacity(message_rows.len());
        for row in message_rows {
            let thread_id: ThreadId = convert::id(&row.thread_id)?;
            // Re-check through the capability: search never widens visibility.
            let reader = self
                .shared
                .thread_reader(&mut conn, member, &thread_id)
                .await?;
            out.extend(
                self.shared
                    .wire_messages(&mut conn, &reader, vec![row])
                    .await?,
            );
        }
        Ok(SearchResults {
            messages: out,
            files: file_rows.iter().map(wire_file).collect::<Result<_>>()?,
        })
    }
}
