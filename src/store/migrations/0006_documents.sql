-- Durable jobs (document ingestion now; transcriptions, images and backups later),
-- and documents for retrieval: collections, documents, chunks with full-text search,
-- and one embedding per chunk.

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    -- NULL: the anonymous principal of a daemon without authentication.
    user_id       INTEGER REFERENCES users (id) ON DELETE CASCADE,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    -- What to do, as the job kind defines it (a JSON object).
    payload       TEXT NOT NULL CHECK (json_valid(payload)),
    progress      REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    note          TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 3,
    error         TEXT,
    -- Not before this time (retry backoff).
    run_after     TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
) STRICT;

CREATE INDEX jobs_ready ON jobs (state, run_after, id);
CREATE INDEX jobs_by_user ON jobs (user_id, id DESC);

CREATE TABLE collections (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- Shared by an administrator: every user may read and search it.
    shared      INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    created_at  TEXT NOT NULL
) STRICT;

CREATE UNIQUE INDEX collections_name ON collections (ifnull(user_id, 0), name);

CREATE TABLE documents (
    id            INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    -- The stored file (files/<first two hex digits>/<sha256>); one file per content.
    sha256        TEXT NOT NULL,
    name          TEXT NOT NULL,
    source_url    TEXT,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'indexing', 'ready', 'failed')),
    error         TEXT,
    pages         INTEGER,
    chunks        INTEGER NOT NULL DEFAULT 0,
    job_id        INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL,
    indexed_at    TEXT,
    UNIQUE (collection_id, sha256)
) STRICT;

CREATE INDEX documents_by_sha ON documents (sha256);

CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    text        TEXT NOT NULL,
    page        INTEGER,
    -- Headings above the chunk, outermost first, joined by " > ".
    heading     TEXT NOT NULL DEFAULT '',
    -- Character offsets in the extracted text of the document (or of its page).
    char_start  INTEGER NOT NULL,
    char_end    INTEGER NOT NULL,
    tokens      INTEGER NOT NULL,
    UNIQUE (document_id, seq)
) STRICT;

CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    text, heading, content = 'chunks', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text, heading) VALUES (new.id, new.text, new.heading);
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text, heading) VALUES ('delete', old.id, old.text, old.heading);
END;

-- One embedding per chunk: `embedding` is sqlite-vec's float32 vector (its functions
-- read it as is), `bits` the same vector quantised to one bit per dimension
-- (vec_quantize_binary) for the first, coarse search pass.
CREATE TABLE chunk_vectors (
    chunk_id  INTEGER PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
    model     TEXT NOT NULL,
    embedding BLOB NOT NULL,
    bits      BLOB NOT NULL
) STRICT;

-- The passages an assistant reply was given, numbered as it cites them (a JSON array).
ALTER TABLE messages ADD COLUMN sources TEXT CHECK (sources IS NULL OR json_valid(sources));

-- Collections a conversation answers from (a JSON array of collection ids).
ALTER TABLE conversations ADD COLUMN collections TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(collections));
