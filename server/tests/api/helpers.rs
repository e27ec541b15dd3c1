//! Test harness: start the real server on a random port against a fresh database —
//! a SQLite file in a temp dir, or a PostgreSQL database created for the test and
//! dropped afterwards — and talk to it as a client would.

use std::net::SocketAddr;
use std::sync::Once;

use secrecy::SecretString;
use sqlx::{Connection, Executor};
use tsunagu_client::Client;
use tsunagu_protocol::accounts::{
    CreateOrganization, CreateUser, Organization, OrganizationKind, Profession, User, UserRole,
};
use tsunagu_server::app::Application;
use tsunagu_server::config::Config;
use tsunagu_server::domain::Domain;
use tsunagu_server::store::Store;

pub const ADMIN_PASSWORD: &str = "bootstrap admin password";
pub const USER_PASSWORD: &str = "a long enough password";

/// Which database a test runs on. Every integration test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `both_backends!(name, other_name)` expects
/// `async fn name(app: TestApp)` and makes tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await {
                    super::$name(app).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(tsunagu_no_postgres, ignore = "PostgreSQL half: set TSUNAGU_TEST_POSTGRES_URL to run it")]
            async fn postgres() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                    super::$name(app).await
                }
            }
        }
    )* };
}

/// The PostgreSQL server to create test databases on, from `TSUNAGU_TEST_POSTGRES_URL`.
/// Without it the PostgreSQL half of the suite is skipped, loudly — unless
/// `TSUNAGU_TEST_REQUIRE_POSTGRES=1` (CI), where that is a failure.
pub fn postgres_admin_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    match std::env::var("TSUNAGU_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("TSUNAGU_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("TSUNAGU_TEST_REQUIRE_POSTGRES=1 but TSUNAGU_TEST_POSTGRES_URL is not set");
            }
            NOTICE.call_once(|| {
                eprintln!(
                    "NOTE: TSUNAGU_TEST_POSTGRES_URL is not set: the PostgreSQL half of the suite is \
                     skipped and the tests run on SQLite only."
                );
            });
            None
        }
    }
}

/// A PostgreSQL database that exists for one test.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> (PgDatabase, String) {
        let name = format!("tsunagu_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to TSUNAGU_TEST_POSTGRES_URL");
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .expect("create test database");
        let mut url = url::Url::parse(admin_url).expect("postgres url");
        url.set_path(&format!("/{name}"));
        (
            PgDatabase {
                admin_url: admin_url.to_owned(),
                name,
            },
            url.to_string(),
        )
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A running server and what a test needs to drive it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub backend: Backend,
    pub domain: Domain,
    /// The database past the rules, for tests that inspect or damage what is stored.
    raw_store: Store,
    /// Signed in as the bootstrap region administrator of region `default`.
    pub admin: Client,
    pub http: reqwest::Client,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped last: the server must be gone before its database and files.
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh server on `backend` with the default test configuration; `None` when the
/// backend is not available here (PostgreSQL without a URL).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// A test configuration: temp data dir, port 0, a known bootstrap password.
async fn test_config(backend: Backend) -> Option<(Config, tempfile::TempDir, Option<PgDatabase>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.log.level = "warn".into();
    // Load tests post far faster than a person; the rate-limit tests set their own.
    config.limits = tsunagu_server::config::LimitsConfig::unlimited();
    // Tests sign in many times from one address; the throttling tests set their own.
    config.auth.account_burst = 20;
    config.auth.ip_burst = 200;
    config.bootstrap.admin_password = Some(SecretString::from(ADMIN_PASSWORD));
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let admin_url = postgres_admin_url()?;
            let (db, url) = PgDatabase::create(&admin_url).await;
            config.database_url = Some(url);
            config.database.max_connections = 5;
            Some(db)
        }
    };
    Some((config, dir, pg))
}

pub async fn spawn_app_with(
    backend: Backend,
    customise: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    let (mut config, dir, pg) = test_config(backend).await?;
    customise(&mut config);
    Some(start(config, backend, Some(dir), pg).await)
}

async fn start(
    config: Config,
    backend: Backend,
    dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
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
        domain,
        raw_store,
        admin,
        http: reqwest::Client::new(),
        config,
        stop: Some(stop),
        server: Some(server),
        _pg: pg,
        _dir: dir,
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

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }

    /// Stops this server and starts a new one on the same database and data dir: a
    /// restart, as an operator would do it.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let config = self.config.clone();
        let dir = self._dir.take();
        let pg = self._pg.take();
        start(config, self.backend, dir, pg).await
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
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

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
