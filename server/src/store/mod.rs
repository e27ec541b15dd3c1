//! Persistence over sqlx. One query text serves SQLite and PostgreSQL (runtime queries
//! through `sqlx::Any`, `$n` placeholders, portable SQL); what really differs between
//! the two — connection set-up and migrations — lives here and nowhere else. The rules
//! that make both give the same answers (collation, case, LIKE, time, NULL order) are in
//! `docs/architecture.md` and proven by `server/tests/conformance`.

pub mod api_clients;
pub mod directory;
pub mod files;
pub mod groups;
pub mod invitations;
pub mod messages;
pub mod organizations;
pub mod regions;
pub mod scope;
pub mod search;
pub mod sessions;
pub mod threads;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Transaction};

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Store-layer failures. A unique-constraint violation is its own variant so the domain
/// can answer 409 without string matching.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated")]
    Conflict,
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict;
            }
        }
        StoreError::Database(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The connection pool and which backend it talks to.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects; for SQLite, creates the file if needed and turns on WAL, foreign keys
    /// and a busy timeout on every connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = AnyConnectOptions::from_str(url)?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // synchronous=FULL: a commit we acknowledge survives power loss too.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// A pooled connection for reads and single-statement writes.
    pub async fn conn(&self) -> Result<PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// A transaction: every multi-statement write goes through one. On SQLite it starts
    /// `IMMEDIATE`, taking the write lock up front: a deferred transaction that reads
    /// and then writes fails with "database is locked" (no busy wait) when another
    /// writer committed in between.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction, as [`Store::begin`] returns it.
pub type Tx = Transaction<'static, Any>;

/// Shorthand for the connection type the query functions take, so that they work both
/// inside a transaction (`&mut *tx`) and on a pooled connection (`&mut *conn`).
pub type Conn = AnyConnection;

/// Booleans are stored as 0/1 integers: portable across both backends through `Any`.
pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Folds a LIKE pattern for the store's case rule: every text search (`lower(column)
/// LIKE pattern`) matches ASCII letters in either case and every other character
/// exactly, on both backends. SQLite's `lower()` folds ASCII only; PostgreSQL's does too
/// because every text column is `COLLATE "C"` (migration 0007) — under a ja-JP or
/// en-US collation it would also fold `Ａ`/`ａ` or `É`/`é`, and SQLite would not. So the
/// pattern is folded here, in Rust, the same way (never by the database's `lower($n)`,
/// whose parameter would carry the database's default collation). The escapes `\`, `%`
/// and `_` are not letters and pass through.
pub(crate) fn fold_pattern(pattern: &str) -> String {
    pattern.to_ascii_lowercase()
}

/// The LIKE pattern the store's searches take for "contains `q`": `q` with `%`, `_` and
/// the escape character `\` escaped (every query says `ESCAPE '\'`), between `%`s, so
/// that what a user types is matched literally on both backends.
pub fn contains_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}
