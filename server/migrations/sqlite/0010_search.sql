-- The search index (docs/architecture.md, "Search"). One row per searchable document —
-- a live message or a live file — holding its normalised text (domain/search/normalize.rs)
-- and what the filters and the visibility rule need, so a search never reads `messages`
-- or `files`. Two ways in, both kept in the same transaction as every write:
--   * search_grams: every distinct 1- and 2-character gram of a document (packed as an
--     integer), for one- and two-character queries (痛, 褥瘡), which no trigram index
--     can answer; scanned newest first along its primary key.
--   * search_fts: FTS5 with the trigram tokenizer over the same text (external content,
--     kept by the triggers below), for queries of three characters or more.
-- Existing messages and files are indexed at start-up by `Search::backfill`, in
-- batches, with progress in the log (its cursor is in search_state).

CREATE TABLE search_docs (
    doc_no INTEGER PRIMARY KEY,
    source TEXT NOT NULL CHECK (source IN ('message', 'file')),
    source_id TEXT NOT NULL UNIQUE,
    region_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    seq BIGINT,
    created_at BIGINT NOT NULL,
    has_file BIGINT NOT NULL CHECK (has_file IN (0, 1)),
    -- Space-separated, with a space at both ends (' pdf image '), so one LIKE finds one.
    file_kinds TEXT NOT NULL DEFAULT '',
    -- 0: text still to be extracted (a file just uploaded), 1: done, 2: none to extract.
    extract_state BIGINT NOT NULL DEFAULT 1 CHECK (extract_state IN (0, 1, 2)),
    body TEXT NOT NULL
);
CREATE INDEX search_docs_by_thread ON search_docs(thread_id, doc_no);

CREATE TABLE search_grams (
    gram BIGINT NOT NULL,
    doc_no BIGINT NOT NULL,
    PRIMARY KEY (gram, doc_no)
) WITHOUT ROWID;

CREATE VIRTUAL TABLE search_fts USING fts5(
    body,
    content = 'search_docs',
    content_rowid = 'doc_no',
    tokenize = 'trigram case_sensitive 1'
);

CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN
    INSERT INTO search_fts(rowid, body) VALUES (new.doc_no, new.body);
END;
CREATE TRIGGER search_docs_ad AFTER DELETE ON search_docs BEGIN
    INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.doc_no, old.body);
END;
CREATE TRIGGER search_docs_au AFTER UPDATE OF body ON search_docs BEGIN
    INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.doc_no, old.body);
    INSERT INTO search_fts(rowid, body) VALUES (new.doc_no, new.body);
END;

CREATE TABLE search_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
