//! What the file tests share beyond the kit: raw HTTP calls for uploads and downloads,
//! audit queries and deterministic data. (Servers, storage, people and processes are
//! the kit's: `tsunagu_testkit`.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tsunagu_client::Client;
use tsunagu_protocol::files::FileInfo;
use tsunagu_protocol::messaging::{CreateGroup, Group, GroupKind};

pub use tsunagu_testkit::{
    person, rss_kib, spawn, stranger, team, Person, RssSampler, ServerProcess, Storage, TestApp,
};

/// Plaintext bytes per sealed segment, and the tag each segment carries.
pub const SEG: u64 = tsunagu_server::blob::segment::SEGMENT_SIZE;
pub const TAG: u64 = tsunagu_server::blob::segment::TAG_SIZE;

/// A free group owned by `owner`: enough for transfers that need no team.
pub async fn free_group(owner: &Client) -> Group {
    owner
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "地域連携".into(),
            description: None,
            patient: None,
        })
        .await
        .expect("create free group")
}

// ---------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "a JSON body, got {status}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, value)
}

/// A JSON call with a bearer token: the status and the body (`Null` when empty).
pub async fn call(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    answer(req.send().await.expect("request")).await
}

pub async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    call(&app.base, &app.http, token, Method::GET, path, None).await
}

/// `POST /threads/{id}/files?name=` with `body` as the raw content.
pub async fn upload_to(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    thread: &str,
    name: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let response = http
        .post(format!("{base}/api/v1/threads/{thread}/files"))
        .query(&[("name", name)])
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload request");
    answer(response).await
}

pub async fn upload(
    app: &TestApp,
    token: &str,
    thread: impl std::fmt::Display,
    name: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    upload_to(&app.base, &app.http, token, &thread.to_string(), name, body).await
}

/// An upload that must succeed: the answered metadata.
#[track_caller]
pub fn created(answer: (StatusCode, Value)) -> FileInfo {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::CREATED, "upload: {body}");
    serde_json::from_value(body).expect("FileInfo")
}

pub async fn upload_ok(
    app: &TestApp,
    who: &Person,
    thread: impl std::fmt::Display,
    name: &str,
    bytes: Vec<u8>,
) -> FileInfo {
    created(upload(app, &who.token(), thread, name, bytes).await)
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A download as the client saw it: the status, headers, the bytes that arrived and
/// whether reading the body failed.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub body_error: Option<String>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub async fn fetch_from(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    file_id: &str,
    range: Option<&str>,
) -> Fetched {
    try_fetch_from(base, http, token, file_id, range)
        .await
        .expect("download request")
}

/// A download that may fail before any response arrives (the server dropped the
/// connection before its headers went out): `Err` with what the client saw.
pub async fn try_fetch_from(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    file_id: &str,
    range: Option<&str>,
) -> Result<Fetched, String> {
    let mut req = http
        .get(format!("{base}/api/v1/files/{file_id}/content"))
        .bearer_auth(token);
    if let Some(r) = range {
        req = req.header(reqwest::header::RANGE, r);
    }
    let mut response = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut body_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(Fetched {
        status,
        headers,
        body,
        body_error,
    })
}

/// `GET /files/{id}/content`, optionally with a `Range` header.
pub async fn fetch(app: &TestApp, token: &str, file_id: &str, range: Option<&str>) -> Fetched {
    fetch_from(&app.base, &app.http, token, file_id, range).await
}

/// A download that must succeed in full: its bytes.
pub async fn download_ok(app: &TestApp, token: &str, file_id: &str) -> Vec<u8> {
    let f = fetch(app, token, file_id, None).await;
    assert_eq!(f.status, StatusCode::OK, "download {file_id}: {}", f.json());
    assert_eq!(f.body_error, None, "download {file_id}");
    f.body
}

