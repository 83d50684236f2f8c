-- Usage per user and UTC day, and per-user overrides of the global limits.
CREATE TABLE usage_daily (
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day              TEXT NOT NULL,
    requests         INTEGER NOT NULL DEFAULT 0,
    prompt_tokens    INTEGER NOT NULL DEFAULT 0,
    generated_tokens INTEGER NOT NULL DEFAULT 0,
    audio_seconds    REAL NOT NULL DEFAULT 0,
    images           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
) STRICT, WITHOUT ROWID;

-- NULL means "the global setting"; 0 means unlimited.
CREATE TABLE user_limits (
    user_id                INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    requests_per_minute    INTEGER,
    daily_generated_tokens INTEGER,
    daily_audio_minutes    INTEGER,
    daily_images           INTEGER
) STRICT;
