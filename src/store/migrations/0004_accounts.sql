-- Accounts: users, API keys, browser sessions, the audit log, and conversation owners.
CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE COLLATE NOCASE,
    -- Argon2id PHC string.
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'user', 'readonly')),
    disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at          TEXT NOT NULL,
    password_changed_at TEXT NOT NULL
) STRICT;

CREATE TABLE api_keys (
    -- Public id, also the key's visible prefix (`apl_<id>_<secret>`).
    id           TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- sha256 of the secret part; the secret itself is shown once and never stored.
    secret_hash  TEXT NOT NULL,
    -- Space-separated scopes.
    scopes       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;
CREATE INDEX api_keys_by_user ON api_keys (user_id);

CREATE TABLE sessions (
    -- sha256 of the cookie value.
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    ip           TEXT,
    revoked_at   TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Who did what, when, from where. Never secrets or prompts.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT,
    action  TEXT NOT NULL,
    target  TEXT,
    ip      TEXT,
    success INTEGER NOT NULL CHECK (success IN (0, 1)),
    detail  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at);

-- Conversations created before accounts existed have no owner: only admins see them.
ALTER TABLE conversations ADD COLUMN user_id INTEGER REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX conversations_owner_recent ON conversations (user_id, updated_at DESC, id DESC);
