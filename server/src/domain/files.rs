//! Files: streamed encrypted upload into a thread, metadata, ranged download, delete by
//! crypto-shredding, folders and tags. The library is in `library`, search in `search`,
//! key rotation and the orphan sweep in `maintenance`. Visibility is the thread's: a 内緒話 file is visible only to its members.
//! Every access — and every refused attempt — is audited.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tsunagu_protocol::files::{FileInfo, FileKind, UpdateFile};
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::MemberRole;

use super::access::Member;
use super::convert;
use super::error::{DomainError, Internal, Result};
use super::search;
use super::shared::Shared;
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::blob::keys::KeyRing;
use crate::blob::segment::{FileKey, SEGMENT_SIZE};
use crate::blob::{BlobError, BlobStore};
use crate::clock::{now_ms, rfc3339};
use crate::store::files::{self, FileRow};
use crate::store::{groups, regions};

/// Bytes of the start of a file kept for content sniffing.
const SNIFF_BYTES: usize = 64 * 1024;
/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 255;

/// The blob store and the key-encryption keys, held by the domain.
pub struct FileServices {
    pub blobs: BlobStore,
    /// Shared with accounts, which seal TOTP secrets with the same KEKs.
    pub keys: std::sync::Arc<KeyRing>,
}

/// What the caller asked for of a file's content.
#[derive(Debug, Clone, Copy)]
pub struct ByteRange {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
}

/// A download ready to stream: metadata, the served range and the plaintext stream.
pub struct Download {
    pub info: FileInfo,
    pub range: ByteRange,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::result::Result<Bytes, BlobError>> + Send>>,
}

/// A file or folder name: [`super::validate::file_name`].
pub fn check_file_name(name: &str) -> Result<String> {
    super::validate::file_name("file name", name, MAX_NAME_CHARS)
}

/// Kind and served Content-Type from the first bytes of the content.
pub fn sniff(head: &[u8]) -> (FileKind, String) {
    if let Some(t) = infer::get(head) {
        let mime = t.mime_type();
        let kind = match mime {
            m if m.starts_with("image/") => FileKind::Image,
            "application/pdf" => FileKind::Pdf,
            "application/msword"
            | "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                FileKind::Word
            }
            "application/vnd.ms-excel"
            | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
                FileKind::Excel
            }
            "application/vnd.ms-powerpoint"
            | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
                FileKind::Powerpoint
            }
            _ => FileKind::Other,
        };
        // Active content is never served under its own type.
        let served = match kind {
            FileKind::Image if mime == "image/svg+xml" => "application/octet-stream",
            FileKind::Other => "application/octet-stream",
            _ => mime,
        };
        return (kind, served.to_owned());
    }
    // Text: valid UTF-8 (a character may be cut at the end of the sniffed part), no NUL.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() >= SNIFF_BYTES.min(head.len()),
    };
    if !head.is_empty() && valid && !head.contains(&0) {
        return (FileKind::Text, "text/plain; charset=utf-8".into());
    }
    (FileKind::Other, "application/octet-stream".into())
}

pub(super) fn wire_file(row: &FileRow) -> Result<FileInfo> {
    Ok(FileInfo {
        id: row.id.clone(),
        group_id: convert::id(&row.group_id)?,
        thread_id: convert::id(&row.thread_id)?,
        uploader_id: convert::id(&row.uploader_id)?,
        name: row.name.clone(),
        kind: row.kind,
        content_type: row.content_type.clone(),
        size: row.size.max(0) as u64,
        folder: row.folder.clone(),
        tags: serde_json::from_str(&row.tags)
            .map_err(|_| DomainError::Internal("file tags".into()))?,
        created_at: rfc3339(row.created_at),
    })
}

/// Upload, metadata, download, deletion and filing of files.
#[derive(Clone)]
pub struct Files {
    shared: Shared,
    files: Arc<FileServices>,
    /// One text extraction at a time per node: its memory (the file, up to
    /// `extract::MAX_INPUT_BYTES`, and what it inflates) is counted once.
    extract_slot: Arc<tokio::sync::Semaphore>,
}

