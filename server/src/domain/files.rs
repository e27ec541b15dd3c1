//! Files: streamed encrypted upload into a thread, metadata, ranged download, delete by
//! crypto-shredding, the group's file library, search, key rotation and the orphan
//! sweeper. Visibility is the thread's: a 内緒話 file is visible only to its members.
//! Every access — and every refused attempt — is audited.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tsunagu_protocol::files::{FileInfo, FileKind, FileList, SearchResults, UpdateFile};
use tsunagu_protocol::ids::{GroupId, ThreadId};
use tsunagu_protocol::messaging::{MemberRole, Message};

use super::access::Member;
use super::error::{DomainError, Result};
use super::{convert, Domain};
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::blob::keys::KeyRing;
use crate::blob::segment::{FileKey, SEGMENT_SIZE};
use crate::blob::{BlobError, BlobStore};
use crate::clock::{now_ms, rfc3339};
use crate::store::files::{self, FileRow, LibraryFilter, LibrarySort};
use crate::store::{groups, messages, regions};

/// Bytes of the start of a file kept for content sniffing.
const SNIFF_BYTES: usize = 64 * 1024;
/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 255;

/// The blob store and the key-encryption keys, held by the domain.
pub struct FileServices {
    pub blobs: BlobStore,
    pub keys: KeyRing,
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

/// Refuses names that could mislead or break something downstream: control
/// characters, path separators, `.`/`..`, over-long names.
pub fn check_file_name(name: &str) -> Result<String> {
    // Characters and length as sent (as the published pattern states them), then trimmed.
    let bad_chars = name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
        || name.chars().count() > MAX_NAME_CHARS;
    let name = name.trim();
    let bad = bad_chars || name.is_empty() || name == "." || name == "..";
    if bad {
        return Err(DomainError::Invalid(format!(
            "file names need 1 to {MAX_NAME_CHARS} characters without control characters or path separators"
        )));
    }
    Ok(name.to_owned())
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

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn wire_file(row: &FileRow) -> Result<FileInfo> {
    Ok(FileInfo {
        id: row.id.clone(),
        group_id: convert::id(&row.group_id)?,
        thread_id: convert::id(&row.thread_id)?,
        uploader_id: convert::id(&row.uploader_id)?,
        name: row.name.clone(),
        kind: FileKind::parse(&row.kind)
            .ok_or_else(|| DomainError::Internal("file kind".into()))?,
        content_type: row.content_type.clone(),
        size: row.size.max(0) as u64,
        folder: row.folder.clone(),
        tags: serde_json::from_str(&row.tags)
            .map_err(|_| DomainError::Internal("file tags".into()))?,
        created_at: rfc3339(row.created_at),
    })
}

impl Domain {
    fn files(&self) -> &FileServices {
        &self.inner.files
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
        if let Err(e) = audit::append_alone(self.store(), meta, event).await {
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
        let mut conn = self.store().conn().await?;
        let row = match files::get_live(&mut conn, file_id).await? {
            Some(row) => row,
            None => return Err(self.deny_file(member, file_id, attempted, meta).await),
        };
        let thread_id: ThreadId = convert::id(&row.thread_id)?;
        match self.thread_reader(&mut conn, member, &thread_id).await {
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
            let mut conn = self.store().conn().await?;
            let reader = match self.thread_reader(&mut conn, member, &thread_id).await {
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
                    audit::append_alone(self.store(), meta, event).await?;
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
            kind: kind.as_str().to_owned(),
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
            let mut tx = self.store().begin().await?;
            files::insert(&mut tx, &row).await?;
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
            self.store(),
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
            self.store(),
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
                        if let Err(e) = audit::append_alone(d.store(), &m, event).await {
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
        let mut tx = self.store().begin().await?;
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

    async fn check_file_manager(&self, member: &Member, row: &FileRow) -> Result<()> {
        if row.uploader_id == member.session().user_id().to_string() {
            return Ok(());
        }
        let mut conn = self.store().conn().await?;
        let role = groups::get_member(
            &mut conn,
            &row.group_id,
            &member.session().user_id().to_string(),
        )
        .await?
        .map(|m| m.role);
        match role.as_deref() {
            Some(r) if r == MemberRole::Owner.as_str() || r == MemberRole::Admin.as_str() => Ok(()),
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
        let mut tx = self.store().begin().await?;
        files::update_organisation(&mut tx, &row.id, row.folder.as_deref(), &row.tags).await?;
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

    /// The group's file library, only what the caller may see.
    #[allow(clippy::too_many_arguments)]
    pub async fn file_library(
        &self,
        member: &Member,
        group_id: GroupId,
        filter: LibraryQuery,
        meta: &RequestMeta,
    ) -> Result<FileList> {
        let mut conn = self.store().conn().await?;
        let gm = match self.group_member(&mut conn, member, &group_id).await {
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
                audit::append_alone(self.store(), meta, event).await?;
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
            kind: filter.kind.map(|k| k.as_str().to_owned()),
            uploader_id: filter.uploader_id.map(|u| u.to_string()),
            thread_id: filter.thread_id.map(|t| t.to_string()),
            folder: filter.folder.clone(),
            tag_pattern: filter
                .tag
                .as_deref()
                .map(|t| escape_like(&format!("\"{t}\""))),
            name_pattern: filter
                .q
                .as_deref()
                .filter(|q| !q.trim().is_empty())
                .map(|q| escape_like(q.trim())),
            from_ms: filter.from_ms,
            to_ms: filter.to_ms,
        };
        let me = member.session().user_id().to_string();
        let mut rows = files::library(
            &mut conn,
            &gm.group.id,
            &me,
            &f,
            filter.sort,
            limit + 1,
            offset,
        )
        .await?;
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
        let pattern = escape_like(q);
        let s = member.session();
        let (region, me) = (s.region_id().to_string(), s.user_id().to_string());
        let mut conn = self.store().conn().await?;
        let message_rows = messages::search(&mut conn, &region, &me, &pattern, 50).await?;
        let file_rows = files::search(&mut conn, &region, &me, &pattern, 50).await?;
        let mut out: Vec<Message> = Vec::with_capacity(message_rows.len());
        for row in message_rows {
            let thread_id: ThreadId = convert::id(&row.thread_id)?;
            // Re-check through the capability: search never widens visibility.
            let reader = self.thread_reader(&mut conn, member, &thread_id).await?;
            out.extend(
                self.wire_messages(&mut conn, &reader.thread, vec![row])
                    .await?,
            );
        }
        Ok(SearchResults {
            messages: out,
            files: file_rows.iter().map(wire_file).collect::<Result<_>>()?,
        })
    }

    /// The configured KEK ids and the current one.
    pub fn kek_ids(&self) -> (Vec<String>, String) {
        let keys = &self.files().keys;
        (
            keys.ids().map(str::to_owned).collect(),
            keys.current_id().to_owned(),
        )
    }

    /// Re-wraps every data key under the current KEK (blobs untouched). Returns how
    /// many were re-wrapped; afterwards older KEKs can be removed.
    pub async fn rotate_keys(&self) -> Result<u64> {
        let current = self.files().keys.current_id().to_owned();
        let mut done = 0;
        loop {
            let batch = {
                let mut conn = self.store().conn().await?;
                files::wrapped_not_by(&mut conn, &current, 500).await?
            };
            if batch.is_empty() {
                break;
            }
            let mut tx = self.store().begin().await?;
            for row in &batch {
                let (Some(old), Some(wrapped)) = (&row.kek_id, &row.wrapped_key) else {
                    continue;
                };
                let dek = self
                    .files()
                    .keys
                    .unwrap(old, &row.id, wrapped)
                    .map_err(|e| DomainError::Internal(format!("file {}: {e}", row.id)))?;
                let (kek, rewrapped) = self.files().keys.wrap(&row.id, &dek);
                if files::rewrap(&mut tx, &row.id, old, &kek, &rewrapped).await? {
                    done += 1;
                }
            }
            audit::append(
                &mut tx,
                &RequestMeta {
                    user_agent: Some("tsunagu-server keys rotate".into()),
                    ..Default::default()
                },
                AuditEvent::new(Action::KeyRotated, Outcome::Success, &Default::default())
                    .detail(json!({ "kek_id": current, "files": batch.len() })),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(done)
    }

    /// Removes blobs that have no live metadata and are older than `grace_secs`:
    /// interrupted uploads, and blobs whose delete failed after the key was shredded.
    pub async fn sweep_orphans(&self, grace_secs: u64) -> Result<u64> {
        let cutoff = chrono::Utc::now() - chrono::Duration::seconds(grace_secs as i64);
        let staging_cutoff =
            std::time::SystemTime::now() - std::time::Duration::from_secs(grace_secs);
        let mut removed = self
            .files()
            .blobs
            .sweep_staging(staging_cutoff)
            .map_err(|e| DomainError::Internal(format!("sweeping staging files: {e}")))?;
        let prefix = object_store::path::Path::from("files");
        let mut listing = self.files().blobs.raw().list(Some(&prefix));
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| DomainError::Internal(format!("listing blobs: {e}")))?;
            if meta.last_modified > cutoff {
                continue;
            }
            let Some(id) = meta.location.filename().map(str::to_owned) else {
                continue;
            };
            let live = {
                let mut conn = self.store().conn().await?;
                files::get_live(&mut conn, &id).await?.is_some()
            };
            if !live {
                self.files()
                    .blobs
                    .delete(&id)
                    .await
                    .map_err(blob_internal)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

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

fn blob_internal(e: BlobError) -> DomainError {
    match e {
        BlobError::Integrity(_) => DomainError::Integrity,
        other => DomainError::Internal(other.to_string()),
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

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(escape_like("50%_x"), "%50\\%\\_x%");
    }
}
