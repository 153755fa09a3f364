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
  pools replace dead connections in the background, so service resumes by itself.

Lease times, ``available_at`` and TTLs are the nodes' wall clocks, as with SQLite: hosts
sharing a database are expected to run NTP (a skew of a second against leases of tens of
seconds is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
import psycopg
import structlog
from psycopg import AsyncConnection, errors
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

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
from .rows import artifact_from_row, draft_params, event_from_row, run_from_row

log = structlog.get_logger("nethook.store.postgres")

T = TypeVar("T")
CHANNEL = "nethook_work"
# One append writer: while its batch commits, the next requests gather, so the batch size
# follows the load by itself. A second writer mostly sent small batches beside it and cost
# more CPU per event than it saved in waiting (measured: bench/stores.py).
_WRITERS = 1
# How long a request waits for a pooled connection before the store reports itself
# unavailable (a 503 the sender retries), rather than hanging while the database is down.
_POOL_TIMEOUT = 3.0
_RECONNECT_TIMEOUT = 4.0
_CONNECT_ARGS: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": 5,
    # A peer that vanished without closing (host down, cable) is noticed within ~20 s.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "application_name": "nethook",
}
# PostgreSQL rolled the transaction back to break a deadlock or a serialisation conflict:
# running it again is the documented remedy.
_ROLLBACK = (errors.DeadlockDetected, errors.SerializationFailure, errors.TransactionRollback)
# Connection-level trouble: the database is down, restarting or unreachable.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed)