impl Files {
    pub(super) fn new(shared: Shared, files: Arc<FileServices>) -> Self {
        Files {
            shared,
            files,
            extract_slot: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    fn files(&self) -> &FileServices {
        &self.files
    }

    /// Records a refused file access (unknown, invisible, or not allowed).
    async fn deny_file(
        &self,
        member: &Member,
        file_id: &str,
        attempted: &'static str,
        meta: &RequestMeta,
    ) -> DomainError {
        let event = AuditEvent::new(
            Action::FileAccessDenied,
            Outcome::Denied,
            &member.session().actor(),
        )
        .file(file_id.to_owned())
        .target("file", file_id.to_owned())
        .detail(json!({ "attempted": attempted }));
        if let Err(e) = audit::append_alone(self.shared.store(), meta, event).await {
            return e.into();
        }
        DomainError::NotFound("file")
    }

    /// A live file the caller may see, or an audited 404.
    async fn visible_file(
        &self,
        member: &Member,
        file_id: &str,
        attempted: &'static str,
        meta: &RequestMeta,
    ) -> Result<FileRow> {
        let mut conn = self.shared.store().conn().await?;
        let row = match files::get_live(&mut conn, file_id).await? {
            Some(row) => row,
            None => return Err(self.deny_file(member, file_id, attempted, meta).await),
        };
        let thread_id: ThreadId = convert::id(&row.thread_id)?;
        match self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await
        {
            Ok(_) => Ok(row),
            Err(DomainError::NotFound(_)) => {
                drop(conn);
                Err(self.deny_file(member, file_id, attempted, meta).await)
            }
            Err(e) => Err(e),
        }
    }

    /// Streams `body` into an encrypted blob in `thread_id`, then commits the metadata.
    /// Nothing is visible until the blob is complete and the row committed; a failure
    /// at any point removes what was written.
    pub async fn upload_file<S, E>(
        &self,
        member: &Member,
        thread_id: ThreadId,
        name: &str,
        mut body: S,
        meta: &RequestMeta,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let name = check_file_name(name)?;
        let (reader, policy) = {
            let mut conn = self.shared.store().conn().await?;
            let reader = match self
                .shared
                .thread_reader(&mut conn, member, &thread_id)
                .await
            {
                Ok(r) => r,
                Err(DomainError::NotFound(_)) => {
                    drop(conn);
                    let event = AuditEvent::new(
                        Action::FileAccessDenied,
                        Outcome::Denied,
                        &member.session().actor(),
                    )
                    .target("thread", thread_id.to_string())
                    .detail(json!({ "attempted": "upload" }));
                    audit::append_alone(self.shared.store(), meta, event).await?;
                    return Err(DomainError::NotFound("thread"));
                }
                Err(e) => return Err(e),
            };
            let region = regions::get(&mut conn, &member.session().region_id().to_string())
                .await?
                .ok_or_else(|| DomainError::Internal("member without region".into()))?;
            (reader, region)
        };
        if reader.archived {
            return Err(DomainError::Conflict("the group is archived".into()));
        }
        let max = policy.max_file_bytes.max(0) as u64;
        let allowed: Option<Vec<String>> = policy
            .allowed_file_kinds
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| DomainError::Internal("allowed kinds".into()))?;

        let file_id = uuid::Uuid::now_v7();
        let mut upload = self
            .files()
            .blobs
            .start_upload(file_id)
            .await
            .map_err(blob_internal)?;
        let mut head: Vec<u8> = Vec::new();
        let mut sniffed: Option<(FileKind, String)> = None;
        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| DomainError::Invalid(format!("upload interrupted: {e}")))?;
                if upload.size() + chunk.len() as u64 > max {
                    return Err(DomainError::TooLarge(max));
                }
                if sniffed.is_none() {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                    if head.len() >= SNIFF_BYTES {
                        sniffed = Some(check_kind(sniff(&head), allowed.as_deref())?);
                    }
                }
                upload.write(&chunk).await.map_err(blob_internal)?;
            }
            if sniffed.is_none() {
                sniffed = Some(check_kind(sniff(&head), allowed.as_deref())?);
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            upload.abort().await;
            let _ = self.files().blobs.delete(&file_id.to_string()).await;
            return Err(e);
        }
        let (kind, content_type) =
            sniffed.unwrap_or((FileKind::Other, "application/octet-stream".into()));
        let (size, key) = upload.finish().await.map_err(blob_internal)?;
        let id = file_id.to_string();
        let (kek_id, wrapped) = self.files().keys.wrap(&id, key.data_key());
        let row = FileRow {
            id: id.clone(),
            region_id: member.session().region_id().to_string(),
            group_id: reader.thread.group_id.clone(),
            thread_id: reader.thread.id.clone(),
            uploader_id: member.session().user_id().to_string(),
            name,
            kind,
            content_type,
            size: size as i64,
            segment_size: SEGMENT_SIZE as i64,
            nonce_prefix: hex::encode(key.prefix()),
            wrapped_key: Some(wrapped),
            kek_id: Some(kek_id),
            folder: None,
            tags: "[]".into(),
            created_at: now_ms(),
            deleted_at: None,
            deleted_by: None,
        };
        let committed: Result<()> = async {
            let mut tx = self.shared.store().begin().await?;
            files::insert(&mut tx, &row).await?;
            search::index::add_file(&mut tx, &row).await?;
            audit::append(
                &mut tx,
                meta,
                AuditEvent::new(
                    Action::FileUploaded,
                    Outcome::Success,
                    &member.session().actor(),
                )
                .file(id.clone())
                .group(row.group_id.clone())
                .target("file", id.clone())
                .detail(json!({ "size": size, "kind": row.kind, "thread_id": row.thread_id })),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = committed {
            let _ = self.files().blobs.delete(&id).await;
            return Err(e);
        }
        self.spawn_extraction(row.clone());
        wire_file(&row)
    }

    /// A file's metadata (audited).
    pub async fn file_info(
        &self,
        member: &Member,
        file_id: &str,
        meta: &RequestMeta,
    ) -> Result<FileInfo> {
        let row = self.visible_file(member, file_id, "metadata", meta).await?;
        audit::append_alone(
            self.shared.store(),
            meta,
            AuditEvent::new(
                Action::FileMetadataViewed,
                Outcome::Success,
                &member.session().actor(),
            )
            .file(row.id.clone())
            .group(row.group_id.clone())
            .target("file", row.id.clone()),
        )
        .await?;
        wire_file(&row)
    }

    /// Opens a file for download. `range` is checked against the size; the returned
    /// stream decrypts only the segments needed. The access is audited before any byte
    /// leaves; an integrity failure is audited when it is detected.
    pub async fn download_file(
        &self,
        member: &Member,
        file_id: &str,
        range: Option<(Option<u64>, Option<u64>)>,
        meta: &RequestMeta,
    ) -> Result<Download> {
        let row = self.visible_file(member, file_id, "download", meta).await?;
        let size = row.size.max(0) as u64;
        let byte_range = match range {
            None => ByteRange {
                start: 0,
                end: size,
            },
            Some(spec) => {
                resolve_range(spec, size).ok_or(DomainError::RangeNotSatisfiable(size))?
            }
        };
        let key = self.file_key(&row)?;
        audit::append_alone(
            self.shared.store(),
            meta,
            AuditEvent::new(
                Action::FileDownloaded,
                Outcome::Success,
                &member.session().actor(),
            )
            .file(row.id.clone())
            .group(row.group_id.clone())
            .target("file", row.id.clone())
            .detail(json!({ "start": byte_range.start, "end": byte_range.end })),
        )
        .await?;
        let stream =
            self.files()
                .blobs
                .read(row.id.clone(), key, size, byte_range.start, byte_range.end);
        let domain = self.clone();
        let meta = meta.clone();
        let actor = member.session().actor();
        let (fid, gid) = (row.id.clone(), row.group_id.clone());
        let mut reported = false;
        let body = stream.map(move |item| {
            if let Err(BlobError::Integrity(e)) = &item {
                if !reported {
                    reported = true;
                    tracing::error!(file_id = %fid, segment = e.segment, "file integrity check failed");
                    let (d, m, a, f, g, seg) = (domain.clone(), meta.clone(), actor.clone(), fid.clone(), gid.clone(), e.segment);
                    tokio::spawn(async move {
                        let event = AuditEvent::new(Action::FileIntegrityFailed, Outcome::Failure, &a)
                            .file(f.clone())
                            .group(g)
                            .target("file", f)
                            .detail(json!({ "segment": seg }));
                        if let Err(e) = audit::append_alone(d.shared.store(), &m, event).await {
                            tracing::error!(error = %e, "could not audit an integrity failure");
                        }
                    });
                }
            }
            item
        });
        Ok(Download {
            info: wire_file(&row)?,
            range: byte_range,
            body: Box::pin(body),
        })
    }

    fn file_key(&self, row: &FileRow) -> Result<FileKey> {
        let (Some(kek), Some(wrapped)) = (&row.kek_id, &row.wrapped_key) else {
            return Err(DomainError::NotFound("file"));
        };
        let dek = self
            .files()
            .keys
            .unwrap(kek, &row.id, wrapped)
            .map_err(|e| {
                tracing::error!(file_id = %row.id, error = %e, "data key does not unwrap");
                DomainError::Integrity
            })?;
        let prefix: [u8; 7] = hex::decode(&row.nonce_prefix)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(DomainError::Integrity)?;
        Ok(FileKey::from_parts(dek, prefix, convert::id(&row.id)?))
    }

    /// Deletes a file (its uploader or a group owner/admin): the data key is destroyed
    /// first (crypto-shredding), then the blob; the row stays as a tombstone for the
    /// audit trail.
    pub async fn delete_file(
        &self,
        member: &Member,
        file_id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        let row = self.visible_file(member, file_id, "delete", meta).await?;
        self.check_file_manager(member, &row).await?;
        let mut tx = self.shared.store().begin().await?;
        if !files::shred(
            &mut tx,
            &row.id,
            &member.session().user_id().to_string(),
            now_ms(),
        )
        .await?
        {
            return Err(DomainError::NotFound("file"));
        }
        // Shredded means unsearchable too: name, tags and extracted text go with the key.
        search::index::remove(&mut tx, &row.id).await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::FileDeleted,
                Outcome::Success,
                &member.session().actor(),
            )
            .file(row.id.clone())
            .group(row.group_id.clone())
            .target("file", row.id.clone()),
        )
        .await?;
        tx.commit().await?;
        if let Err(e) = self.files().blobs.delete(&row.id).await {
            // The key is gone already; the sweeper retries the blob.
            tracing::warn!(file_id = %row.id, error = %e, "blob delete failed after shredding");
        }
        Ok(())
    }

    /// Starts extracting the text of a file just committed, in the background: one
    /// file at a time per node ([`Files::extract_slot`]), on a blocking thread, bounded
    /// in input, output and time (`search::extract`). The file is findable by name at
    /// once and by its text when this finishes.
    pub(super) fn spawn_extraction(&self, row: FileRow) {
        if !search::index::extractable(row.kind) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.extract_text(&row).await {
                tracing::warn!(file_id = %row.id, error = %e, "file text extraction failed");
            }
        });
    }

    /// Files whose extraction did not finish (the node stopped): started again.
    pub async fn resume_extractions(&self) -> Result<usize> {
        let mut conn = self.shared.store().conn().await?;
        let ids = crate::store::search::pending_extraction(&mut conn, 1000).await?;
        let mut started = 0;
        for id in ids {
            if let Some(row) = files::get_live(&mut conn, &id).await? {
                self.spawn_extraction(row);
                started += 1;
            }
        }
        Ok(started)
    }

    async fn extract_text(&self, row: &FileRow) -> Result<()> {
        let _slot = self
            .extract_slot
            .acquire()
            .await
            .map_err(|_| DomainError::Internal("extraction closed".into()))?;
        let size = row.size.max(0) as u64;
        let text = if size > search::extract::MAX_INPUT_BYTES {
            Err(search::extract::ExtractError::TooLarge)
        } else {
            let key = self.file_key(row)?;
            let mut stream = Box::pin(self.files().blobs.read(row.id.clone(), key, size, 0, size));
            let mut data = Vec::with_capacity(size as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    DomainError::Internal(format!("reading for extraction: {e}").into())
                })?;
                data.extend_from_slice(&chunk);
            }
            let kind = row.kind;
            let job = tokio::task::spawn_blocking(move || search::extract::extract(kind, &data));
            match tokio::time::timeout(std::time::Duration::from_secs(60), job).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(search::extract::ExtractError::Malformed),
                Err(_) => {
                    tracing::warn!(file_id = %row.id, "file text extraction timed out");
                    Err(search::extract::ExtractError::Malformed)
                }
            }
        };
        let (content, state) = match text {
            Ok(t) => (search::normalize::normalize(&t), 1),
            Err(e) => {
                tracing::info!(file_id = %row.id, reason = %e, "no text extracted; found by name only");
                (String::new(), 2)
            }
        };
        let mut tx = self.shared.store().begin().await?;
        // Its current name and tags (they may have changed); gone if deleted meanwhile.
        if let Some(current) = files::get_live(&mut tx, &row.id).await? {
            let body = search::index::file_body(&current, &content);
            search::index::set_text(&mut tx, &row.id, &body, Some(state)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn check_file_manager(&self, member: &Member, row: &FileRow) -> Result<()> {
        if row.uploader_id == member.session().user_id().to_string() {
            return Ok(());
        }
        let mut conn = self.shared.store().conn().await?;
        let role = groups::get_member(
            &mut conn,
            &row.group_id,
            &member.session().user_id().to_string(),
        )
        .await?
        .map(|m| m.role);
        match role {
            Some(MemberRole::Owner | MemberRole::Admin) => Ok(()),
            _ => Err(DomainError::Forbidden(
                "only the uploader or a group owner/admin can do this",
            )),
        }
    }

    /// Files it in a folder and tags it (uploader or group owner/admin).
    pub async fn update_file(
        &self,
        member: &Member,
        file_id: &str,
        req: UpdateFile,
        meta: &RequestMeta,
    ) -> Result<FileInfo> {
        let mut row = self.visible_file(member, file_id, "update", meta).await?;
        self.check_file_manager(member, &row).await?;
        if let Some(folder) = &req.folder {
            row.folder = if folder.trim().is_empty() {
                None
            } else {
                Some(check_file_name(folder)?)
            };
        }
        if let Some(tags) = &req.tags {
            if tags.len() > 20 {
                return Err(DomainError::Invalid("at most 20 tags".into()));
            }
            let mut clean = tags
                .iter()
                .map(|t| super::validate::name("tag", t, 50))
                .collect::<Result<Vec<_>>>()?;
            clean.sort();
            clean.dedup();
            row.tags = serde_json::to_string(&clean).unwrap_or_else(|_| "[]".into());
        }
        let mut tx = self.shared.store().begin().await?;
        files::update_organisation(&mut tx, &row.id, row.folder.as_deref(), &row.tags).await?;
        let content = search::index::file_content(&mut tx, &row.id)
            .await?
            .unwrap_or_default();
        search::index::set_text(
            &mut tx,
            &row.id,
            &search::index::file_body(&row, &content),
            None,
        )
        .await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::FileUpdated,
                Outcome::Success,
                &member.session().actor(),
            )
            .file(row.id.clone())
            .group(row.group_id.clone())
            .target("file", row.id.clone()),
        )
        .await?;
        tx.commit().await?;
        wire_file(&row)
    }
}

