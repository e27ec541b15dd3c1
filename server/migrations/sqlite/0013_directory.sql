-- The directory of professionals (GET /api/v1/users). A person's own profile line
-- lives beside the account (PATCH /api/v1/me); the region's policy says who is listed
-- to whom: 'region' (everyone in the region, the default) or 'organization' (people of
-- one's own organisation and those one already shares a group with).
CREATE TABLE user_profiles (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    about TEXT,
    updated_at BIGINT NOT NULL
);

ALTER TABLE regions ADD COLUMN directory_scope TEXT NOT NULL DEFAULT 'region'
    CONSTRAINT regions_directory_scope_check CHECK (directory_scope IN ('region', 'organization'));
