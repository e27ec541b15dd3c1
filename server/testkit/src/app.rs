//! The real server in-process on a random port, on a fresh database and blob store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use secrecy::SecretString;
use tsunagu_client::Client;
use tsunagu_protocol::accounts::{
    CreateOrganization, CreateUser, Organization, OrganizationKind, Profession, User, UserRole,
};
use tsunagu_server::app::Application;
use tsunagu_server::blob::BlobStore;
use tsunagu_server::config::Config;
use tsunagu_server::domain::Domain;
use tsunagu_server::store::Store;

use crate::postgres::PgDatabase;
use crate::s3::S3Bucket;

pub const ADMIN_PASSWORD: &str = "bootstrap admin password";
pub const USER_PASSWORD: &str = "a long enough password";

/// argon2id cost of the passwords the tests set (KiB, passes): far below what a
/// release build accepts, so that hundreds of sign-ins cost nothing. Hashes carry
/// their cost, so what the tests check about passwords is unchanged.
const TEST_ARGON2_MEMORY_KIB: u32 = 64;
const TEST_ARGON2_ITERATIONS: u32 = 1;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where blobs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    S3,
}

/// A running server and what a test needs to drive and inspect it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub backend: Backend,
    pub storage: Storage,
    pub domain: Domain,
    /// The database past the rules, for tests that inspect or damage what is stored.
    raw_store: Store,
    /// Signed in as the bootstrap region administrator of region `default` (over plain
    /// HTTP; a TLS test signs in itself).
    pub admin: Client,
    pub http: reqwest::Client,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped after the server (which `Drop` aborts first): the store goes last.
    s3: Option<S3Bucket>,
    pg: Option<PgDatabase>,
    dir: Option<tempfile::TempDir>,
}

/// The configuration every test server starts from: a temp data dir, port 0, a known
/// bootstrap password, limits raised for machine-speed clients, cheap password hashes.
/// The database and storage are the caller's (see [`spawn_with`]).
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    config.log.level = "warn".into();
    // Tests post far faster than a person; the rate-limit tests set their own.
    config.limits = tsunagu_server::config::LimitsConfig::unlimited();
    // Tests sign in many times from one address; the throttling tests set their own.
    config.auth.account_burst = 20;
    config.auth.ip_burst = 200;
    config.auth.argon2_memory_kib = TEST_ARGON2_MEMORY_KIB;
    config.auth.argon2_iterations = TEST_ARGON2_ITERATIONS;
    config.bootstrap.admin_password = Some(SecretString::from(ADMIN_PASSWORD));
    config
}

/// A fresh server on `backend` with local blob storage.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, Storage::Local, |_| {}).await
}

/// A fresh server on `backend` with local blob storage and `customise` applied to the
/// test configuration.
pub async fn spawn_app_with(backend: Backend, customise: impl FnOnce(&mut Config)) -> TestApp {
    spawn_with(backend, Storage::Local, customise).await
}

/// A fresh server on `backend` with blobs on `storage`.
pub async fn spawn(backend: Backend, storage: Storage) -> TestApp {
    spawn_with(backend, storage, |_| {}).await
}

/// A fresh server on `backend` and `storage`, `customise` applied last.
pub async fn spawn_with(
    backend: Backend,
    storage: Storage,
    customise: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = PgDatabase::create("tsunagu_test").await;
            config.database_url = Some(db.url.clone());
            config.database.max_connections = 5;
            Some(db)
        }
    };
    let s3 = match storage {
        Storage::Local => None,
        Storage::S3 => {
            let bucket = S3Bucket::create();
            bucket.configure(&mut config);
            Some(bucket)
        }
    };
    customise(&mut config);
    start(config, backend, storage, s3, pg, Some(dir)).await
}

