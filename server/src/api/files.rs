//! Files: `POST /threads/{id}/files` (streamed), `GET|PATCH|DELETE /files/{id}`,
//! `GET /files/{id}/content` (Range), `GET /groups/{id}/files`, `GET /search`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use tsunagu_protocol::files::{
    FileInfo, FileKind, FileList, SearchHitKind, SearchResults, UpdateFile,
};
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_protocol::{ErrorBody, ErrorCode};

use super::error::{ApiError, ApiResult};
use super::extract::{AppJson, AppPath, AppQuery, CurrentMember, Meta};
use super::AppState;
use crate::domain::library::LibraryQuery;
use crate::domain::search::SearchRequest;
use crate::store::files::LibrarySort;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file name, URL-encoded UTF-8: 1–255 characters, no control characters or path
    /// separators, not `.` or `..`. (A client that cannot put it in the query may send it
    /// percent-encoded in `X-File-Name` instead.)
    #[param(required = true, value_type = String, min_length = 1, max_length = 255, pattern = "^(?![^\\S\\u001c-\\u001f]*\\.\\.?[^\\S\\u001c-\\u001f]*$)(?!\\s*$)(?:[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}]\\u200d(?=[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}])|[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}-\u{E007F}/\\\\])*$")]
    pub name: Option<String>,
}

/// File metadata, the library and search (the streaming routes are in [`transfer_routes`]): each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metadata, update, delete))
        .routes(routes!(library))
        .routes(routes!(search))
}

/// Uploads and downloads: streamed, so they run without the request timeout and the
/// JSON body limit (uploads enforce the region's file-size policy while streaming).
pub(super) fn transfer_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(content))
}

/// Upload a file into a thread. The body is the raw file (any `Content-Type` but
/// multipart/form-data or JSON); it is streamed, encrypted and stored, and answered
/// only once committed. The kind is detected from the content.
#[utoipa::path(
    post, path = "/api/v1/threads/{id}/files", tag = "files", operation_id = "upload_file",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = FileInfo),
        (status = 400, description = "Bad or missing name", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, description = "Larger than the region allows", body = ErrorBody),
        (status = 415, description = "Kind not allowed, or a multipart/JSON body", body = ErrorBody),
        (status = 409, description = "The group is archived", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(thread_id): AppPath<ThreadId>,
    AppQuery(q): AppQuery<UploadQuery>,
    request: Request,
) -> Response {
    match upload_inner(state, member, meta, thread_id, q, request).await {
        Ok(created) => created.into_response(),
        // A refusal may come before the body was read: close the connection rather
        // than leave unread bytes in front of the client's next request.
        Err(e) => {
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn upload_inner(
    state: AppState,
    member: crate::domain::Member,
    meta: crate::audit::RequestMeta,
    thread_id: ThreadId,
    q: UploadQuery,
    request: Request,
) -> ApiResult<(StatusCode, AppJson<FileInfo>)> {
    let headers = request.headers();
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let ct = ct.to_ascii_lowercase();
        if ct.starts_with("multipart/") || ct.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the raw file bytes (application/octet-stream), not a form or JSON",
            ));
        }
    }
    let name = match q.name {
        Some(n) => n,
        None => headers
            .get("x-file-name")
            .and_then(|v| v.to_str().ok())
            .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
            .ok_or_else(|| {
                ApiError::invalid("the file name is required (?name= or X-File-Name)")
            })?,
    };
    let body = request.into_body().into_data_stream().boxed();
    let info = state
        .domain
        .files()
        .upload_file(&member, thread_id, &name, body, &meta)
        .await?;
    Ok((StatusCode::CREATED, AppJson(info)))
}

