-- Groups, membership, threads (main and 内緒話), messages, reactions, receipts, invitations.

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
    updated_at BIGINT NOT NULL
);
CREATE INDEX groups_by_region ON groups(region_id);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    patient_side BIGINT NOT NULL DEFAULT 0,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members(user_id);

CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups(id),
    kind TEXT NOT NULL,
    title TEXT,
    -- The last assigned message seq: bumped in the posting transaction, so seqs are
    -- gap-free (a rolled-back post rolls the counter back too).
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX threads_by_group ON threads(group_id);

-- Members of 内緒話 threads only; the main timeline's audience is the group.
CREATE TABLE thread_members (
    thread_id TEXT NOT NULL REFERENCES threads(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (thread_id, user_id)
);
CREATE INDEX thread_members_by_user ON thread_members(user_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES threads(id),
    seq BIGINT NOT NULL,
    author_id TEXT NOT NULL REFERENCES users(id),
    client_msg_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reply_to TEXT,
    mentions TEXT NOT NULL DEFAULT '[]',
    attachments TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    UNIQUE (thread_id, seq),
    UNIQUE (thread_id, author_id, client_msg_id)
);

CREATE TABLE message_edits (
    message_id TEXT NOT NULL REFERENCES messages(id),
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    edited_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, version)
);

CREATE TABLE reactions (
    message_id TEXT NOT NULL REFERENCES messages(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);

CREATE TABLE read_receipts (
    thread_id TEXT NOT NULL REFERENCES threads(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    last_read_seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (thread_id, user_id)
);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups(id),
    code_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL REFERENCES users(id),
    expires_at BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0,
    requires_approval BIGINT NOT NULL DEFAULT 0,
    patient_side BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX invitations_by_group ON invitations(group_id);

CREATE TABLE join_requests (
    group_id TEXT NOT NULL REFERENCES groups(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    invitation_id TEXT NOT NULL REFERENCES invitations(id),
    patient_side BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
