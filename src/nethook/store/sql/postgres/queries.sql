-- Named queries for the PostgreSQL store. Each block starts with "-- name: NAME".
-- Placeholders are psycopg's %(name)s; arrays go as %(name)b (binary: no quoting work for
-- psycopg per element). A literal percent sign would have to be written %%.

-- name: insert_events
-- Group commit: every append waiting in this process goes in as one statement (arrays
-- unnested in order), in autocommit: one round trip, one WAL flush. ON CONFLICT DO NOTHING
-- covers the delivery-id index across nodes: a concurrent insert of the same key waits for
-- the other transaction, then skips. The NOTIFY goes out at commit, to every node's LISTEN
-- connection (this one included), and only when something was inserted.
WITH ins AS (
    INSERT INTO events (id, source, type, timestamp, received_at, delivery_id, data, meta,
                        status, available_at, depth, replay_of)
    SELECT t.id, t.source, t.type, t.ts, t.received_at, t.delivery_id, t.data::json,
           t.meta::json, 'queued', t.received_at, t.depth, t.replay_of
      FROM unnest(%(ids)b::text[], %(sources)b::text[], %(types)b::text[],
                  %(timestamps)b::text[], %(received)b::float8[], %(deliveries)b::text[],
                  %(datas)b::text[], %(metas)b::text[], %(depths)b::int[], %(replays)b::text[])
           AS t(id, source, type, ts, received_at, delivery_id, data, meta, depth, replay_of)
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT ins.id FROM ins CROSS JOIN (SELECT pg_notify('nethook_work', '')) AS wake;

-- name: find_ids
SELECT id, received_at, status FROM events WHERE id = ANY(%(ids)b::text[]);

-- name: find_deliveries
SELECT e.source, e.delivery_id, e.id, e.status
  FROM events e
  JOIN unnest(%(sources)b::text[], %(deliveries)b::text[]) AS k(source, delivery_id)
    ON e.source = k.source AND e.delivery_id = k.delivery_id;

-- name: claim
-- See nethook_claim in the schema: one round trip, planned for queue order.
SELECT * FROM nethook_claim(%(owner)s, %(expires)s, %(now)s, %(limit)s);

-- name: renew
UPDATE events SET lease_expires = %(expires)s
 WHERE id = ANY(%(ids)b::text[]) AND lease_owner = %(owner)s AND status = 'running'
RETURNING id;

-- name: finish_many
-- Group commit for the dispatchers: every finish waiting in this process, one statement.
UPDATE events e
   SET status = u.status, error = u.error, finished_at = u.at,
       lease_owner = NULL, lease_expires = NULL
  FROM unnest(%(ids)b::text[], %(owners)b::text[], %(statuses)b::text[], %(errors)b::text[],
              %(ats)b::float8[]) AS u(id, owner, status, error, at)
 WHERE e.id = u.id AND e.lease_owner = u.owner AND e.status = 'running'
RETURNING e.id, u.owner;

-- name: retry_later
UPDATE events
   SET status = 'queued', error = %(error)s, available_at = %(available_at)s,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = %(id)s AND lease_owner = %(owner)s AND status = 'running';

-- name: insert_run
INSERT INTO action_runs (event_id, step, rule, action, attempt, status, started_at,
                         finished_at, output, error, transient)
VALUES (%(event_id)s, %(step)s, %(rule)s, %(action)s, %(attempt)s, %(status)s, %(started_at)s,
        %(finished_at)s, %(output)s::json, %(error)s, %(transient)s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: insert_runs
-- Group commit for the dispatchers' run records. ON CONFLICT DO NOTHING: a second success
-- of a step (a stale worker, or twice in this very batch) is not stored.
INSERT INTO action_runs (event_id, step, rule, action, attempt, status, started_at,
                         finished_at, output, error, transient)
SELECT r.event_id, r.step, r.rule, r.action, r.attempt, r.status, r.started_at,
       r.finished_at, r.output::json, r.error, r.transient
  FROM unnest(%(event_ids)b::text[], %(steps)b::text[], %(rules)b::text[],
              %(actions)b::text[], %(attempts)b::int[], %(statuses)b::text[],
              %(started)b::float8[], %(finished)b::float8[], %(outputs)b::text[],
              %(errors)b::text[], %(transients)b::bool[])
       WITH ORDINALITY AS r(event_id, step, rule, action, attempt, status, started_at,
                            finished_at, output, error, transient, ord)
 ORDER BY r.ord
ON CONFLICT DO NOTHING
RETURNING id, event_id, step, attempt, status;

-- name: insert_artifact
INSERT INTO artifacts (event_id, run_id, step, name, path, content_type, size, sha256, created_at)
VALUES (%(event_id)s, %(run_id)s, %(step)s, %(name)s, %(path)s, %(content_type)s, %(size)s,
        %(sha256)s, %(created_at)s)
RETURNING id;

-- name: get_event
SELECT * FROM events WHERE id = %(id)s;

-- name: list_runs
SELECT * FROM action_runs WHERE event_id = %(event_id)s ORDER BY id;

-- name: list_artifacts
SELECT * FROM artifacts WHERE event_id = %(event_id)s ORDER BY id;

-- name: get_artifact
SELECT * FROM artifacts WHERE id = %(id)s;

-- name: queue_depth
SELECT count(*) FROM events WHERE status IN ('queued', 'running');

-- name: status_counts
SELECT status, count(*) AS n FROM events GROUP BY status;

-- name: activity
-- The id range does the work (ids are time-ordered and uniquely indexed); received_at
-- then keeps exactly the window.
SELECT source, status, floor(received_at / 60)::bigint AS minute, count(*) AS n, max(received_at) AS last_seen
  FROM events
 WHERE id >= %(since_id)s AND received_at >= %(since)s
 GROUP BY source, status, minute;

-- name: kv_get
SELECT value FROM kv WHERE namespace = %(namespace)s AND key = %(key)s
   AND (expires_at IS NULL OR expires_at > %(now)s);

-- name: kv_set
INSERT INTO kv (namespace, key, value, updated_at, expires_at)
VALUES (%(namespace)s, %(key)s, %(value)s::json, %(now)s, %(expires_at)s)
ON CONFLICT (namespace, key) DO UPDATE
   SET value = excluded.value, updated_at = excluded.updated_at, expires_at = excluded.expires_at;

-- name: kv_delete
DELETE FROM kv WHERE namespace = %(namespace)s AND key = %(key)s;

-- name: gate_lock
-- Storm control across nodes: one group's decisions are serialised by a transaction-level
-- advisory lock on its key (a row lock cannot cover a group that has no row yet).
SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0));

-- name: gate_recorded
SELECT status, output FROM action_runs
 WHERE event_id = %(event_id)s AND step = %(step)s AND status IN ('succeeded', 'suppressed')
 LIMIT 1;

-- name: purge_cutoff_seq
-- Count retention: the newest seq that falls outside the newest %(keep)s events.
SELECT seq FROM events ORDER BY seq DESC OFFSET %(keep)s LIMIT 1;

-- name: purge_pick
-- One chunk of finished events to delete: older than the id bound (ULIDs start with their
-- time) or at most the seq bound. Queued and running events are work, never purged.
-- SKIP LOCKED: purgers on several nodes take different chunks and never wait on a worker.
SELECT seq, id FROM events
 WHERE status IN ('succeeded', 'dead', 'suppressed')
   AND (id < %(before_id)s OR seq <= %(max_seq)s)
 ORDER BY seq
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- name: purge_artifact_paths
SELECT path FROM artifacts WHERE event_id = ANY(%(ids)b::text[]);

-- name: purge_delete
-- Runs and artifacts rows go with their events (ON DELETE CASCADE).
DELETE FROM events WHERE seq = ANY(%(seqs)b::bigint[]);

-- name: purge_kv
DELETE FROM kv WHERE expires_at < %(now)s;
