//! A PostgreSQL database per test, on the server `TSUNAGU_TEST_POSTGRES_URL` names.

use sqlx::{Connection, Executor};

/// The PostgreSQL server to create test databases on. A test that needs it and runs
/// without it fails: the macros only generate such a test un-ignored when the build saw
/// the URL (or was told to require it), so reaching here without one is a mistake in
/// the run, not a reason to pass.
pub fn postgres_admin_url() -> String {
    match std::env::var("TSUNAGU_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs PostgreSQL: set TSUNAGU_TEST_POSTGRES_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        ),
    }
}

/// A database that exists for one test (or one cluster of processes), dropped — with
/// whatever connections are still open on it — when this value is.
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// The URL of the database itself.
    pub url: String,
}

impl PgDatabase {
    /// Creates `<prefix>_<random>` on the test server.
    pub async fn create(prefix: &str) -> PgDatabase {
        Self::create_with(prefix, "").await
    }

    /// [`create`](Self::create) with `options` appended to `CREATE DATABASE` (a
    /// template, a locale provider…), for tests that need a database unlike the default.
    pub async fn create_with(prefix: &str, options: &str) -> PgDatabase {
        let admin_url = postgres_admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to TSUNAGU_TEST_POSTGRES_URL");
        conn.execute(format!("CREATE DATABASE \"{name}\" {options}").as_str())
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("postgres url");
        url.set_path(&format!("/{name}"));
        PgDatabase {
            admin_url,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime, which cannot be blocked on: the async
        // clean-up gets a thread and a runtime of its own.
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
