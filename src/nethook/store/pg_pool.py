"""PostgreSQL connections for the store: two pools, and when a failed statement runs again.

* **Two pools.** ``pool`` serves workers, reads and everything but appends; ``ingest_pool``
  belongs to the append writers, so ingest never queues behind dispatchers.
* **Failures.** A lost connection, an exhausted pool or a database that is down raises
  :class:`~nethook.exceptions.StoreUnavailable`; after such a failure the idle connections
  are tested at once, and the pools replace dead ones in the background, so service
  resumes by itself.
* **Retries.** A deadlock or serialisation failure is retried, and so is work that failed
  on a connection that died before COMMIT was sent (see :meth:`Pools.run` and
  :meth:`Pools.statement`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection, errors
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ..exceptions import StoreUnavailable

# The store's logger: pool trouble is store trouble to whoever reads the logs.
log = structlog.get_logger("nethook.store.postgres")

T = TypeVar("T")
# How long a request waits for a pooled connection before the store reports itself
# unavailable (a 503 the sender retries), rather than hanging while the database is down.
_POOL_TIMEOUT = 3.0
_RECONNECT_TIMEOUT = 4.0
CONNECT_ARGS: dict[str, Any] = {
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
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed)


class _RawJson(Loader):
    """Hand ``json`` columns over as bytes: orjson parses them, as for SQLite rows."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


class Pools:
    """The store's connection pools (``dsn`` is a libpq URL), and the retry rules."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        #: Workers, reads and everything but appends.
        self.pool: AsyncConnectionPool | None = None
        #: The append writers' own connections: ingest never queues behind dispatchers.
        self.ingest_pool: AsyncConnectionPool | None = None
        #: Set by the store as it starts closing: from then on, no retries and no checks.
        self.closed = False
        self._checking: set[asyncio.Task[None]] = set()

    async def open(self, size: int, ingest_size: int) -> None:
        """Open both pools and wait for their first connections (raises :data:`UNAVAILABLE`)."""
        try:
            self.pool = self._new_pool("nethook", min(2, size), size)
            self.ingest_pool = self._new_pool("nethook-ingest", ingest_size, ingest_size + 1)
            await self.pool.open(wait=True, timeout=15)
            await self.ingest_pool.open(wait=True, timeout=15)
        except UNAVAILABLE:
            await self._close_pools()
            raise

    def _new_pool(self, name: str, min_size: int, max_size: int) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs=CONNECT_ARGS,
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
        self.closed = True
        for task in list(self._checking):
            task.cancel()
        await self._close_pools()

    async def _close_pools(self) -> None:
        for pool in (self.pool, self.ingest_pool):
            if pool is not None:
                await pool.close()

    # ------------------------------------------------------------------ connections

    @contextlib.asynccontextmanager
    async def conn(
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
        except UNAVAILABLE as exc:
            self._suspect(pool)
            raise StoreUnavailable(f"postgresql: {exc}") from exc

    async def run(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``fn`` in one transaction, retried when running it again is safe.

        * PostgreSQL rolled it back to break a deadlock: the documented remedy is to retry.
        * The connection failed *before* COMMIT was sent (a pooled connection that died
          with a server restart): nothing was committed, so another connection may try.
          A failure during COMMIT is unknowable and is reported (StoreUnavailable).
        """
        for attempt in range(4):
            held = committing = False
            try:
                async with self.conn() as conn:
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
                if committing or not (held and _stale(exc)) or attempt == 3 or self.closed:
                    raise
        raise AssertionError("unreachable")

    async def statement(
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
                async with self.conn(pool) as conn:
                    return await fn(conn)
            except _ROLLBACK as exc:
                if attempt == 3:
                    raise StoreUnavailable(f"postgresql: {exc}") from exc
                await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except StoreUnavailable as exc:
                if attempt >= 2 or not _stale(exc) or self.closed:
                    raise
        raise AssertionError("unreachable")

    async def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self.conn() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(sql, params)
            return await cur.fetchall()

    def _suspect(self, pool: AsyncConnectionPool) -> None:
        """A connection failed: test the idle ones now, so dead ones go before the next request."""
        if self.closed or any(not t.done() for t in self._checking):
            return
        task = asyncio.create_task(_check_pool(pool))
        self._checking.add(task)
        task.add_done_callback(self._checking.discard)


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
