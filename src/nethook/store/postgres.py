"""PostgreSQL store: many stateless nodes share one database (psycopg 3, async, pooled).

* **Group commit.** Appends, action-run records and finishes are queued to writer tasks
  (:mod:`.pg_batch`); each batch is one set-based statement in autocommit: one round trip
  and one WAL flush for every request waiting (``synchronous_commit`` stays on: a 2xx is
  on disk). Appends have a small pool of their own, so ingest never waits behind workers.
* **Claims** lock candidate rows with ``FOR NO KEY UPDATE SKIP LOCKED`` and lease them, so
  any number of workers on any number of hosts take different events without waiting.
* **Wake-ups.** Every batch that stored events sends ``NOTIFY nethook_work``; one ``LISTEN``
  connection per process wakes its idle dispatcher within milliseconds. The dispatcher's
  poll interval stays as the fallback (a lost notification, a retry coming due).
* **Failures.** A lost connection, an exhausted pool or a database that is down raises
  :class:`~nethook.exceptions.StoreUnavailable` (ingest answers 503 + Retry-After); the
  pools (:mod:`.pg_pool`) replace dead connections in the background, so service resumes
  by itself.

Lease times, ``available_at`` and TTLs are the nodes' wall clocks, as with SQLite: hosts
sharing a database are expected to run NTP (a skew of a second against leases of tens of
seconds is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ..config import StoreConfig
from ..events import (
    ActionRun,
    AppendResult,
    Artifact,
    Event,
    EventDraft,
    EventStatus,
    id_floor,
    new_id,
)
from ..exceptions import StoreUnavailable
from . import pg_schema
from .base import ActivityRow, EventFilter, PurgeResult, Store, event_list_query, load_queries
from .pg_batch import Batcher, Finish, clean, finish_many, insert_events, insert_runs
from .pg_pool import CONNECT_ARGS, UNAVAILABLE, Pools
from .rows import (
    activity_from_rows,
    artifact_from_row,
    draft_params,
    event_from_row,
    run_from_row,
)

log = structlog.get_logger("nethook.store.postgres")

CHANNEL = "nethook_work"
# One append writer: while its batch commits, the next requests gather, so the batch size
# follows the load by itself. A second writer mostly sent small batches beside it and cost
# more CPU per event than it saved in waiting (measured: bench/stores.py).
_WRITERS = 1


def _text(value: bytes) -> str:
    return value.decode()


class PostgresStore(Store):
    """The shared store for several nodes. ``cfg.url`` is a libpq URL (postgresql://...)."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.dsn = cfg.url
        self.q = load_queries("postgres")
        self._pools = Pools(self.dsn)
        delay = cfg.commit_delay_ms / 1000.0
        self._appends: Batcher[dict[str, Any], AppendResult] = Batcher(
            "append", self._append_batch, writers=_WRITERS, delay=delay
        )
        self._runs: Batcher[ActionRun, int | None] = Batcher("runs", self._runs_batch)
        self._finishes: Batcher[Finish, bool] = Batcher("finish", self._finish_batch)
        self._listener: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self._closed = False
        #: True while the LISTEN connection is up (tests and /health read it).
        self.listening = False

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        # One plain connection first: an unreachable server fails at once (the pool would
        # keep retrying until its timeout), and the schema is settled before any query.
        try:
            first = await AsyncConnection.connect(self.dsn, **CONNECT_ARGS)
            async with first:
                if self.cfg.migrate:
                    await pg_schema.migrate(first)
                else:
                    await pg_schema.require_current(first)
            await self._pools.open(self.cfg.pool_size, _WRITERS)
        except UNAVAILABLE as exc:  # the pools closed whatever they had opened
            where = pg_schema.safe_url(self.dsn)
            raise StoreUnavailable(f"postgresql: cannot open {where}: {exc}") from exc
        for batcher in (self._appends, self._runs, self._finishes):
            batcher.start()
        self._listener = asyncio.create_task(self._listen(), name="nethook-pg-listen")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pools.closed = True  # no retries, no pool checks while shutting down
        # What is queued is written before the writers stop.
        for batcher in (self._appends, self._runs, self._finishes):
            await batcher.close()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._pools.close()

    # ------------------------------------------------------------------ group commit

    async def append(self, draft: EventDraft) -> AppendResult:
        result = await self._appends.submit(draft_params(draft, time.time()))
        if not result.duplicate:
            self._work.set()
        return result

    async def _append_batch(self, rows: list[dict[str, Any]]) -> list[AppendResult]:
        return await self._pools.statement(
            lambda conn: insert_events(conn, self.q, rows), self._pools.ingest_pool
        )

    async def _runs_batch(self, runs: list[ActionRun]) -> list[int | None]:
        return await self._pools.statement(lambda conn: insert_runs(conn, self.q, runs))

    async def _finish_batch(self, items: list[Finish]) -> list[bool]:
        return await self._pools.statement(lambda conn: finish_many(conn, self.q, items))

    # ------------------------------------------------------------------ wake-ups

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                conn = await AsyncConnection.connect(self.dsn, **CONNECT_ARGS)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    backoff = 0.1
                    self._work.set()  # work may have arrived while we were not listening
                    async for _ in conn.notifies():
                        self._work.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # down or restarting: poll until we are back
                if self.listening:
                    log.warning("store.listen_lost", error=str(exc))
            self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    def notify_work(self) -> None:
        self._work.set()

    # ------------------------------------------------------------------ the queue

    async def ping(self) -> None:
        async with self._pools.conn() as conn:
            await conn.execute("SELECT 1")

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Event]:
        now = time.time()
        params = {"owner": owner, "expires": now + lease_seconds, "now": now, "limit": limit}

        async def op(conn: AsyncConnection[Any]) -> list[Event]:
            cur = await conn.cursor(row_factory=dict_row).execute(self.q["claim"], params)
            return sorted((event_from_row(r) for r in await cur.fetchall()), key=lambda e: e.seq)

        return await self._pools.statement(op)

    async def renew(self, owner: str, event_ids: list[str], lease_seconds: float) -> set[str]:
        params = {"ids": event_ids, "owner": owner, "expires": time.time() + lease_seconds}
        return {r["id"] for r in await self._pools.rows(self.q["renew"], params)}

    async def finish(
        self, event_id: str, owner: str, status: EventStatus, error: str | None = None
    ) -> bool:
        return await self._finishes.submit(Finish(event_id, owner, str(status), error, time.time()))

    async def retry_later(
        self, event_id: str, owner: str, available_at: float, error: str | None
    ) -> bool:
        params = {
            "id": event_id,
            "owner": owner,
            "available_at": available_at,
            "error": clean(error),
        }
        async with self._pools.conn() as conn:
            cur = await conn.execute(self.q["retry_later"], params)
            return cur.rowcount == 1

    async def record_run(self, run: ActionRun) -> int | None:
        return await self._runs.submit(run)

    async def add_artifact(self, artifact: Artifact) -> int:
        params = artifact.as_dict()
        params.pop("id")
        rows = await self._pools.rows(self.q["insert_artifact"], params)
        return int(rows[0]["id"])

    async def gate(
        self,
        event_id: str,
        step: str,
        rule: str,
        key: str,
        decide: Callable[[Any | None], tuple[dict[str, Any], Any | None]],
    ) -> dict[str, Any]:
        q = self.q

        async def op(conn: AsyncConnection[Any]) -> dict[str, Any]:
            # Lock first, then look: a second worker on the same event waits here and then
            # finds the first one's decision instead of deciding again.
            await conn.execute(q["gate_lock"], {"lock": f"throttle:{key}"})
            cur = await conn.execute(q["gate_recorded"], {"event_id": event_id, "step": step})
            row = await cur.fetchone()
            if row is not None:
                recorded: dict[str, Any] = orjson.loads(row[1])
                return recorded
            now = time.time()
            ns = {"namespace": "throttle", "key": key, "now": now}
            cur = await conn.execute(q["kv_get"], ns)
            current = await cur.fetchone()
            decision, state = decide(orjson.loads(current[0]) if current else None)
            if state is None:
                await conn.execute(q["kv_delete"], ns)
            else:
                value = _text(orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS))
                await conn.execute(q["kv_set"], {**ns, "value": value, "expires_at": None})
            verdict = decision.get("verdict")
            if verdict in ("run", "suppress"):
                status = "succeeded" if verdict == "run" else "suppressed"
                run = {
                    "event_id": event_id,
                    "step": step,
                    "rule": rule,
                    "action": "throttle",
                    "attempt": 1,
                    "status": status,
                    "started_at": now,
                    "finished_at": now,
                    "output": _text(orjson.dumps(decision, option=orjson.OPT_NON_STR_KEYS)),
                    "error": None,
                    "transient": False,
                }
                await conn.execute(q["insert_run"], run)
            return decision

        return await self._pools.run(op)

    # ------------------------------------------------------------------ reads

    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._pools.rows(self.q["get_event"], {"id": event_id})
        return event_from_row(rows[0]) if rows else None

    async def list_events(self, flt: EventFilter) -> list[Event]:
        sql, params = event_list_query(
            flt,
            lambda name: f"%({name})s",
            "(data::text ILIKE {text} OR type ILIKE {text} OR id = {raw})",
        )
        return [event_from_row(r) for r in await self._pools.rows(sql, params)]

    async def list_runs(self, event_id: str) -> list[ActionRun]:
        rows = await self._pools.rows(self.q["list_runs"], {"event_id": event_id})
        return [run_from_row(r) for r in rows]

    async def list_artifacts(self, event_id: str) -> list[Artifact]:
        rows = await self._pools.rows(self.q["list_artifacts"], {"event_id": event_id})
        return [artifact_from_row(r) for r in rows]

    async def get_artifact(self, artifact_id: int) -> Artifact | None:
        rows = await self._pools.rows(self.q["get_artifact"], {"id": artifact_id})
        return artifact_from_row(rows[0]) if rows else None

    async def queue_depth(self) -> int:
        rows = await self._pools.rows(self.q["queue_depth"])
        return int(rows[0]["count"])

    async def status_counts(self) -> dict[str, int]:
        return {r["status"]: int(r["n"]) for r in await self._pools.rows(self.q["status_counts"])}

    async def activity(self, since: float) -> list[ActivityRow]:
        params = {"since_id": id_floor(since), "since": since}
        return activity_from_rows(await self._pools.rows(self.q["activity"], params))

    async def kv_get(self, namespace: str, key: str) -> Any | None:
        params = {"namespace": namespace, "key": key, "now": time.time()}
        rows = await self._pools.rows(self.q["kv_get"], params)
        return orjson.loads(rows[0]["value"]) if rows else None

    async def kv_set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        now = time.time()
        params = {
            "namespace": namespace,
            "key": key,
            "value": _text(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)),
            "now": now,
            "expires_at": now + ttl if ttl else None,
        }
        async with self._pools.conn() as conn:
            await conn.execute(self.q["kv_set"], params)

    # ------------------------------------------------------------------ retention

    async def purge(
        self, before: float | None = None, keep: int | None = None, chunk: int = 500
    ) -> PurgeResult:
        q = self.q
        max_seq = 0
        if keep is not None:
            rows = await self._pools.rows(q["purge_cutoff_seq"], {"keep": keep})
            max_seq = int(rows[0]["seq"]) if rows else 0
        before_id = new_id(before)[:10] if before is not None else ""
        pick = {"before_id": before_id, "max_seq": max_seq, "limit": chunk}
        total, paths = 0, []

        async def one_chunk(conn: AsyncConnection[Any]) -> tuple[int, list[str]]:
            cur = await conn.execute(q["purge_pick"], pick)
            picked = await cur.fetchall()
            if not picked:
                return 0, []
            ids = [r[1] for r in picked]
            cur = await conn.execute(q["purge_artifact_paths"], {"ids": ids})
            found = [r[0] for r in await cur.fetchall()]
            await conn.execute(q["purge_delete"], {"seqs": [r[0] for r in picked]})
            return len(picked), found

        # Short transactions, one chunk each: ingest and workers never wait behind a purge.
        while True:
            n, found = await self._pools.run(one_chunk)
            total += n
            paths += found
            if n < chunk:
                break
            await asyncio.sleep(0)
        async with self._pools.conn() as conn:
            cur = await conn.execute(q["purge_kv"], {"now": time.time()})
            kv = max(cur.rowcount, 0)
        return PurgeResult(events=total, artifact_paths=tuple(paths), kv=kv)