async fn start(
    config: Config,
    backend: Backend,
    storage: Storage,
    s3: Option<S3Bucket>,
    pg: Option<PgDatabase>,
    dir: Option<tempfile::TempDir>,
) -> TestApp {
    tsunagu_server::telemetry::init_logging(&config.log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app = Application::build_with_listener(&config, listener)
        .await
        .expect("build app");
    let addr = app.local_addr();
    let domain = app.domain().clone();
    let raw_store = app.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let scheme = if config.tls.cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{addr}");
    let admin = Client::new(&base).expect("client");
    if scheme == "http" {
        admin
            .login("admin", ADMIN_PASSWORD, None)
            .await
            .expect("admin login");
    }
    TestApp {
        addr,
        base,
        backend,
        storage,
        domain,
        raw_store,
        admin,
        http: reqwest::Client::new(),
        config,
        stop: Some(stop),
        server: Some(server),
        s3,
        pg,
        dir,
    }
}

impl TestApp {
    /// The database itself (see [`Application::store`]).
    pub fn store(&self) -> &Store {
        &self.raw_store
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `ws://…/api/v1/ws` of this server.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.addr)
    }

    /// Stops the server gracefully and waits for it. Its database, data dir and bucket
    /// stay until the `TestApp` is dropped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }

    /// Stops this server and starts a new one on the same database, data dir and
    /// storage: a restart, as an operator would do it.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let config = self.config.clone();
        let (s3, pg, dir) = (self.s3.take(), self.pg.take(), self.dir.take());
        start(config, self.backend, self.storage, s3, pg, dir).await
    }

    /// A new, signed-out client.
    pub fn client(&self) -> Client {
        Client::new(&self.base).expect("client")
    }

    pub async fn create_org(&self, name: &str) -> Organization {
        self.admin
            .create_organization(&CreateOrganization {
                name: name.into(),
                kind: OrganizationKind::VisitingNursingStation,
            })
            .await
            .expect("create organization")
    }

    /// Creates a ready-to-use user (no forced password change) and signs them in.
    pub async fn create_user(&self, login: &str, role: UserRole) -> (User, Client) {
        let user = self
            .admin
            .create_user(&new_user(login, role))
            .await
            .expect("create user");
        let client = self.client();
        client
            .login(login, USER_PASSWORD, None)
            .await
            .expect("user login");
        (user, client)
    }

    /// Creates another region with its own administrator, signed in.
    pub async fn other_region(&self, slug: &str) -> Client {
        self.domain
            .operator()
            .create_region(slug, "Other region")
            .await
            .expect("create region");
        let login = format!("{slug}-admin");
        self.domain
            .operator()
            .operator_create_user(slug, new_user(&login, UserRole::RegionAdmin))
            .await
            .expect("create other admin");
        let client = self.client();
        client
            .login(&login, USER_PASSWORD, None)
            .await
            .expect("other admin login");
        client
    }

    /// Audit actions recorded so far, in order.
    pub async fn audit_actions(&self) -> Vec<String> {
        let mut conn = self.store().conn().await.expect("conn");
        let rows: Vec<(String,)> = sqlx::query_as("SELECT action FROM audit_events ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .expect("audit rows");
        rows.into_iter().map(|(a,)| a).collect()
    }

    // -- The blob store, opened independently of the server (for tampering) ----------

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
    /// included: the local blob directory, or what `s3s-fs` keeps for this bucket.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        match &self.s3 {
            Some(bucket) => bucket.stored_files(),
            None => walk(
                &self
                    .config
                    .files
                    .local_dir
                    .clone()
                    .unwrap_or_else(|| self.config.data_dir.join("blobs")),
            ),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Every regular file under `dir`, sorted.
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// A ready-to-use nurse of the caller's region: the tests' password, no forced change.
pub fn new_user(login: &str, role: UserRole) -> CreateUser {
    CreateUser {
        login: login.into(),
        display_name: format!("看護師 {login}"),
        display_name_kana: Some("カンゴシ".into()),
        password: USER_PASSWORD.into(),
        profession: Profession::Nurse,
        organization_id: None,
        role: Some(role),
        must_change_password: Some(false),
    }
}
