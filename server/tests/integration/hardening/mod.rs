//! Issue 15 (hardening): the defects found by the black-box review, each with the test
//! that failed before its fix — names that hide their true order, TOTP secrets at rest,
//! key rotation without signing anyone out, audit verification as a job — and backups
//! that restore.

mod audit_coverage;
mod backup;
mod keys;
mod names;
mod totp;
mod verify_job;
