//! The encrypted object store. Blobs live in an `object_store` (local filesystem by
//! default, S3-compatible for clusters) as sealed segments (see [`segment`]); the keys
//! that open them never touch the object store, and the data keys are only ever stored
//! wrapped (see [`keys`]).
//!
//! Uploads and downloads stream: an upload holds one segment plus the multipart
//! writer's bounded buffer; a download holds one sealed segment at a time.

pub mod keys;
pub mod segment;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};

use segment::{FileKey, IntegrityError, SEGMENT_SIZE};

/// Multipart part size: S3's minimum, and the bound of what an upload buffers.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts in flight per upload.
const PART_CONCURRENCY: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob configuration: {0}")]
    Config(String),
}

/// Where blobs go, from configuration.
#[derive(Debug, Clone)]
pub enum Backend {
    Local {
        dir: std::path::PathBuf,
    },
    S3 {
        endpoint: Option<String>,
        bucket: String,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        allow_http: bool,
    },
}

/// The object store holding sealed blobs.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store: interrupted uploads leave staging files there
    /// that the object store's listing does not show.
    local_dir: Option<std::path::PathBuf>,
}

impl BlobStore {
    pub fn open(backend: &Backend) -> Result<Self, BlobError> {
        let store: Arc<dyn ObjectStore> = match backend {
            Backend::Local { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| BlobError::Config(format!("{}: {e}", dir.display())))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir)?
                        .with_automatic_cleanup(true),
                )
            }
            Backend::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if let Some(e) = endpoint {
                    // Path-style addressing: what S3-compatible servers expect.
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                if let (Some(k), Some(s)) = (access_key_id, secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                }
                Arc::new(b.build()?)
            }
        };
        let local_dir = match backend {
            Backend::Local { dir } => Some(dir.clone()),
            Backend::S3 { .. } => None,
        };
        Ok(BlobStore { store, local_dir })
    }

    /// Removes staging files of uploads interrupted before `cutoff` (local storage).
    /// On S3, incomplete multipart uploads are left to the bucket's
    /// `AbortIncompleteMultipartUpload` lifecycle rule (docs/operations.md).
    pub fn sweep_staging(&self, cutoff: std::time::SystemTime) -> std::io::Result<u64> {
        let Some(dir) = &self.local_dir else {
            return Ok(0);
        };
        let dir = dir.join("files");
        if !dir.exists() {
            return Ok(0);
        }
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let staging = name
                .split_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if staging && entry.metadata()?.modified()? <= cutoff {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The raw store, for the orphan sweeper and for tests that tamper with blobs.
    pub fn raw(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn path(file_id: &str) -> ObjectPath {
        ObjectPath::from(format!("files/{file_id}"))
    }

    /// Starts a streamed, encrypted upload for `file_id` under a fresh data key.
    pub async fn start_upload(&self, file_id: uuid::Uuid) -> Result<Upload, BlobError> {
        let multipart = self
            .store
            .put_multipart(&Self::path(&file_id.to_string()))
            .await?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(multipart, PART_SIZE),
            key: FileKey::generate(file_id),
            buf: BytesMut::with_capacity(SEGMENT_SIZE as usize * 2),
            index: 0,
            size: 0,
        })
    }

    pub async fn delete(&self, file_id: &str) -> Result<(), BlobError> {
        match self.store.delete(&Self::path(file_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Decrypts bytes `start..end` (plaintext offsets, `end` exclusive) of a `size`-byte
    /// file, reading only the segments that cover them. Any authentication failure ends
    /// the stream with an integrity error; no unauthenticated byte is ever yielded.
    pub fn read(
        &self,
        file_id: String,
        key: FileKey,
        size: u64,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = Result<Bytes, BlobError>> + Send + 'static {
        let store = self.store.clone();
        async_stream::try_stream! {
            let last_index = segment::segment_count(size) - 1;
            let first = if size == 0 { 0 } else { start / SEGMENT_SIZE };
            let last = if end == 0 { 0 } else { ((end - 1) / SEGMENT_SIZE).min(last_index) };
            let blob_start = segment::sealed_span(size, first).0;
            let (last_off, last_len) = segment::sealed_span(size, last);
            let blob_end = last_off + last_len;
            let range = GetOptions { range: Some(GetRange::Bounded(blob_start..blob_end)), ..Default::default() };
            let path = Self::path(&file_id);
            let mut body = match store.get_opts(&path, range).await {
                Ok(r) => r.into_stream(),
                // A blob that is gone or shorter than its segments: as bad as a bit flip.
                Err(object_store::Error::NotFound { .. }) => Err(IntegrityError { segment: first })?,
                // A range the blob cannot satisfy (local `InvalidRange`, S3 416) means
                // the blob is not the length we wrote; anything else is the store's.
                Err(e) => match store.head(&path).await {
                    Ok(meta) if meta.size != segment::sealed_size(size) => Err(IntegrityError { segment: first })?,
                    Err(object_store::Error::NotFound { .. }) => Err(IntegrityError { segment: first })?,
                    _ => Err(e)?,
                },
            };
            let mut pending = BytesMut::new();
            let mut index = first;
            while index <= last {
                let (_, want) = segment::sealed_span(size, index);
                while (pending.len() as u64) < want {
                    match body.next().await {
                        Some(chunk) => pending.extend_from_slice(&chunk?),
                        None => Err(IntegrityError { segment: index })?,
                    }
                }
                let sealed = pending.split_to(want as usize);
                let plain = key.open(index, index == last_index, &sealed)?;
                let seg_start = index * SEGMENT_SIZE;
                let from = start.saturating_sub(seg_start).min(plain.len() as u64) as usize;
                let to = (end.saturating_sub(seg_start)).min(plain.len() as u64) as usize;
                if from < to {
                    yield Bytes::copy_from_slice(&plain[from..to]);
                }
                index += 1;
            }
            // Trailing bytes past the last segment mean the blob is not what we wrote.
            if last == last_index && (!pending.is_empty() || body.next().await.is_some()) {
                Err(IntegrityError { segment: last_index })?;
            }
        }
    }
}

/// An upload in progress. Dropping it without `finish` leaves nothing visible: the
/// metadata row is only written after the blob is complete.
pub struct Upload {
    writer: WriteMultipart,
    key: FileKey,
    buf: BytesMut,
    index: u64,
    size: u64,
}

impl Upload {
    /// Plaintext bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds plaintext. Full segments are sealed (as not-last) as soon as more data
    /// follows them, so memory stays at about one segment plus the part buffer.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        self.buf.extend_from_slice(chunk);
        while self.buf.len() as u64 > SEGMENT_SIZE {
            let plain = self.buf.split_to(SEGMENT_SIZE as usize);
            let sealed = self.key.seal(self.index, false, &plain);
            self.index += 1;
            self.writer.wait_for_capacity(PART_CONCURRENCY).await?;
            self.writer.write(&sealed);
        }
        Ok(())
    }

    /// Seals the last segment and completes the blob. Returns the plaintext size and
    /// the file's key material (to be wrapped and stored with the metadata).
    pub async fn finish(mut self) -> Result<(u64, FileKey), BlobError> {
        let plain = std::mem::take(&mut self.buf);
        let sealed = self.key.seal(self.index, true, &plain);
        self.writer.write(&sealed);
        self.writer.finish().await?;
        debug_assert_eq!(self.index, segment::segment_count(self.size) - 1);
        Ok((self.size, self.key))
    }

    /// Abandons the upload and removes what was written.
    pub async fn abort(self) {
        let _ = self.writer.abort().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(store: &BlobStore, data: &[u8]) {
        let id = uuid::Uuid::new_v4();
        let mut up = store.start_upload(id).await.unwrap();
        for chunk in data.chunks(10_000) {
            up.write(chunk).await.unwrap();
        }
        let (size, key) = up.finish().await.unwrap();
        assert_eq!(size, data.len() as u64);
        let key2 = FileKey::from_parts(zeroize::Zeroizing::new(*key.data_key()), key.prefix(), id);
        let out: Vec<Bytes> = store
            .read(id.to_string(), key2, size, 0, size)
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(out.concat(), data);
        for (a, b) in [
            (0, 1),
            (SEGMENT_SIZE - 1, SEGMENT_SIZE + 1),
            (SEGMENT_SIZE, SEGMENT_SIZE * 2),
        ] {
            if b <= size {
                let k =
                    FileKey::from_parts(zeroize::Zeroizing::new(*key.data_key()), key.prefix(), id);
                let part: Vec<Bytes> = store
                    .read(id.to_string(), k, size, a, b)
                    .map(|r| r.unwrap())
                    .collect()
                    .await;
                assert_eq!(part.concat(), &data[a as usize..b as usize]);
            }
        }
    }

    #[tokio::test]
    async fn files_of_every_awkward_size_round_trip_and_ranges_cut_at_segment_edges() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&Backend::Local {
            dir: dir.path().to_path_buf(),
        })
        .unwrap();
        let seg = SEGMENT_SIZE as usize;
        for len in [0, 1, seg - 1, seg, seg + 1, 2 * seg, 3 * seg + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            roundtrip(&store, &data).await;
        }
    }
}
