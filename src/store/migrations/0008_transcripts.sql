-- Transcripts of speech: one row per uploaded recording, written by the
-- `speech.transcribe` job (the audio waits on disk under the data dir until then).

CREATE TABLE transcripts (
    id           INTEGER PRIMARY KEY,
    -- NULL: the anonymous principal of a daemon without authentication.
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    model        TEXT NOT NULL,
    task         TEXT NOT NULL CHECK (task IN ('transcribe', 'translate')),
    -- How to transcribe (language, prompt, temperature, word timestamps), as sent.
    options      TEXT NOT NULL CHECK (json_valid(options)),
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    error        TEXT,
    language     TEXT,
    -- Seconds of audio.
    duration     REAL,
    text         TEXT NOT NULL DEFAULT '',
    -- The segments with their times (and words, when asked for), as JSON.
    segments     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(segments)),
    job_id       INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    finished_at  TEXT
) STRICT;

CREATE INDEX transcripts_by_user ON transcripts (user_id, id DESC);
