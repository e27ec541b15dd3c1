-- Encrypted files, the file library, audit checkpoints, and per-region file policy.

ALTER TABLE regions ADD COLUMN max_file_bytes BIGINT NOT NULL DEFAULT 536870912;
-- JSON array of allowed kinds; NULL means every kind.
ALTER TABLE regions ADD COLUMN allowed_file_kinds TEXT;

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    group_id TEXT NOT NULL REFERENCES groups(id),
    thread_id TEXT NOT NULL REFERENCES threads(id),
    uploader_id TEXT NOT NULL REFERENCES users(id),
    -- The original name as uploaded (cleaned), for display and search.
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    segment_size BIGINT NOT NULL,
    -- Per-file nonce prefix (hex) and the data key wrapped by a KEK. A NULL wrapped key
    -- is a crypto-shredded (deleted) file.
    nonce_prefix TEXT NOT NULL,
    wrapped_key TEXT,
    kek_id TEXT,
    folder TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    deleted_by TEXT
);
CREATE INDEX files_by_group ON files(group_id, created_at);
CREATE INDEX files_by_thread ON files(thread_id);
CREATE INDEX files_by_kek ON files(kek_id);

-- Signed checkpoints of the audit chain: the hash at `seq`, signed with Ed25519.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
