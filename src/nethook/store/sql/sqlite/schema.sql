-- The current nethook schema (sqlite), in one file: a new, empty database is created from it
-- and stamped with every migration's version. Existing databases replay the NNNN_*.sql
-- migrations instead; tests/contract/test_schema.py proves both roads give the same schema.
-- Keep it in step: a new migration changes this file too.

-- The store is the queue: events carry their own lease (owner + expiry) so a crashed
-- worker's events are re-claimed by a query.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    source        TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    timestamp     TEXT    NOT NULL,
    received_at   REAL    NOT NULL,
    delivery_id   TEXT,
    data          BLOB    NOT NULL,
    meta          BLOB    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'queued',
    attempts      INTEGER NOT NULL DEFAULT 0,
    available_at  REAL    NOT NULL,
    lease_owner   TEXT,
    lease_expires REAL,
    error         TEXT,
    depth         INTEGER NOT NULL DEFAULT 0,
    replay_of     TEXT,
    finished_at   REAL
);
-- Exactly-once acceptance: one event per (source, delivery id).
CREATE UNIQUE INDEX events_delivery ON events (source, delivery_id) WHERE delivery_id IS NOT NULL;
-- The claim queries' indexes hold only live rows, so a claim costs O(batch), not O(backlog).
CREATE INDEX events_queued ON events (seq) WHERE status = 'queued';
CREATE INDEX events_leased ON events (lease_expires) WHERE status = 'running';
-- Dead-letter and status views; source/type filters scan newest-first (cheaper ingest).
CREATE INDEX events_status_seq ON events (status, seq);

CREATE TABLE action_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    step        TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    started_at  REAL    NOT NULL,
    finished_at REAL    NOT NULL,
    output      BLOB,
    error       TEXT,
    transient   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX action_runs_event ON action_runs (event_id, id);
-- A step is recorded as succeeded at most once per event, whatever a stale worker does.
CREATE UNIQUE INDEX action_runs_once ON action_runs (event_id, step) WHERE status = 'succeeded';

CREATE TABLE artifacts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    run_id       INTEGER,
    step         TEXT,
    name         TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_at   REAL    NOT NULL
);
CREATE INDEX artifacts_event ON artifacts (event_id, id);

-- Small durable state for actions and rules (deck per game session, throttle windows).
CREATE TABLE kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (namespace, key)
);

-- (version 2) Expired key/value rows are found by the retention purge through this index.
CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