#[utoipa::path(
    get, path = "/api/v1/files/{id}", tag = "files", operation_id = "get_file",
    params(("id" = uuid::Uuid, Path, description = "File id")),
    responses((status = 200, body = FileInfo), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn metadata(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<uuid::Uuid>,
) -> ApiResult<AppJson<FileInfo>> {
    Ok(AppJson(
        state
            .domain
            .files()
            .file_info(&member, &id.to_string(), &meta)
            .await?,
    ))
}

/// Organise a file: folder and tags (its uploader or a group owner/admin).
#[utoipa::path(
    patch, path = "/api/v1/files/{id}", tag = "files", operation_id = "update_file",
    params(("id" = uuid::Uuid, Path, description = "File id")),
    request_body = UpdateFile,
    responses((status = 200, body = FileInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<uuid::Uuid>,
    AppJson(req): AppJson<UpdateFile>,
) -> ApiResult<AppJson<FileInfo>> {
    Ok(AppJson(
        state
            .domain
            .files()
            .update_file(&member, &id.to_string(), req, &meta)
            .await?,
    ))
}

/// Delete a file: its key is destroyed (crypto-shredding), then its blob.
#[utoipa::path(
    delete, path = "/api/v1/files/{id}", tag = "files", operation_id = "delete_file",
    params(("id" = uuid::Uuid, Path, description = "File id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .files()
        .delete_file(&member, &id.to_string(), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Parses a single `bytes=` range. Several ranges, or another unit, are ignored (the
/// whole file is served), as HTTP allows.
/// `(start, end)` of a `bytes=` range, either side optional.
type RangeSpec = (Option<u64>, Option<u64>);

fn parse_range(headers: &HeaderMap) -> Result<Option<RangeSpec>, ApiError> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| ApiError::invalid("malformed Range header"))?;
    let parse = |s: &str| -> Result<Option<u64>, ApiError> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| ApiError::invalid("malformed Range header"))
        }
    };
    Ok(Some((parse(a)?, parse(b)?)))
}

const FILENAME_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_');

/// `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>`: the
/// Japanese name survives in every modern browser, and nothing in it can break out of
/// the header.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, FILENAME_SAFE)
    )
}

/// Download (streamed; `Range: bytes=a-b` answered with 206 and only the segments
/// needed decrypted).
#[utoipa::path(
    get, path = "/api/v1/files/{id}/content", tag = "files", operation_id = "download_file",
    params(("id" = uuid::Uuid, Path, description = "File id")),
    responses(
        (status = 200, description = "The file, with the type detected from its content \
            (`application/pdf`, `image/png`, `text/plain; charset=utf-8`, …)", content_type = "*/*"),
        (status = 206, description = "The requested range", content_type = "*/*"),
        (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody),
        (status = 500, description = "`integrity_error`: the stored data was corrupted or tampered with", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn content(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<uuid::Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let range = parse_range(&headers)?;
    let partial = range.is_some();
    let mut download = state
        .domain
        .files()
        .download_file(&member, &id.to_string(), range, &meta)
        .await?;
    // Decrypt the first piece before answering, so a corrupt start is a clean error
    // rather than a broken 200.
    let first = match download.body.next().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(crate::blob::BlobError::Integrity(_))) => {
            return Err(crate::domain::DomainError::Integrity.into());
        }
        Some(Err(e)) => {
            return Err(crate::domain::DomainError::Internal(
                crate::domain::error::Internal::caused_by("reading the blob", e),
            )
            .into())
        }
        None => None,
    };
    let rest = download.body;
    let stream = futures_util::stream::iter(first.map(Ok)).chain(rest);
    let info = &download.info;
    let length = download.range.end - download.range.start;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = response.headers_mut();
    let put = |h: &mut HeaderMap, name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put(h, header::CONTENT_TYPE, info.content_type.clone());
    put(h, header::CONTENT_LENGTH, length.to_string());
    put(
        h,
        header::CONTENT_DISPOSITION,
        content_disposition(&info.name),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if partial {
        put(
            h,
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                download.range.start,
                download.range.end.saturating_sub(1),
                info.size
            ),
        );
    }
    Ok(response.into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LibraryParams {
    /// image, pdf, word, excel, powerpoint, text or other.
    pub kind: Option<FileKind>,
    pub uploader_id: Option<UserId>,
    pub thread_id: Option<ThreadId>,
    pub folder: Option<String>,
    pub tag: Option<String>,
    /// Substring of the name (Japanese welcome).
    pub q: Option<String>,
    /// Uploaded at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Uploaded before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// newest (default), oldest, name, largest.
    #[param(value_type = Option<LibrarySortParam>)]
    pub sort: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// The orders the library can be listed in (only the schema uses this type).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = LibrarySort)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum LibrarySortParam {
    Newest,
    Oldest,
    Name,
    Largest,
}

fn parse_time(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp_millis())
                .map_err(|_| ApiError::invalid(format!("{field} must be an RFC 3339 time")))
        })
        .transpose()
}

