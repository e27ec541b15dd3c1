-- Regions, organisations, users, sign-in sessions and the audit log.
-- Times are Unix milliseconds (UTC); ids are UUID strings; flags are 0/1.

CREATE TABLE regions (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    mfa_required BIGINT NOT NULL DEFAULT 0,
    password_min_length BIGINT NOT NULL DEFAULT 12,
    access_token_ttl_secs BIGINT NOT NULL DEFAULT 900,
    refresh_token_ttl_secs BIGINT NOT NULL DEFAULT 1209600,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX organizations_by_region ON organizations(region_id, name);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    login TEXT NOT NULL,
    login_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    display_name_kana TEXT,
    profession TEXT NOT NULL,
    organization_id TEXT REFERENCES organizations(id),
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 0,
    active BIGINT NOT NULL DEFAULT 1,
    totp_secret TEXT,
    totp_enabled BIGINT NOT NULL DEFAULT 0,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_by_region ON users(region_id, login_key);
CREATE INDEX users_by_organization ON users(organization_id);

-- A session is one sign-in; its refresh tokens rotate inside it. Revoking the session
-- revokes every token of the family and every access token that names it.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoke_reason TEXT
);
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);

-- Append-only, hash-chained audit log. `seq` is gap-free; `hash` is SHA-256 over the
-- canonical encoding of the row including `prev_hash`.
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at_ms BIGINT NOT NULL,
    region_id TEXT,
    actor_user_id TEXT,
    actor_org_id TEXT,
    ip TEXT,
    user_agent TEXT,
    action TEXT NOT NULL,
    target_kind TEXT,
    target_id TEXT,
    group_id TEXT,
    file_id TEXT,
    outcome TEXT NOT NULL,
    request_id TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_by_region_time ON audit_events(region_id, at_ms);
CREATE INDEX audit_events_by_actor ON audit_events(actor_user_id, at_ms);
CREATE INDEX audit_events_by_file ON audit_events(file_id, at_ms);

CREATE TABLE audit_chain_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, last_seq, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
