//! Encrypted files end to end, over HTTP: round trips at awkward sizes, ranges at
//! segment edges, tampering of every kind, visibility of metadata, content, library and
//! search, key rotation, crypto-shredding, a `kill -9` in the middle of an upload and
//! the server's memory during a 200 MiB transfer.
//!
//! Every case runs on the four combinations of database and blob storage: SQLite and
//! PostgreSQL (`TSUNAGU_TEST_POSTGRES_URL`), each with the local store and with S3 (a
//! real S3-compatible server, `s3s-fs`, on loopback, one per test binary and a bucket per
//! test). Without PostgreSQL or without `s3s-fs` on `PATH` those halves show as ignored,
//! unless `TSUNAGU_TEST_REQUIRE_POSTGRES=1` / `TSUNAGU_TEST_REQUIRE_S3=1` (CI), where
//! they run and fail.

pub(crate) mod harness;

mod keys;
mod library;
mod process;
mod roundtrip;
mod tamper;
mod visibility;
