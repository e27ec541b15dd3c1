//! Encrypted files end to end, over HTTP: round trips at awkward sizes, ranges at
//! segment edges, tampering of every kind, visibility of metadata, content, library and
//! search, key rotation, crypto-shredding, a `kill -9` in the middle of an upload and
//! the server's memory during a 200 MiB transfer.
//!
//! Every case runs on the four combinations of database and blob storage: SQLite and
//! PostgreSQL (`TSUNAGU_TEST_POSTGRES_URL`), each with the local store and with S3 (a
//! real S3-compatible server, `s3s-fs`, on loopback). Without PostgreSQL or without
//! `s3s-fs` on `PATH` that half is skipped with a NOTE, unless
//! `TSUNAGU_TEST_REQUIRE_POSTGRES=1` / `TSUNAGU_TEST_REQUIRE_S3=1` (CI), where it fails.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

/// Runs a test body on every combination of database and storage:
/// `all_combinations!(name)` expects `async fn name(app: FilesApp)` and makes the tests
/// `name::sqlite_local`, `name::sqlite_s3`, `name::postgres_local` and `name::postgres_s3`.
macro_rules! all_combinations {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            use $crate::harness::{spawn, Storage};
            use $crate::helpers::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_local() {
                if let Some(app) = spawn(Backend::Sqlite, Storage::Local).await {
                    super::$name(app).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(tsunagu_no_s3, ignore = "S3 half: put s3s-fs on PATH to run it")]
            async fn sqlite_s3() {
                if let Some(app) = spawn(Backend::Sqlite, Storage::S3).await {
                    super::$name(app).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(tsunagu_no_postgres, ignore = "PostgreSQL half: set TSUNAGU_TEST_POSTGRES_URL to run it")]
            async fn postgres_local() {
                if let Some(app) = spawn(Backend::Postgres, Storage::Local).await {
                    super::$name(app).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(any(tsunagu_no_postgres, tsunagu_no_s3), ignore = "PostgreSQL + S3: set TSUNAGU_TEST_POSTGRES_URL and put s3s-fs on PATH to run it")]
            async fn postgres_s3() {
                if let Some(app) = spawn(Backend::Postgres, Storage::S3).await {
                    super::$name(app).await
                }
            }
        }
    )* };
}

mod harness;

mod keys;
mod library;
mod process;
mod roundtrip;
mod tamper;
mod visibility;
