-- One row per `appliance serve` run: lets `status` and `doctor` report a previous run
-- that ended without a clean shutdown (crash, kill -9, power loss).
CREATE TABLE daemon_runs (
    id          INTEGER PRIMARY KEY,
    pid         INTEGER NOT NULL,
    version     TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    stopped_at  TEXT,
    clean_stop  INTEGER NOT NULL DEFAULT 0 CHECK (clean_stop IN (0, 1))
) STRICT;

CREATE INDEX daemon_runs_started_at ON daemon_runs (started_at);