fn check_kind(
    sniffed: (FileKind, String),
    allowed: Option<&[String]>,
) -> Result<(FileKind, String)> {
    match allowed {
        Some(list) if !list.iter().any(|k| k == sniffed.0.as_str()) => {
            Err(DomainError::UnsupportedKind(sniffed.0.as_str()))
        }
        _ => Ok(sniffed),
    }
}

pub(super) fn blob_internal(e: BlobError) -> DomainError {
    match e {
        BlobError::Integrity(_) => DomainError::Integrity,
        other => DomainError::Internal(Internal::caused_by("blob store", other)),
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a `size`-byte file; `None` when
/// unsatisfiable.
pub fn resolve_range(spec: (Option<u64>, Option<u64>), size: u64) -> Option<ByteRange> {
    match spec {
        (Some(start), end) => {
            if start >= size {
                return None;
            }
            let end = end.map(|e| e.min(size - 1)).unwrap_or(size - 1);
            (end >= start).then_some(ByteRange {
                start,
                end: end + 1,
            })
        }
        (None, Some(suffix)) => {
            if suffix == 0 || size == 0 {
                return None;
            }
            Some(ByteRange {
                start: size.saturating_sub(suffix),
                end: size,
            })
        }
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_paths_or_control_characters_are_refused() {
        assert_eq!(
            check_file_name(" 診療情報提供書.pdf ").unwrap(),
            "診療情報提供書.pdf"
        );
        for bad in [
            "../etc/passwd",
            "a\\b",
            "x\u{0}y",
            "請求書\u{202E}txt.exe",
            "\u{2067}a.pdf",
            "",
            ".",
            "..",
            &"あ".repeat(256),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_come_from_content() {
        assert_eq!(sniff(b"%PDF-1.7\n...").0, FileKind::Pdf);
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0]).0,
            FileKind::Image
        );
        assert_eq!(
            sniff("体温 36.8℃、血圧 128/76".as_bytes()).0,
            FileKind::Text
        );
        assert_eq!(sniff(&[0, 1, 2, 3, 4]).0, FileKind::Other);
        assert_eq!(sniff(b"").0, FileKind::Other);
    }

    #[test]
    fn ranges_resolve_like_http() {
        let r = |s, e| resolve_range((s, e), 100).map(|r| (r.start, r.end));
        assert_eq!(r(Some(0), Some(0)), Some((0, 1)));
        assert_eq!(r(Some(90), None), Some((90, 100)));
        assert_eq!(r(Some(90), Some(500)), Some((90, 100)));
        assert_eq!(r(None, Some(10)), Some((90, 100)));
        assert_eq!(r(Some(100), None), None);
        assert_eq!(r(Some(5), Some(4)), None);
        assert_eq!(resolve_range((Some(0), None), 0).map(|r| r.end), None);
    }
}
