-- Named queries for the SQLite store. Each block starts with "-- name: NAME".

-- name: insert_event
INSERT INTO events (id, source, type, timestamp, received_at, delivery_id, data, meta,
                    status, available_at, depth, replay_of)
VALUES (:id, :source, :type, :timestamp, :received_at, :delivery_id, :data, :meta,
        'queued', :received_at, :depth, :replay_of)
ON CONFLICT DO NOTHING;

-- name: find_delivery
SELECT id, status FROM events WHERE source = :source AND delivery_id = :delivery_id;

-- name: claim_expired
-- Running events whose worker stopped renewing its lease (crashed or cut off).
UPDATE events
   SET lease_owner = :owner, lease_expires = :expires, attempts = attempts + 1
 WHERE seq IN (SELECT seq FROM events INDEXED BY events_leased
                WHERE status = 'running' AND lease_expires < :now
                LIMIT :limit)
RETURNING *;

-- name: claim_queued
-- Oldest ready events first; the partial index keeps this cheap however long the queue is.
UPDATE events
   SET status = 'running', lease_owner = :owner, lease_expires = :expires, attempts = attempts + 1
 WHERE seq IN (SELECT seq FROM events INDEXED BY events_queued
                WHERE status = 'queued' AND available_at <= :now
                ORDER BY seq
                LIMIT :limit)
RETURNING *;

-- name: renew
UPDATE events SET lease_expires = :expires
 WHERE id = :id AND lease_owner = :owner AND status = 'running';

-- name: finish
UPDATE events
   SET status = :status, error = :error, finished_at = :now, lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND lease_owner = :owner AND status = 'running';

-- name: retry_later
UPDATE events
   SET status = 'queued', error = :error, available_at = :available_at,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND lease_owner = :owner AND status = 'running';

-- name: insert_run
INSERT INTO action_runs (event_id, step, rule, action, attempt, status, started_at,
                         finished_at, output, error, transient)
VALUES (:event_id, :step, :rule, :action, :attempt, :status, :started_at, :finished_at,
        :output, :error, :transient)
ON CONFLICT DO NOTHING;

-- name: insert_artifact
INSERT INTO artifacts (event_id, run_id, step, name, path, content_type, size, sha256, created_at)
VALUES (:event_id, :run_id, :step, :name, :path, :content_type, :size, :sha256, :created_at);

-- name: get_event
SELECT * FROM events WHERE id = :id;

-- name: list_runs
SELECT * FROM action_runs WHERE event_id = :event_id ORDER BY id;

-- name: list_artifacts
SELECT * FROM artifacts WHERE event_id = :event_id ORDER BY id;

-- name: get_artifact
SELECT * FROM artifacts WHERE id = :id;

-- name: queue_depth
SELECT count(*) FROM events WHERE status IN ('queued', 'running');

-- name: status_counts
SELECT status, count(*) AS n FROM events GROUP BY status;

-- name: activity
-- The id range does the work (ids are time-ordered and uniquely indexed); received_at
-- then keeps exactly the window.
SELECT source, status, CAST(received_at / 60 AS INTEGER) AS minute, count(*) AS n, max(received_at) AS last_seen
  FROM events
 WHERE id >= :since_id AND received_at >= :since
 GROUP BY source, status, minute;

-- name: kv_get
SELECT value FROM kv WHERE namespace = :namespace AND key = :key
   AND (expires_at IS NULL OR expires_at > :now);

-- name: kv_set
INSERT INTO kv (namespace, key, value, updated_at, expires_at)
VALUES (:namespace, :key, :value, :now, :expires_at)
ON CONFLICT (namespace, key) DO UPDATE
   SET value = excluded.value, updated_at = excluded.updated_at, expires_at = excluded.expires_at;

-- name: kv_delete
DELETE FROM kv WHERE namespace = :namespace AND key = :key;

-- name: purge_cutoff_seq
-- Count retention: the newest seq that falls outside the newest :keep events.
SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET :keep;

-- name: purge_pick
-- One chunk of finished events to delete: older than the id bound (ULIDs start with their
-- time, so this is a range of the id index) or at most the seq bound. Queued and running
-- events are work, never purged.
SELECT seq, id FROM events
 WHERE status IN ('succeeded', 'dead', 'suppressed')
   AND (id < :before_id OR seq <= :max_seq)
 ORDER BY seq
 LIMIT :limit;

-- name: purge_artifact_paths
SELECT path FROM artifacts WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: purge_delete
-- Runs and artifacts rows go with their events (ON DELETE CASCADE).
DELETE FROM events WHERE seq IN (SELECT value FROM json_each(:seqs));

-- name: purge_kv
DELETE FROM kv WHERE expires_at < :now;

-- name: gate_recorded
SELECT status, output FROM action_runs
 WHERE event_id = :event_id AND step = :step AND status IN ('succeeded', 'suppressed')
 LIMIT 1;
