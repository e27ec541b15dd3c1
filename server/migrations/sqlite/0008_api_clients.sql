-- Third-party apps (docs/integrations.md). An API client acts through its app account:
-- a user of kind 'app' in the admin's region, so group membership, the audience rule
-- and the audit trail apply to it unchanged. App accounts never sign in with a
-- password (their password_hash is a marker no hash matches) and are never put in a
-- 内緒話 (enforced by the domain, and by the trigger below as a last line).
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person'
    CONSTRAINT users_kind_check CHECK (kind IN ('person', 'app'));

CREATE TABLE api_clients (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    user_id TEXT NOT NULL UNIQUE REFERENCES users(id),
    -- The public identifier an app authenticates with (OAuth client_id).
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT,
    -- Granted scopes, space-separated in a fixed order (the OAuth `scope` syntax).
    scopes TEXT NOT NULL,
    -- The app's public keys for private_key_jwt (a JWK Set as JSON), if it uses them.
    jwks TEXT,
    -- Requests per minute for this app; NULL takes the configured default.
    requests_per_minute BIGINT,
    active BIGINT NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    disabled_at BIGINT,
    CONSTRAINT api_clients_active_check CHECK (active IN (0, 1))
);
CREATE INDEX api_clients_by_region ON api_clients(region_id, created_at);

-- Client secrets, stored as SHA-256 (each secret has 256 random bits). A rotation
-- gives the previous secret an expiry (the grace period); a current secret has none.
CREATE TABLE api_client_secrets (
    id TEXT PRIMARY KEY,
    api_client_id TEXT NOT NULL REFERENCES api_clients(id),
    secret_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX api_client_secrets_by_client ON api_client_secrets(api_client_id);

-- JWT assertions (private_key_jwt) already used, kept until they expire: a replayed
-- `jti` is refused.
CREATE TABLE oauth_assertions (
    api_client_id TEXT NOT NULL REFERENCES api_clients(id),
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (api_client_id, jti)
);
CREATE INDEX oauth_assertions_by_expiry ON oauth_assertions(expires_at);

-- Last line of the rule "an app is never in a 内緒話": the domain refuses first, with
-- a clear error; this makes a forgotten path fail instead of leak.
CREATE TRIGGER thread_members_no_apps BEFORE INSERT ON thread_members
WHEN (SELECT kind FROM users WHERE id = NEW.user_id) = 'app'
BEGIN
    SELECT RAISE(ABORT, 'app accounts cannot be members of a private thread');
END;
