//! The file library: metadata of encrypted files, organising them, and search.

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, ThreadId, UserId};
use crate::messaging::Message;

/// What a file is, detected from its content (never from the name or the client's
/// `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Image,
    Pdf,
    Word,
    Excel,
    Powerpoint,
    Text,
    Other,
}

impl FileKind {
    pub const ALL: &'static [FileKind] = &[
        FileKind::Image,
        FileKind::Pdf,
        FileKind::Word,
        FileKind::Excel,
        FileKind::Powerpoint,
        FileKind::Text,
        FileKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Image => "image",
            FileKind::Pdf => "pdf",
            FileKind::Word => "word",
            FileKind::Excel => "excel",
            FileKind::Powerpoint => "powerpoint",
            FileKind::Text => "text",
            FileKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// A file's metadata (`POST /api/v1/threads/{id}/files` answers with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileInfo {
    pub id: String,
    pub group_id: GroupId,
    pub thread_id: ThreadId,
    pub uploader_id: UserId,
    /// The original name (UTF-8, Japanese welcome).
    pub name: String,
    pub kind: FileKind,
    pub content_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileList {
    pub files: Vec<FileInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `PATCH /api/v1/files/{id}`: file it in a folder and tag it. Absent fields stay; an
/// empty `folder` removes it from its folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateFile {
    /// Like a file name: no control characters or path separators, not `.` or `..`;
    /// blank removes the file from its folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 255,
            pattern = "^(?:[^\\S\\u001c-\\u001f]*|(?![^\\S\\u001c-\\u001f]*\\.\\.?[^\\S\\u001c-\\u001f]*$)(?!\\s*$)(?:[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}]\\u200d(?=[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}])|[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}-\u{E007F}/\\\\])*)$"
        )
    )]
    pub folder: Option<String>,
    /// Up to 20 tags of 1–50 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Tag>>, max_items = 20))]
    pub tags: Option<Vec<String>>,
}

/// A tag as `PATCH /api/v1/files/{id}` takes it: 1–50 characters, not blank, no control
/// characters. Only the schema uses this type; the wire carries plain strings.
#[cfg(feature = "openapi")]
pub struct Tag;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(50))
            .pattern(Some(crate::NAME_PATTERN))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Tag {}

/// `GET /api/v1/search?q=`: messages and files the caller may see, ranked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResults {
    /// Messages and files together, best first (match quality and recency).
    #[serde(default)]
    pub hits: Vec<SearchHit>,
    /// The hits grouped by thread, in the order of each thread's best hit.
    #[serde(default)]
    pub threads: Vec<ThreadHits>,
    /// More documents matched than were ranked (the newest 200 matches are ranked):
    /// narrow the query or the filters to see older ones.
    #[serde(default)]
    pub more: bool,
    /// The message hits as full messages, in the order of `hits`.
    pub messages: Vec<Message>,
    /// The file hits, in the order of `hits`.
    pub files: Vec<FileInfo>,
}

/// The query of `GET /api/v1/search`, as the SDK sends it. Only `q` is required.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchQuery {
    pub q: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<ThreadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<UserId>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_file: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_kind: Option<FileKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SearchHitKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl SearchQuery {
    pub fn text(q: impl Into<String>) -> SearchQuery {
        SearchQuery {
            q: q.into(),
            ..SearchQuery::default()
        }
    }
}

/// Whether a hit is a message or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SearchHitKind {
    Message,
    File,
}

/// One search hit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    pub kind: SearchHitKind,
    /// Higher is better; only the order within one answer means anything.
    pub score: f64,
    pub group_id: GroupId,
    pub thread_id: ThreadId,
    /// The message's author or the file's uploader.
    pub author_id: UserId,
    pub created_at: String,
    /// For a message hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<crate::ids::MessageId>,
    /// For a file hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Where to open it: the thread, and for a message its `seq` — page the timeline
    /// around it with `GET /threads/{thread_id}/messages?after_seq=…`.
    pub jump: JumpTarget,
    /// A short excerpt around the first match, cut into parts; `hit` parts are what
    /// matched. Plain text: render it escaped.
    pub snippet: Vec<SnippetPart>,
}

/// Where a hit is in its timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JumpTarget {
    pub thread_id: ThreadId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

/// A piece of a snippet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnippetPart {
    pub text: String,
    /// This part matched a term of the query.
    #[serde(default)]
    pub hit: bool,
}

/// How many of the ranked hits are in one thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThreadHits {
    pub group_id: GroupId,
    pub thread_id: ThreadId,
    pub count: u64,
}
