//! A group's file library: every file of the group's threads the caller may see,
//! filtered by kind, uploader, thread, folder, tag, name and time. A 内緒話's files
//! appear only to its members; a refused library is audited like a refused file.

use serde_json::json;
use tsunagu_protocol::files::{FileKind, FileList};
use tsunagu_protocol::ids::{GroupId, ThreadId};

use super::access::Member;
use super::error::{DomainError, Result};
use super::files::wire_file;
use super::shared::Shared;
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::store::contains_pattern;
use crate::store::files::{self, LibraryFilter, LibrarySort};

/// Library query parameters, parsed by the api layer.
#[derive(Debug, Clone, Default)]
pub struct LibraryQuery {
    pub kind: Option<FileKind>,
    pub uploader_id: Option<tsunagu_protocol::ids::UserId>,
    pub thread_id: Option<ThreadId>,
    pub folder: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub sort: LibrarySort,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The file library.
#[derive(Clone)]
pub struct Library {
    shared: Shared,
}

impl Library {
    pub(super) fn new(shared: Shared) -> Self {
        Library { shared }
    }

    /// The group's file library, only what the caller may see.
    #[allow(clippy::too_many_arguments)]
    pub async fn file_library(
        &self,
        member: &Member,
        group_id: GroupId,
        filter: LibraryQuery,
        meta: &RequestMeta,
    ) -> Result<FileList> {
        let mut conn = self.shared.store().conn().await?;
        let gm = match self.shared.group_member(&mut conn, member, &group_id).await {
            Ok(gm) => gm,
            Err(DomainError::NotFound(_)) => {
                drop(conn);
                let event = AuditEvent::new(
                    Action::FileAccessDenied,
                    Outcome::Denied,
                    &member.session().actor(),
                )
                .target("group", group_id.to_string())
                .detail(json!({ "attempted": "library" }));
                audit::append_alone(self.shared.store(), meta, event).await?;
                return Err(DomainError::NotFound("group"));
            }
            Err(e) => return Err(e),
        };
        let limit = filter.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(DomainError::Invalid(
                "limit must be between 1 and 200".into(),
            ));
        }
        let offset: i64 = match &filter.cursor {
            Some(c) => c
                .parse()
                .ok()
                .filter(|o: &i64| *o >= 0)
                .ok_or_else(|| DomainError::Invalid("bad cursor".into()))?,
            None => 0,
        };
        let f = LibraryFilter {
            kind: filter.kind,
            uploader_id: filter.uploader_id.map(|u| u.to_string()),
            thread_id: filter.thread_id.map(|t| t.to_string()),
            folder: filter.folder.clone(),
            tag_pattern: filter
                .tag
                .as_deref()
                .map(|t| contains_pattern(&format!("\"{t}\""))),
            name_pattern: filter
                .q
                .as_deref()
                .filter(|q| !q.trim().is_empty())
                .map(|q| contains_pattern(q.trim())),
            from_ms: filter.from_ms,
            to_ms: filter.to_ms,
        };
        let mut rows = files::library(&mut conn, &gm, &f, filter.sort, limit + 1, offset).await?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.pop();
            Some((offset + limit).to_string())
        } else {
            None
        };
        Ok(FileList {
            files: rows.iter().map(wire_file).collect::<Result<_>>()?,
            next_cursor,
        })
    }
}
