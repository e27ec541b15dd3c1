//! What the file tests share: an S3-compatible server on loopback, the app on a chosen
//! database and storage, direct access to the stored blobs (for tampering), people and
//! a care team, raw HTTP calls, audit queries, deterministic data, the real server
//! binary as a child process and its resident memory.

use std::io::BufRead;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, User, UserRole};
use tsunagu_protocol::files::FileInfo;
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::{
    AddMember, CreateGroup, CreateThread, Group, GroupKind, PatientProfile, Thread,
};
use tsunagu_server::blob::BlobStore;
use tsunagu_server::config::Config;

use crate::helpers::{self, Backend, TestApp, ADMIN_PASSWORD, USER_PASSWORD};

/// Plaintext bytes per sealed segment, and the tag each segment carries.
pub const SEG: u64 = tsunagu_server::blob::segment::SEGMENT_SIZE;
pub const TAG: u64 = tsunagu_server::blob::segment::TAG_SIZE;

/// Where blobs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    S3,
}

// ---------------------------------------------------------------------------------
// S3: s3s-fs on loopback
// ---------------------------------------------------------------------------------

pub const S3_BUCKET: &str = "tsunagu-test";
const S3_ACCESS_KEY: &str = "tsunagu-test-access";
const S3_SECRET_KEY: &str = "tsunagu-test-secret-key-0123456789";

fn find_s3s_fs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// The `s3s-fs` binary, or `None` (with a NOTE, once) when it is not installed —
/// unless `TSUNAGU_TEST_REQUIRE_S3=1`, where that is a failure.
fn s3s_fs_binary() -> Option<PathBuf> {
    static NOTICE: Once = Once::new();
    let found = find_s3s_fs();
    if found.is_none() {
        if std::env::var("TSUNAGU_TEST_REQUIRE_S3").as_deref() == Ok("1") {
            panic!("TSUNAGU_TEST_REQUIRE_S3=1 but s3s-fs is not on PATH");
        }
        NOTICE.call_once(|| {
            eprintln!(
                "NOTE: s3s-fs is not on PATH (cargo install s3s-fs --features binary): the S3 half \
                 of the file tests is skipped and they run on local storage only."
            );
        });
    }
    found
}