/// The group's file library: only files of threads the caller is in.
#[utoipa::path(
    get, path = "/api/v1/groups/{id}/files", tag = "files", operation_id = "list_files",
    params(("id" = uuid::Uuid, Path, description = "Group id"), LibraryParams),
    responses((status = 200, body = FileList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn library(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(group_id): AppPath<GroupId>,
    AppQuery(p): AppQuery<LibraryParams>,
) -> ApiResult<AppJson<FileList>> {
    let sort = match p.sort.as_deref() {
        None | Some("newest") => LibrarySort::Newest,
        Some("oldest") => LibrarySort::Oldest,
        Some("name") => LibrarySort::Name,
        Some("largest") => LibrarySort::Largest,
        Some(_) => {
            return Err(ApiError::invalid(
                "sort must be newest, oldest, name or largest",
            ))
        }
    };
    let query = LibraryQuery {
        kind: p.kind,
        uploader_id: p.uploader_id,
        thread_id: p.thread_id,
        folder: p.folder.clone(),
        tag: p.tag.clone(),
        q: p.q.clone(),
        from_ms: parse_time("from", &p.from)?,
        to_ms: parse_time("to", &p.to)?,
        sort,
        limit: p.limit,
        cursor: p.cursor.clone(),
    };
    Ok(AppJson(
        state
            .domain
            .library()
            .file_library(&member, group_id, query, &meta)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to find: 1–256 characters, not blank, no control characters. Terms
    /// separated by spaces are ANDed; `"…"` is an exact phrase. Every term is a literal
    /// substring after normalisation (width, case, katakana/hiragana): one- and
    /// two-character terms (`痛`, `褥瘡`) work like longer ones.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*\S[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub q: String,
    /// Only in this group.
    pub group_id: Option<GroupId>,
    /// Only in this thread.
    pub thread_id: Option<ThreadId>,
    /// Only messages by, or files uploaded by, this user.
    pub author_id: Option<UserId>,
    /// Posted or uploaded at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Posted or uploaded before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only messages with attachments and files (`true`), or only messages without
    /// (`false`).
    pub has_file: Option<bool>,
    /// Only files of this kind and messages with an attachment of this kind.
    pub file_kind: Option<FileKind>,
    /// Only messages or only files.
    #[param(value_type = Option<SearchHitKind>)]
    pub kind: Option<SearchHitKind>,
    /// 1–50, default 20.
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<i64>,
}

/// Messages and files the caller may see that contain every term of `q`: ranked, with
/// snippets, jump targets and the hits grouped by thread.
#[utoipa::path(
    get, path = "/api/v1/search", tag = "files",
    params(SearchParams),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppQuery(p): AppQuery<SearchParams>,
) -> ApiResult<AppJson<SearchResults>> {
    let limit = match p.limit {
        None => None,
        Some(n) if (1..=50).contains(&n) => Some(n as usize),
        Some(_) => return Err(ApiError::invalid("limit must be 1 to 50")),
    };
    let req = SearchRequest {
        q: p.q,
        group_id: p.group_id,
        thread_id: p.thread_id,
        author_id: p.author_id,
        from_ms: parse_time("from", &p.from)?,
        to_ms: parse_time("to", &p.to)?,
        has_file: p.has_file,
        file_kind: p.file_kind,
        kind: p.kind,
        limit,
    };
    Ok(AppJson(state.domain.search().search(&member, req).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_carries_japanese_names_safely() {
        let v = content_disposition("訪問看護\"報告\"書.pdf");
        assert!(v.starts_with("attachment; filename=\"____"));
        assert!(v.contains("filename*=UTF-8''%E8%A8%AA"));
        assert!(!v[10..].contains("\"報"));
        assert!(HeaderValue::from_str(&v).is_ok());
    }
}
