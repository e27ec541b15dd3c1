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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `GET /api/v1/search?q=`: messages and files the caller may see.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResults {
    pub messages: Vec<Message>,
    pub files: Vec<FileInfo>,
}