/// An `s3s-fs` server on a free loopback port with a temporary root, killed on drop.
/// Objects are plain files under `<root>/<bucket>/<key>`.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> Option<S3Server> {
        let bin = s3s_fs_binary()?;
        let root = tempfile::tempdir().expect("s3 root");
        std::fs::create_dir(root.path().join(S3_BUCKET)).expect("bucket directory");
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        // It logs the address it bound; the reader keeps draining the pipe afterwards.
        let stdout = child.stdout.take().expect("s3s-fs stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                const MARK: &str = "server is running at ";
                if let Some(at) = line.find(MARK) {
                    let url = line[at + MARK.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) if url.starts_with("http://") => url,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not report its address: {other:?}");
            }
        };
        Some(S3Server {
            child,
            endpoint,
            root,
        })
    }

    /// Points `config` at this server.
    pub fn configure(&self, config: &mut Config) {
        config.files.storage = "s3".into();
        config.files.s3_endpoint = Some(self.endpoint.clone());
        config.files.s3_bucket = Some(S3_BUCKET.into());
        config.files.s3_region = "us-east-1".into();
        config.files.s3_access_key_id = Some(S3_ACCESS_KEY.into());
        config.files.s3_secret_access_key = Some(SecretString::from(S3_SECRET_KEY));
        config.files.s3_allow_http = true;
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// The app on a database and a storage
// ---------------------------------------------------------------------------------

/// A running server on `db` with blobs on `storage`.
pub struct FilesApp {
    // Dropped first: the server goes before the S3 server it writes to.
    pub app: TestApp,
    pub storage: Storage,
    pub s3: Option<S3Server>,
}

impl Deref for FilesApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// A fresh server; `None` when PostgreSQL or `s3s-fs` is not available here.
pub async fn spawn(db: Backend, storage: Storage) -> Option<FilesApp> {
    if db == Backend::Postgres {
        helpers::postgres_admin_url()?;
    }
    let s3 = match storage {
        Storage::Local => None,
        Storage::S3 => Some(S3Server::start()?),
    };
    let app = helpers::spawn_app_with(db, |config| {
        if let Some(s3) = &s3 {
            s3.configure(config);
        }
    })
    .await?;
    Some(FilesApp { app, storage, s3 })
}

impl FilesApp {
    /// Stops the server and starts it again on the same database, data dir and storage.
    pub async fn restart(self) -> FilesApp {
        let FilesApp { app, storage, s3 } = self;
        FilesApp {
            app: app.restart().await,
            storage,
            s3,
        }
    }

    /// The blob store the server uses, opened independently (for tampering).
    pub fn blob_store(&self) -> BlobStore {
        BlobStore::open(&self.config.blob_backend().expect("blob backend")).expect("blob store")
    }

    /// The sealed blob of a file, or `None` when there is none.
    pub async fn blob(&self, file_id: &str) -> Option<Vec<u8>> {
        let store = self.blob_store();
        match store.raw().get(&BlobStore::path(file_id)).await {
            Ok(r) => Some(r.bytes().await.expect("blob bytes").to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading blob {file_id}: {e}"),
        }
    }

    /// Replaces (or creates) the blob of a file.
    pub async fn put_blob(&self, file_id: &str, bytes: Vec<u8>) {
        self.blob_store()
            .raw()
            .put(&BlobStore::path(file_id), bytes.into())
            .await
            .expect("put blob");
    }

    pub async fn remove_blob(&self, file_id: &str) {
        self.blob_store()
            .delete(file_id)
            .await
            .expect("delete blob");
    }

    /// Names of the blobs the store lists.
    pub async fn blob_names(&self) -> Vec<String> {
        let store = self.blob_store();
        let prefix = object_store::path::Path::from("files");
        let mut listing = store.raw().list(Some(&prefix));
        let mut names = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.expect("list blobs");
            names.push(meta.location.filename().unwrap_or_default().to_owned());
        }
        names.sort();
        names
    }

    /// Every file the storage holds on disk, staging files and multipart parts
    /// included: the local blob directory, or the whole `s3s-fs` root.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let root = match (&self.s3, self.storage) {
            (Some(s3), Storage::S3) => s3.root.path().to_path_buf(),
            _ => self
                .config
                .files
                .local_dir
                .clone()
                .unwrap_or_else(|| self.config.data_dir.join("blobs")),
        };
        walk(&root)
    }
}

/// Every regular file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------
// People and a care team
// ---------------------------------------------------------------------------------

/// A signed-in user.
#[derive(Clone)]
pub struct Person {
    pub user: User,
    pub client: Client,
}

impl Person {
    pub fn id(&self) -> String {
        self.user.id.to_string()
    }

    pub fn token(&self) -> String {
        self.client.tokens().expect("signed in").access_token
    }
}

fn new_user(login: &str, display_name: &str, profession: Profession) -> CreateUser {
    CreateUser {
        login: login.into(),
        display_name: display_name.into(),
        display_name_kana: None,
        password: USER_PASSWORD.into(),
        profession,
        organization_id: None,
        role: Some(UserRole::User),
        must_change_password: Some(false),
    }
}

/// A ready-to-use user of region `default`, signed in.
pub async fn person(app: &TestApp, login: &str, profession: Profession) -> Person {
    let user = app
        .admin
        .create_user(&new_user(login, &format!("利用者 {login}"), profession))
        .await
        .expect("create user");
    let client = app.client();
    client
        .login(login, USER_PASSWORD, None)
        .await
        .expect("user login");
    Person { user, client }
}

/// A user of another region (created there by the operator), signed in.
pub async fn stranger(app: &TestApp, slug: &str, login: &str) -> Person {
    app.other_region(slug).await;
    let user = app
        .domain
        .operator()
        .operator_create_user(slug, new_user(login, "他地域 看護師", Profession::Nurse))
        .await
        .expect("create user in the other region");
    let client = app.client();
    client
        .login(login, USER_PASSWORD, None)
        .await
        .expect("stranger login");
    Person { user, client }
}

pub async fn add_member(group: &Group, owner: &Person, who: &Person) {
    owner
        .client
        .add_member(
            group.id,
            &AddMember {
                user_id: who.user.id,
                role: None,
                patient_side: None,
            },
        )
        .await
        .expect("add member");
}

/// A patient group owned by a visiting nurse, with a doctor and a family member
/// (patient-side) in it, and a 内緒話 of the nurse and the doctor.
pub struct Team {
    pub group: Group,
    pub private: Thread,
    pub nurse: Person,
    pub doctor: Person,
    pub family: Person,
}

