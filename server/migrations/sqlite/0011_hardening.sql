-- Hardening (issue 15).

-- TOTP secrets wrapped by a key-encryption key, like file data keys. NULL marks a row
-- whose secret is still plain text (written before this version): every node wraps
-- those at start-up, row by row (UPDATE … WHERE totp_kek_id IS NULL, so two nodes
-- starting at once cannot wrap one twice). Wrapping needs the KEK, which never enters
-- the database, so it cannot be done here in SQL.
ALTER TABLE users ADD COLUMN totp_kek_id TEXT;

-- Audit chain verification as a job the admin polls (GET /admin/audit/verify runs
-- longer than a request may). One running job per region: the partial unique index.
-- A job is run by the node that accepted it and beats its heart in updated_at; a job
-- whose heart stopped (its node restarted or died) is marked failed ("interrupted")
-- by the next look at it, which frees the region for a new one.
CREATE TABLE audit_verify_jobs (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    requested_by TEXT REFERENCES users(id),
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    -- Entries checked so far, and the chain length when the job started.
    checked INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL,
    -- The AuditVerification (JSON) once done; why it failed otherwise.
    result TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE UNIQUE INDEX audit_verify_jobs_one_running_per_region
    ON audit_verify_jobs(region_id) WHERE state = 'running';
CREATE INDEX audit_verify_jobs_by_region ON audit_verify_jobs(region_id, created_at);
