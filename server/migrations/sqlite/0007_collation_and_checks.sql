-- Both backends give the same answers for the same data (docs/architecture.md, "One
-- domain, two databases"), tested by server/tests/conformance.
--
-- 1. Collation: SQLite's BINARY already compares and orders text by code point, and its
--    lower() folds ASCII only — the rule; PostgreSQL's half of this migration makes its
--    text columns COLLATE "C" to match. Nothing to do here.
--
-- 2. Enum-like columns accept only the values the protocol defines, 0/1 flags only 0
--    and 1: real CHECK constraints, named as on PostgreSQL. SQLite cannot add a CHECK
--    to an existing table, so each table is rebuilt: copied aside, dropped, created
--    again with the constraints, filled back, its indexes recreated. This is chosen
--    over BEFORE INSERT/UPDATE triggers because the result is the same schema as
--    PostgreSQL's (a constraint, visible in the table's definition, that no later
--    UPDATE path can forget) and because a CHECK is also applied to the rows copied
--    back — the migration fails instead of keeping a bad value.
--
--    Foreign keys stay ON: sqlx runs this file in one transaction, and
--    defer_foreign_keys moves every foreign-key check to its COMMIT. Dropping a parent
--    table counts its children as violations; putting the same rows back under the
--    same name uncounts them; COMMIT fails (and nothing changes) unless every
--    reference resolves again. No foreign key in this schema has an ON DELETE action,
--    so the drop deletes nothing else. The view thread_audience names tables, not
--    their storage, and reads the rebuilt tables unchanged; none of these tables has a
--    trigger. Rebuilt parents first: organizations, users, groups, group_members,
--    threads, files.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE organizations_0007 AS SELECT * FROM organizations;
DROP TABLE organizations;
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT organizations_kind_check CHECK (kind IN ('clinic', 'hospital',
        'visiting_nursing_station', 'pharmacy', 'care_management_office', 'dental_clinic',
        'municipality', 'other')),
    CONSTRAINT organizations_active_check CHECK (active IN (0, 1))
);
INSERT INTO organizations (id, region_id, name, kind, active, created_at, updated_at)
SELECT id, region_id, name, kind, active, created_at, updated_at FROM organizations_0007;
DROP TABLE organizations_0007;
CREATE INDEX organizations_by_region ON organizations(region_id, name);

CREATE TEMP TABLE users_0007 AS SELECT * FROM users;
DROP TABLE users;
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
    updated_at BIGINT NOT NULL,
    CONSTRAINT users_profession_check CHECK (profession IN ('doctor', 'nurse',
        'pharmacist', 'dentist', 'care_manager', 'therapist', 'care_worker',
        'medical_social_worker', 'clerk', 'patient', 'family', 'other')),
    CONSTRAINT users_role_check CHECK (role IN ('user', 'region_admin')),
    CONSTRAINT users_must_change_password_check CHECK (must_change_password IN (0, 1)),
    CONSTRAINT users_active_check CHECK (active IN (0, 1)),
    CONSTRAINT users_totp_enabled_check CHECK (totp_enabled IN (0, 1))
);
INSERT INTO users (id, region_id, login, login_key, display_name, display_name_kana,
    profession, organization_id, role, password_hash, must_change_password, active,
    totp_secret, totp_enabled, totp_last_step, created_at, updated_at)
SELECT id, region_id, login, login_key, display_name, display_name_kana,
    profession, organization_id, role, password_hash, must_change_password, active,
    totp_secret, totp_enabled, totp_last_step, created_at, updated_at FROM users_0007;
DROP TABLE users_0007;
CREATE INDEX users_by_region ON users(region_id, login_key);
CREATE INDEX users_by_organization ON users(organization_id);

CREATE TEMP TABLE groups_0007 AS SELECT * FROM groups;
DROP TABLE groups;
CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    -- The patient profile as JSON; NULL for free groups.
    patient TEXT,
    main_thread_id TEXT NOT NULL,
    archived_at BIGINT,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT groups_kind_check CHECK (kind IN ('patient', 'free'))
);
INSERT INTO groups (id, region_id, kind, name, description, patient, main_thread_id,
    archived_at, created_by, created_at, updated_at)
SELECT id, region_id, kind, name, description, patient, main_thread_id,
    archived_at, created_by, created_at, updated_at FROM groups_0007;
DROP TABLE groups_0007;
CREATE INDEX groups_by_region ON groups(region_id);

CREATE TEMP TABLE group_members_0007 AS SELECT * FROM group_members;
DROP TABLE group_members;
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    patient_side BIGINT NOT NULL DEFAULT 0,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    CONSTRAINT group_members_role_check CHECK (role IN ('owner', 'admin', 'member')),
    CONSTRAINT group_members_patient_side_check CHECK (patient_side IN (0, 1))
);
INSERT INTO group_members (group_id, user_id, role, patient_side, joined_at)
SELECT group_id, user_id, role, patient_side, joined_at FROM group_members_0007;
DROP TABLE group_members_0007;
CREATE INDEX group_members_by_user ON group_members(user_id);

CREATE TEMP TABLE threads_0007 AS SELECT * FROM threads;
DROP TABLE threads;
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups(id),
    kind TEXT NOT NULL,
    title TEXT,
    -- The last assigned message seq: bumped in the posting transaction, so seqs are
    -- gap-free (a rolled-back post rolls the counter back too).
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    CONSTRAINT threads_kind_check CHECK (kind IN ('main', 'private'))
);
INSERT INTO threads (id, group_id, kind, title, last_seq, created_by, created_at)
SELECT id, group_id, kind, title, last_seq, created_by, created_at FROM threads_0007;
DROP TABLE threads_0007;
CREATE INDEX threads_by_group ON threads(group_id);

CREATE TEMP TABLE files_0007 AS SELECT * FROM files;
DROP TABLE files;
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
    deleted_by TEXT,
    CONSTRAINT files_kind_check CHECK (kind IN ('image', 'pdf', 'word', 'excel',
        'powerpoint', 'text', 'other'))
);
INSERT INTO files (id, region_id, group_id, thread_id, uploader_id, name, kind,
    content_type, size, segment_size, nonce_prefix, wrapped_key, kek_id, folder, tags,
    created_at, deleted_at, deleted_by)
SELECT id, region_id, group_id, thread_id, uploader_id, name, kind,
    content_type, size, segment_size, nonce_prefix, wrapped_key, kek_id, folder, tags,
    created_at, deleted_at, deleted_by FROM files_0007;
DROP TABLE files_0007;
CREATE INDEX files_by_group ON files(group_id, created_at);
CREATE INDEX files_by_thread ON files(thread_id);
CREATE INDEX files_by_kek ON files(kek_id);
