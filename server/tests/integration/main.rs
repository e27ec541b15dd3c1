//! The server's integration tests, in one binary: linking the server once instead of
//! once per suite is most of what a test run costs on a small machine, and these suites
//! need no process of their own (each test starts its own server, on its own database,
//! through `tsunagu_testkit`). Every test runs on SQLite and, with
//! `TSUNAGU_TEST_POSTGRES_URL`, on PostgreSQL; the file tests also on S3 (`s3s-fs`).
//! Halves that cannot run here show as ignored, with the reason.
//!
//! Binaries of their own: `logs` (it installs the process-wide log subscriber) and
//! `cluster` (several server processes and a NATS server).

mod api;
mod apps;
mod audit;
mod authz;
mod durability;
mod files;
mod hardening;
mod messaging;
mod search;

/// The server binary, for the tests that run it as a child process.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_tsunagu-server");
