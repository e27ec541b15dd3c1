//! The test kit every suite of the workspace shares: the real server started in-process
//! on a random port, on SQLite (a temp file) or PostgreSQL (a database created for the
//! test and dropped after it), with blobs on the local file system or on S3 (one
//! `s3s-fs` per test binary, a bucket per test); people and a care team; one websocket
//! client; the real binary as a child process (`kill -9`, resident memory); and the
//! macros that run a test body on every backend.
//!
//! # Skipped halves are ignored, never passed
//!
//! This crate's build script looks for `TSUNAGU_TEST_POSTGRES_URL`, `s3s-fs` and
//! `nats-server`. A half that cannot run here is generated with `#[ignore = "why"]`, so
//! `cargo test` lists it as *ignored* with the reason. `TSUNAGU_TEST_REQUIRE_POSTGRES=1`
//! / `TSUNAGU_TEST_REQUIRE_S3=1` (CI) never ignore: there a missing service fails the
//! test. A half that runs (not ignored, or with `--ignored`) without its service fails
//! too — it never returns early and passes.

mod app;
mod people;
mod postgres;
mod process;
mod s3;
mod ws;

pub use app::{
    new_user, spawn, spawn_app, spawn_app_with, spawn_with, test_config, Backend, Storage, TestApp,
    ADMIN_PASSWORD, USER_PASSWORD,
};
pub use people::{
    add_member, full_profile, patient_group, person, stranger, team, two_nurses_in_a_group, Person,
    Team,
};
pub use postgres::{postgres_admin_url, PgDatabase};
pub use process::{free_port, rss_kib, run_to_completion, RssSampler, ServerProcess};
pub use s3::{S3Bucket, S3_ACCESS_KEY, S3_SECRET_KEY};
pub use ws::{Received, WsClient, ARRIVAL};

// The gates: each wraps one test function and adds `#[ignore]` when this crate's build
// script found its service missing. Defined twice under opposite cfgs so the decision
// is this crate's, whatever crate the macros expand in.

#[cfg(tsunagu_no_postgres)]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_postgres {
    ($($item:tt)*) => { #[ignore = "PostgreSQL half: set TSUNAGU_TEST_POSTGRES_URL to run it"] $($item)* };
}
#[cfg(not(tsunagu_no_postgres))]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_postgres {
    ($($item:tt)*) => { $($item)* };
}

#[cfg(tsunagu_no_s3)]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_s3 {
    ($($item:tt)*) => { #[ignore = "S3 half: put s3s-fs on PATH to run it (cargo install s3s-fs --features binary)"] $($item)* };
}
#[cfg(not(tsunagu_no_s3))]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_s3 {
    ($($item:tt)*) => { $($item)* };
}

#[cfg(any(tsunagu_no_postgres, tsunagu_no_s3))]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_postgres_s3 {
    ($($item:tt)*) => { #[ignore = "PostgreSQL + S3: set TSUNAGU_TEST_POSTGRES_URL and put s3s-fs on PATH to run it"] $($item)* };
}
#[cfg(not(any(tsunagu_no_postgres, tsunagu_no_s3)))]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_postgres_s3 {
    ($($item:tt)*) => { $($item)* };
}

#[cfg(any(tsunagu_no_postgres, tsunagu_no_nats))]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_cluster {
    ($($item:tt)*) => { #[ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL and install nats-server to run it"] $($item)* };
}
#[cfg(not(any(tsunagu_no_postgres, tsunagu_no_nats)))]
#[doc(hidden)]
#[macro_export]
macro_rules! __gate_cluster {
    ($($item:tt)*) => { $($item)* };
}

/// Runs a test body on both databases: `both_backends!(name, other)` expects
/// `async fn name(app: TestApp)` beside it and makes the tests `name::sqlite` and
/// `name::postgres` (local blob storage).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::spawn_app($crate::Backend::Sqlite).await).await
            }
            $crate::__gate_postgres! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::spawn_app($crate::Backend::Postgres).await).await
                }
            }
        }
    )* };
}

/// For tests that start their servers themselves (their own configuration, a child
/// process): `each_backend!(name)` expects `async fn name(backend: Backend)` and makes
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            $crate::__gate_postgres! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        }
    )* };
}

/// Runs a test body on every combination of database and blob storage:
/// `all_combinations!(name)` expects `async fn name(app: TestApp)` and makes
/// `name::sqlite_local`, `name::sqlite_s3`, `name::postgres_local` and `name::postgres_s3`.
#[macro_export]
macro_rules! all_combinations {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            use $crate::{spawn, Backend, Storage};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_local() {
                super::$name(spawn(Backend::Sqlite, Storage::Local).await).await
            }
            $crate::__gate_s3! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() {
                    super::$name(spawn(Backend::Sqlite, Storage::S3).await).await
                }
            }
            $crate::__gate_postgres! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() {
                    super::$name(spawn(Backend::Postgres, Storage::Local).await).await
                }
            }
            $crate::__gate_postgres_s3! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() {
                    super::$name(spawn(Backend::Postgres, Storage::S3).await).await
                }
            }
        }
    )* };
}

/// A test that needs PostgreSQL whatever it compares it with: `postgres_only!(name)`
/// expects `async fn name()` and makes `name::postgres`.
#[macro_export]
macro_rules! postgres_only {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            $crate::__gate_postgres! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name().await
                }
            }
        }
    )* };
}

/// A test of several nodes on PostgreSQL and NATS: `cluster_only!(name)` expects
/// `async fn name()` and makes `name::cluster`.
#[macro_export]
macro_rules! cluster_only {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            $crate::__gate_cluster! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cluster() {
                    super::$name().await
                }
            }
        }
    )* };
}
