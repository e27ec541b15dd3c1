-- Members removed from a group by an owner or admin. A removed member cannot come back
-- by any invitation code — one they used before or one made later — until an owner
-- adds them again (POST /groups/{id}/members), which deletes the row. Leaving of one's
-- own accord writes none: whoever left may rejoin with a code.
CREATE TABLE group_removals (
    group_id TEXT COLLATE "C" NOT NULL REFERENCES groups(id),
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    removed_by TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    removed_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