/// Streams a download, hashing it: (status, bytes received, SHA-256, body error).
pub async fn download_hashed(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    file_id: &str,
) -> (StatusCode, u64, [u8; 32], Option<String>) {
    let response = http
        .get(format!("{base}/api/v1/files/{file_id}/content"))
        .bearer_auth(token)
        .send()
        .await
        .expect("download request");
    let status = response.status();
    let mut stream = response.bytes_stream();
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                received += c.len() as u64;
                hasher.update(&c);
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    (status, received, hasher.finalize().into(), error)
}

// ---------------------------------------------------------------------------------
// The audit log
// ---------------------------------------------------------------------------------

/// One audit entry, as the tests look at it.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub actor_user_id: Option<String>,
    pub file_id: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub detail: Value,
}

pub async fn audit_rows(app: &TestApp, action: &str) -> Vec<AuditRow> {
    let mut conn = app.store().conn().await.expect("conn");
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT actor_user_id, file_id, target_kind, target_id, outcome, detail \
         FROM audit_events WHERE action = $1 ORDER BY seq",
    )
    .bind(action)
    .fetch_all(&mut *conn)
    .await
    .expect("audit rows");
    rows.into_iter()
        .map(
            |(actor_user_id, file_id, target_kind, target_id, outcome, detail)| AuditRow {
                actor_user_id,
                file_id,
                target_kind,
                target_id,
                outcome,
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            },
        )
        .collect()
}

/// Entries of `action` matching `matches`, waiting (bounded) until there are at least
/// `at_least` of them: some entries are appended after the response has gone.
pub async fn wait_for_audit(
    app: &TestApp,
    action: &str,
    at_least: usize,
    matches: impl Fn(&AuditRow) -> bool,
) -> Vec<AuditRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: Vec<AuditRow> = audit_rows(app, action)
            .await
            .into_iter()
            .filter(|r| matches(r))
            .collect();
        if rows.len() >= at_least {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "expected at least {at_least} {action} audit entries, found {}: {rows:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The file-access refusals of `who` for `file_id`, with what they attempted.
pub async fn refusals(app: &TestApp, who: &str, file_id: &str) -> Vec<String> {
    audit_rows(app, "file_access_denied")
        .await
        .into_iter()
        .filter(|r| {
            r.actor_user_id.as_deref() == Some(who) && r.file_id.as_deref() == Some(file_id)
        })
        .inspect(|r| assert_eq!(r.outcome, "denied", "{r:?}"))
        .map(|r| {
            r.detail["attempted"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Deterministic content
// ---------------------------------------------------------------------------------

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the bytes at `offset..` of the pseudo-random stream `seed`: any
/// part of a file can be regenerated without the rest.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    let mut pos = offset;
    while i < buf.len() {
        let word = splitmix64(seed.wrapping_mul(0x1000_0000_01B3) ^ (pos / 8)).to_le_bytes();
        let within = (pos % 8) as usize;
        let n = (8 - within).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[within..within + n]);
        i += n;
        pos += n as u64;
    }
}

/// `len` bytes of the stream `seed`. The first byte is never a known magic number, so
/// the content sniffs as `other`.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fill(seed, 0, &mut buf);
    if let Some(b) = buf.first_mut() {
        *b = 0;
    }
    buf
}

/// A streamed request body of `len` bytes of the stream `seed` (its first byte zeroed,
/// like [`data`]), in `chunk`-byte pieces, hashing what it sends into `hasher`. Never
/// holds more than one chunk.
pub fn generated_body(
    seed: u64,
    len: u64,
    chunk: usize,
    hasher: Arc<Mutex<Sha256>>,
) -> reqwest::Body {
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let hasher = hasher.clone();
        async move {
            if offset >= len {
                return None;
            }
            let n = chunk.min((len - offset) as usize);
            let mut buf = vec![0u8; n];
            fill(seed, offset, &mut buf);
            if offset == 0 {
                buf[0] = 0;
            }
            hasher.lock().expect("hasher").update(&buf);
            Some((Ok::<_, std::io::Error>(Bytes::from(buf)), offset + n as u64))
        }
    });
    reqwest::Body::wrap_stream(stream)
}
