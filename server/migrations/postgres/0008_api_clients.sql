-- Third-party apps (docs/integrations.md). An API client acts through its app account:
-- a user of kind 'app' in the admin's region, so group membership, the audience rule
-- and the audit trail apply to it unchanged. App accounts never sign in with a
-- password (their password_hash is a marker no hash matches) and are never put in a
-- 内緒話 (enforced by the domain, and by the trigger below as a last line).
ALTER TABLE users ADD COLUMN kind TEXT COLLATE "C" NOT NULL DEFAULT 'person'
    CONSTRAINT users_kind_check CHECK (kind IN ('person', 'app'));

CREATE TABLE api_clients (
    id TEXT COLLATE "C" PRIMARY KEY,
    region_id TEXT COLLATE "C" NOT NULL REFERENCES regions(id),
    user_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES users(id),
    client_id TEXT COLLATE "C" NOT NULL UNIQUE,
    name TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    scopes TEXT COLLATE "C" NOT NULL,
    jwks TEXT COLLATE "C",
    requests_per_minute BIGINT,
    active BIGINT NOT NULL DEFAULT 1,
    created_by TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    disabled_at BIGINT,
    CONSTRAINT api_clients_active_check CHECK (active IN (0, 1))
);
CREATE INDEX api_clients_by_region ON api_clients(region_id, created_at);

CREATE TABLE api_client_secrets (
    id TEXT COLLATE "C" PRIMARY KEY,
    api_client_id TEXT COLLATE "C" NOT NULL REFERENCES api_clients(id),
    secret_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX api_client_secrets_by_client ON api_client_secrets(api_client_id);

CREATE TABLE oauth_assertions (
    api_client_id TEXT COLLATE "C" NOT NULL REFERENCES api_clients(id),
    jti TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (api_client_id, jti)
);
CREATE INDEX oauth_assertions_by_expiry ON oauth_assertions(expires_at);

CREATE FUNCTION thread_members_no_apps() RETURNS trigger AS $$
BEGIN
    IF (SELECT kind FROM users WHERE id = NEW.user_id) = 'app' THEN
        RAISE EXCEPTION 'app accounts cannot be members of a private thread';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER thread_members_no_apps BEFORE INSERT ON thread_members
FOR EACH ROW EXECUTE FUNCTION thread_members_no_apps();