class _RawJson(Loader):
    """Hand ``json`` columns over as bytes: orjson parses them, as for SQLite rows."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def _text(value: bytes) -> str:
    return value.decode()


class PostgresStore(Store):
    """The shared store for several nodes. ``cfg.url`` is a libpq URL (postgresql://...)."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.dsn = cfg.url
        self.q = load_queries("postgres")
        #: Workers, reads and everything but appends.
        self.pool: AsyncConnectionPool | None = None
        #: The append writers' own connections: ingest never queues behind dispatchers.
        self.ingest_pool: AsyncConnectionPool | None = None
        delay = cfg.commit_delay_ms / 1000.0
        self._appends: Batcher[dict[str, Any], AppendResult] = Batcher(
            "append", self._append_batch, writers=_WRITERS, delay=delay
        )
        self._runs: Batcher[ActionRun, int | None] = Batcher("runs", self._runs_batch)
        self._finishes: Batcher[Finish, bool] = Batcher("finish", self._finish_batch)
        self._listener: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self._closed = False
        self._checking: set[asyncio.Task[None]] = set()
        #: True while the LISTEN connection is up (tests and /health read it).
        self.listening = False

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        # One plain connection first: an unreachable server fails at once (the pool would
        # keep retrying until its timeout), and the schema is settled before any query.
        try:
            first = await AsyncConnection.connect(self.dsn, **_CONNECT_ARGS)
            async with first:
                if self.cfg.migrate:
                    await pg_schema.migrate(first)
                else:
                    await pg_schema.require_current(first)
            self.pool = self._new_pool("nethook", min(2, self.cfg.pool_size), self.cfg.pool_size)
            self.ingest_pool = self._new_pool("nethook-ingest", _WRITERS, _WRITERS + 1)
            await self.pool.open(wait=True, timeout=15)
            await self.ingest_pool.open(wait=True, timeout=15)
        except _UNAVAILABLE as exc:
            for pool in (self.pool, self.ingest_pool):
                if pool is not None:
                    await pool.close()
            where = pg_schema.safe_url(self.dsn)
            raise StoreUnavailable(f"postgresql: cannot open {where}: {exc}") from exc
        for batcher in (self._appends, self._runs, self._finishes):
            batcher.start()
        self._listener = asyncio.create_task(self._listen(), name="nethook-pg-listen")

    def _new_pool(self, name: str, min_size: int, max_size: int) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs=_CONNECT_ARGS,
            configure=_configure,
            timeout=_POOL_TIMEOUT,
            # Give up on a connection slot after a few quick retries (1 s, 2 s) rather than
            # backing off for minutes: the next request then starts a fresh attempt at once,
            # so the store is back within about a second of the database.
            reconnect_timeout=_RECONNECT_TIMEOUT,
            reconnect_failed=_reconnect_failed,
            name=name,
            open=False,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # What is queued is written before the writers stop.
        for batcher in (self._appends, self._runs, self._finishes):
            await batcher.close()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for task in list(self._checking):
            task.cancel()
        for pool in (self.pool, self.ingest_pool):
            if pool is not None:
                await pool.close()

    # ------------------------------------------------------------------ connections

    @contextlib.asynccontextmanager
    async def _conn(
        self, pool: AsyncConnectionPool | None = None
    ) -> AsyncIterator[AsyncConnection[Any]]:
        pool = pool or self.pool
        if pool is None:  # never opened; a closed pool raises PoolClosed below
            raise StoreUnavailable("store is closed")
        try:
            async with pool.connection() as conn:
                yield conn
        except _ROLLBACK:
            raise  # deadlock / serialization failure: the caller retries
        except _UNAVAILABLE as exc:
            self._suspect(pool)
            raise StoreUnavailable(f"postgresql: {exc}") from exc

    async def _run(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``fn`` in one transaction, retried when running it again is safe.

        * PostgreSQL rolled it back to break a deadlock: the documented remedy is to retry.
        * The connection failed *before* COMMIT was sent (a pooled connection that died
          with a server restart): nothing was committed, so another connection may try.
          A failure during COMMIT is unknowable and is reported (StoreUnavailable).
        """
        for attempt in range(4):
            held = committing = False
            try:
                async with self._conn() as conn:
                    held = True
                    async with conn.transaction():
                        result = await fn(conn)
                        committing = True
                return result
            except _ROLLBACK as exc:
                if attempt == 3:
                    raise StoreUnavailable(f"postgresql: {exc}") from exc
                await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except StoreUnavailable as exc:
                if committing or not (held and _stale(exc)) or attempt == 3 or self._closed:
                    raise
        raise AssertionError("unreachable")

    async def _statement(
        self,
        fn: Callable[[AsyncConnection[Any]], Awaitable[T]],
        pool: AsyncConnectionPool | None = None,
    ) -> T:
        """``fn`` (autocommit statements), retried after a deadlock, and on another
        connection when the one it held died (say, pooled across a server restart).

        Only for work that may run twice: appends are idempotent (``insert_events``); a
        repeated claim, run record or finish at worst holds a lease until it expires, finds
        the step already succeeded, or finds the event already finished.
        """
        for attempt in range(4):
            try:
                async with self._conn(pool) as conn:
                    return await fn(conn)
            except _ROLLBACK as exc:
                if attempt == 3:
                    raise StoreUnavailable(f"postgresql: {exc}") from exc
                await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except StoreUnavailable as exc:
                if attempt >= 2 or not _stale(exc) or self._closed:
                    raise
        raise AssertionError("unreachable")

    async def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(sql, params)
            return await cur.fetchall()

    def _suspect(self, pool: AsyncConnectionPool) -> None:
        """A connection failed: test the idle ones now, so dead ones go before the next request."""
        if self._closed or any(not t.done() for t in self._checking):
            return
        task = asyncio.create_task(_check_pool(pool))
        self._checking.add(task)
        task.add_done_callback(self._checking.discard)

    # ------------------------------------------------------------------ group commit

    async def append(self, draft: EventDraft) -> AppendResult:
        result = await self._appends.submit(draft_params(draft, time.time()))
        if not result.duplicate:
            self._work.set()
        return result

    async def _append_batch(self, rows: list[dict[str, Any]]) -> list[AppendResult]:
        return await self._statement(
            lambda conn: insert_events(conn, self.q, rows), self.ingest_pool
        )

    async def _runs_batch(self, runs: list[ActionRun]) -> list[int | None]:
        return await self._statement(lambda conn: insert_runs(conn, self.q, runs))

    async def _finish_batch(self, items: list[Finish]) -> list[bool]:
        return await self._statement(lambda conn: finish_many(conn, self.q, items))

    # ------------------------------------------------------------------ wake-ups

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                conn = await AsyncConnection.connect(self.dsn, **_CONNECT_ARGS)
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
        async with self._conn() as conn:
            await conn.execute("SELECT 1")

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Event]:
        now = time.time()
        params = {"owner": owner, "expires": now + lease_seconds, "now": now, "limit": limit}

        async def op(conn: AsyncConnection[Any]) -> list[Event]:
            cur = await conn.cursor(row_factory=dict_row).execute(self.q["claim"], params)
            return sorted((event_from_row(r) for r in await cur.fetchall()), key=lambda e: e.seq)

        return await self._statement(op)

    async def renew(self, owner: str, event_ids: list[str], lease_seconds: float) -> set[str]:
        params = {"ids": event_ids, "owner": owner, "expires": time.time() + lease_seconds}
        return {r["id"] for r in await self._rows(self.q["renew"], params)}

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
        async with self._conn() as conn:
            cur = await conn.execute(self.q["retry_later"], params)
            return cur.rowcount == 1

    async def record_run(self, run: ActionRun) -> int | None:
        return await self._runs.submit(run)

    async def add_artifact(self, artifact: Artifact) -> int:
        params = artifact.as_dict()
        params.pop("id")
        rows = await self._rows(self.q["insert_artifact"], params)
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

        return await self._run(op)

    # ------------------------------------------------------------------ reads

    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._rows(self.q["get_event"], {"id": event_id})
        return event_from_row(rows[0]) if rows else None

    async def list_events(self, flt: EventFilter) -> list[Event]:
        sql, params = event_list_query(
            flt,
            lambda name: f"%({name})s",
            "(data::text ILIKE {text} OR type ILIKE {text} OR id = {raw})",
        )
        return [event_from_row(r) for r in await self._rows(sql, params)]

    async def list_runs(self, event_id: str) -> list[ActionRun]:
        return [
            run_from_row(r) for r in await self._rows(self.q["list_runs"], {"event_id": event_id})
        ]

    async def list_artifacts(self, event_id: str) -> list[Artifact]:
        rows = await self._rows(self.q["list_artifacts"], {"event_id": event_id})
        return [artifact_from_row(r) for r in rows]

    async def get_artifact(self, artifact_id: int) -> Artifact | None:
        rows = await self._rows(self.q["get_artifact"], {"id": artifact_id})
        return artifact_from_row(rows[0]) if rows else None

    async def queue_depth(self) -> int:
        rows = await self._rows(self.q["queue_depth"])
        return int(rows[0]["count"])

    async def status_counts(self) -> dict[str, int]:
        return {r["status"]: int(r["n"]) for r in await self._rows(self.q["status_counts"])}

    async def activity(self, since: float) -> list[ActivityRow]:
        params = {"since_id": id_floor(since), "since": since}
        return [
            ActivityRow(r["source"], r["status"], int(r["minute"]), int(r["n"]), r["last_seen"])
            for r in await self._rows(self.q["activity"], params)
        ]

    async def kv_get(self, namespace: str, key: str) -> Any | None:
        params = {"namespace": namespace, "key": key, "now": time.time()}
        rows = await self._rows(self.q["kv_get"], params)
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
        async with self._conn() as conn:
            await conn.execute(self.q["kv_set"], params)

    # ------------------------------------------------------------------ retention

    async def purge(
        self, before: float | None = None, keep: int | None = None, chunk: int = 500
    ) -> PurgeResult:
        q = self.q
        max_seq = 0
        if keep is not None:
            rows = await self._rows(q["purge_cutoff_seq"], {"keep": keep})
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
            n, found = await self._run(one_chunk)
            total += n
            paths += found
            if n < chunk:
                break
            await asyncio.sleep(0)
        async with self._conn() as conn:
            cur = await conn.execute(q["purge_kv"], {"now": time.time()})
            kv = max(cur.rowcount, 0)
        return PurgeResult(events=total, artifact_paths=tuple(paths), kv=kv)


def _stale(exc: StoreUnavailable) -> bool:
    """Did a connection we held fail (not: no connection to be had, or the pool closed)?"""
    cause = exc.__cause__
    return isinstance(cause, psycopg.OperationalError) and not isinstance(
        cause, PoolTimeout | PoolClosed
    )


async def _check_pool(pool: AsyncConnectionPool) -> None:
    with contextlib.suppress(Exception):
        await pool.check()


async def _reconnect_failed(pool: AsyncConnectionPool) -> None:
    log.warning("store.reconnect_failed", pool=pool.name, retry="on the next request")


async def _configure(conn: AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("json", _RawJson)
    conn.adapters.register_loader("jsonb", _RawJson)
