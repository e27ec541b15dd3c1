-- Both backends give the same answers for the same data (docs/architecture.md, "One
-- domain, two databases"), tested by server/tests/conformance.
--
-- 1. Every text column compares, orders and case-folds like SQLite's BINARY: COLLATE
--    "C", i.e. by code point, whatever locale the database was created with (a ja-JP or
--    en-US default would sort kana, kanji and punctuation by language rules, and make
--    lower() fold non-ASCII letters, while SQLite does neither). The loop covers every
--    text column that exists now; new ones must say COLLATE "C" themselves (the
--    conformance test fails otherwise). The view reads these columns, so it is dropped
--    and created again, unchanged.
DROP VIEW thread_audience;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT col.table_name, col.column_name
        FROM information_schema.columns col
        JOIN information_schema.tables t
          ON t.table_schema = col.table_schema AND t.table_name = col.table_name
        WHERE col.table_schema = current_schema()
          AND t.table_type = 'BASE TABLE'
          AND col.table_name NOT LIKE '\_sqlx%'
          AND col.data_type = 'text'
          AND col.collation_name IS DISTINCT FROM 'C'
        ORDER BY col.table_name, col.ordinal_position
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "C"',
                       c.table_name, c.column_name);
    END LOOP;
END
$$;

CREATE VIEW thread_audience AS
SELECT t.id AS thread_id,
       t.group_id,
       g.region_id,
       m.user_id,
       m.role AS group_role,
       m.patient_side,
       g.archived_at
FROM threads t
JOIN groups g ON g.id = t.group_id
JOIN group_members m ON m.group_id = t.group_id
WHERE t.kind = 'main'
   OR EXISTS (SELECT 1 FROM thread_members tm WHERE tm.thread_id = t.id AND tm.user_id = m.user_id);

-- 2. Enum-like columns accept only the values the protocol defines (the wire forms of
--    tsunagu_protocol's enums), and 0/1 flags only 0 and 1. The names are the ones the
--    SQLite migration gives the same constraints.
ALTER TABLE organizations
    ADD CONSTRAINT organizations_kind_check CHECK (kind IN ('clinic', 'hospital',
        'visiting_nursing_station', 'pharmacy', 'care_management_office', 'dental_clinic',
        'municipality', 'other')),
    ADD CONSTRAINT organizations_active_check CHECK (active IN (0, 1));

ALTER TABLE users
    ADD CONSTRAINT users_profession_check CHECK (profession IN ('doctor', 'nurse',
        'pharmacist', 'dentist', 'care_manager', 'therapist', 'care_worker',
        'medical_social_worker', 'clerk', 'patient', 'family', 'other')),
    ADD CONSTRAINT users_role_check CHECK (role IN ('user', 'region_admin')),
    ADD CONSTRAINT users_must_change_password_check CHECK (must_change_password IN (0, 1)),
    ADD CONSTRAINT users_active_check CHECK (active IN (0, 1)),
    ADD CONSTRAINT users_totp_enabled_check CHECK (totp_enabled IN (0, 1));

ALTER TABLE groups
    ADD CONSTRAINT groups_kind_check CHECK (kind IN ('patient', 'free'));

ALTER TABLE group_members
    ADD CONSTRAINT group_members_role_check CHECK (role IN ('owner', 'admin', 'member')),
    ADD CONSTRAINT group_members_patient_side_check CHECK (patient_side IN (0, 1));

ALTER TABLE threads
    ADD CONSTRAINT threads_kind_check CHECK (kind IN ('main', 'private'));

ALTER TABLE files
    ADD CONSTRAINT files_kind_check CHECK (kind IN ('image', 'pdf', 'word', 'excel',
        'powerpoint', 'text', 'other'));
