-- The current nethook schema (postgres), in one file: a new, empty database is created from it
-- and stamped with every migration's version. Existing databases replay the NNNN_*.sql
-- migrations instead; tests/contract/test_schema.py proves both roads give the same schema.
-- Keep it in step: a new migration changes this file too.

-- The store is the queue: events carry their own lease (owner + expiry) so a crashed
-- worker's events are re-claimed by a query.
-- Payloads are `json`, not `jsonb`: stored verbatim (key order, duplicate keys, \u0000), so
-- what a sender posted is what an operator reads back, and text search matches SQLite's.
CREATE TABLE events (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- ULIDs sort by time only byte-wise: "C" keeps `id < prefix` a time range (retention).
    id            text COLLATE "C" NOT NULL UNIQUE,
    source        text NOT NULL,
    type          text NOT NULL,
    timestamp     text NOT NULL,
    received_at   double precision NOT NULL,
    delivery_id   text,
    data          json NOT NULL,
    meta          json NOT NULL,
    status        text NOT NULL DEFAULT 'queued',
    attempts      integer NOT NULL DEFAULT 0,
    available_at  double precision NOT NULL,
    lease_owner   text,
    lease_expires double precision,
    error         text,
    depth         integer NOT NULL DEFAULT 0,
    replay_of     text,
    finished_at   double precision
)
-- A queue table: rows change status within seconds of arriving. Vacuum and analyze after
-- 2% of the rows changed (the default is 20%/10%), so dead index entries and statistics
-- do not lag behind bursts.
WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
-- Exactly-once acceptance across nodes: one event per (source, delivery id).
CREATE UNIQUE INDEX events_delivery ON events (source, delivery_id) WHERE delivery_id IS NOT NULL;
-- The claim queries' indexes hold only live rows, so a claim costs O(batch), not O(backlog).
CREATE INDEX events_queued ON events (seq) WHERE status = 'queued';
CREATE INDEX events_leased ON events (lease_expires) WHERE status = 'running';
CREATE INDEX events_status_seq ON events (status, seq);

-- Claims (nethook_claim): expired leases first (a crashed or cut-off worker's events),
-- then the oldest ready events; SKIP LOCKED lets any number of workers claim side by side.
-- NO KEY UPDATE, not UPDATE: it does not conflict with the key-share locks that inserting
-- an action run (foreign key check) takes, so recording results never blocks a claim.
-- A PL/pgSQL function, so that its plan is cached per connection and made with sorts and
-- bitmap scans off: the indexes already return rows in queue order, and with stale
-- statistics (a burst into a young table) the planner would otherwise read and sort the
-- whole backlog for every claim.
CREATE FUNCTION nethook_claim(p_owner text, p_expires double precision,
                              p_now double precision, p_limit integer)
RETURNS SETOF events
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH expired AS (
        SELECT seq FROM events
         WHERE status = 'running' AND lease_expires < p_now
         ORDER BY lease_expires
         LIMIT p_limit
           FOR NO KEY UPDATE SKIP LOCKED
    ), queued AS (
        SELECT seq FROM events
         WHERE status = 'queued' AND available_at <= p_now
         ORDER BY seq
         LIMIT p_limit
           FOR NO KEY UPDATE SKIP LOCKED
    ), c AS (
        SELECT seq FROM (SELECT seq FROM expired UNION ALL SELECT seq FROM queued) AS both_
         LIMIT p_limit
    )
    UPDATE events e
       SET status = 'running', lease_owner = p_owner, lease_expires = p_expires,
           attempts = e.attempts + 1
      FROM c
     WHERE e.seq = c.seq
    RETURNING e.*;
END
$$;

CREATE TABLE action_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text COLLATE "C" NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    step        text NOT NULL,
    rule        text NOT NULL,
    action      text NOT NULL,
    attempt     integer NOT NULL,
    status      text NOT NULL,
    started_at  double precision NOT NULL,
    finished_at double precision NOT NULL,
    output      json,
    error       text,
    transient   boolean NOT NULL DEFAULT false
);
CREATE INDEX action_runs_event ON action_runs (event_id, id);
-- A step is recorded as succeeded at most once per event, whatever a stale worker does.
CREATE UNIQUE INDEX action_runs_once ON action_runs (event_id, step) WHERE status = 'succeeded';

CREATE TABLE artifacts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text COLLATE "C" NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    run_id       bigint,
    step         text,
    name         text NOT NULL,
    path         text NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX artifacts_event ON artifacts (event_id, id);

-- Small durable state for actions and rules (deck per game session, throttle windows).
CREATE TABLE kv (
    namespace  text NOT NULL,
    key        text NOT NULL,
    value      json NOT NULL,
    updated_at double precision NOT NULL,
    expires_at double precision,
    PRIMARY KEY (namespace, key)
);

-- (version 2) Expired key/value rows are found by the retention purge through this index.
CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