impl Team {
    pub fn main(&self) -> ThreadId {
        self.group.main_thread_id
    }
}

pub async fn team(app: &TestApp) -> Team {
    let nurse = person(app, "nurse.sato", Profession::Nurse).await;
    let doctor = person(app, "dr.tanaka", Profession::Doctor).await;
    let family = person(app, "family.yamada", Profession::Family).await;
    let group = nurse
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Patient,
            name: "山田 太郎 様".into(),
            description: None,
            patient: Some(PatientProfile {
                name: "山田 太郎".into(),
                name_kana: Some("ヤマダ タロウ".into()),
                birth_date: None,
                sex: None,
                care_level: None,
                address: None,
                primary_physician: None,
                notes: None,
            }),
        })
        .await
        .expect("create group");
    add_member(&group, &nurse, &doctor).await;
    add_member(&group, &nurse, &family).await;
    let private = nurse
        .client
        .create_thread(
            group.id,
            &CreateThread {
                title: "医療職のみ".into(),
                member_ids: vec![doctor.user.id],
            },
        )
        .await
        .expect("create 内緒話");
    Team {
        group,
        private,
        nurse,
        doctor,
        family,
    }
}

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

// ---------------------------------------------------------------------------------
// The real binary as a child process
// ---------------------------------------------------------------------------------

/// The `tsunagu-server` binary serving `config`'s data dir, database and storage.
/// Killed (SIGKILL) on drop if still running.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl ServerProcess {
    /// Starts the binary (with `extra_env` on top of what `config` says) and waits
    /// (bounded) until `/readyz` answers 200. `log` gets its standard output and error.
    pub async fn start(config: &Config, log: &Path, extra_env: &[(&str, String)]) -> ServerProcess {
        // A port picked and released here could be taken in between: retry a few times.
        for _ in 0..5 {
            let listen = format!("127.0.0.1:{}", free_port());
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("server log");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagu-server"));
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("TSUNAGU_") {
                    cmd.env_remove(&key);
                }
            }
            cmd.env_remove("RUST_LOG")
                .env("TSUNAGU_DATA_DIR", &config.data_dir)
                .env("TSUNAGU_LISTEN", &listen)
                .env("TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("TSUNAGU_LOG_LEVEL", "warn")
                .env("TSUNAGU_AUTH_ACCOUNT_BURST", "20")
                .env("TSUNAGU_AUTH_IP_BURST", "200");
            if let Some(url) = &config.database_url {
                cmd.env("TSUNAGU_DATABASE_URL", url)
                    .env("TSUNAGU_DATABASE_MAX_CONNECTIONS", "5");
            }
            if config.files.storage == "s3" {
                let f = &config.files;
                cmd.env("TSUNAGU_FILES_STORAGE", "s3")
                    .env(
                        "TSUNAGU_FILES_S3_ENDPOINT",
                        f.s3_endpoint.as_deref().unwrap_or_default(),
                    )
                    .env(
                        "TSUNAGU_FILES_S3_BUCKET",
                        f.s3_bucket.as_deref().unwrap_or_default(),
                    )
                    .env("TSUNAGU_FILES_S3_REGION", &f.s3_region)
                    .env(
                        "TSUNAGU_FILES_S3_ACCESS_KEY_ID",
                        f.s3_access_key_id.as_deref().unwrap_or_default(),
                    )
                    .env("TSUNAGU_FILES_S3_ALLOW_HTTP", "true")
                    .env(
                        "TSUNAGU_FILES_S3_SECRET_ACCESS_KEY",
                        f.s3_secret_access_key
                            .as_ref()
                            .map(|s| s.expose_secret().to_owned())
                            .unwrap_or_default(),
                    );
            }
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .spawn()
                .expect("start tsunagu-server");
            let mut server = ServerProcess {
                child,
                base: format!("http://{listen}"),
                http: reqwest::Client::new(),
            };
            if server.wait_ready().await {
                return server;
            }
        }
        panic!(
            "tsunagu-server did not become ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Polls `/readyz` until 200 (true) or the process exits or 60 s pass (false).
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill9();
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, then reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base).expect("client")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's resident memory every few milliseconds and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    // A sampling period, not a wait for anything.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak seen, in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
