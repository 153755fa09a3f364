"""Group commit for the SQLite store: one writer thread, one connection, one fsync per batch.

Every write (append, claim, run records...) is a small function queued to the thread. The
thread takes everything waiting, runs it in one transaction and commits once: N concurrent
requests share one fsync. If any function fails, the batch is rolled back and replayed one
function per transaction, so one bad write fails only its own caller. The results go back
to the event loop in one wake-up per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from ..exceptions import StoreUnavailable

#: A write: runs on the writer's connection, inside the batch's transaction.
Op = Callable[[sqlite3.Connection], Any]
_Result = tuple[asyncio.Future[Any], Any, BaseException | None]
_STOP = object()
_MAX_BATCH = 512


class Writer:
    """The SQLite store's only writer. ``await write(op)`` returns what ``op`` returned."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], commit_delay: float) -> None:
        #: Opens a connection with the store's pragmas (WAL, ``synchronous=FULL``...).
        self._connect = connect
        #: Seconds to wait after the first write of a batch, for more to gather.
        self.commit_delay = commit_delay
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread; ``loop`` is where callers await and where results are settled."""
        self._loop = loop
        self._thread = threading.Thread(
            target=self._write_loop, name="nethook-sqlite-w", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Refuse new writes; what is already queued is written before the thread stops."""
        self._closed = True
        if self._thread is not None:
            self._ops.put(_STOP)
            await asyncio.to_thread(self._thread.join, 10)

    async def write(self, op: Op) -> Any:
        # The ingest hot path: SQLiteStore binds this method as its ``_write``, so an append
        # costs one call, one future and one queue put here, as before the split.
        if self._closed or self._thread is None or not self._thread.is_alive():
            raise StoreUnavailable("store is closed")
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._ops.put((op, fut))
        return await fut

    # ------------------------------------------------------------------ the thread

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._ops.get()
                if first is _STOP:
                    return
                batch = [first]
                if self.commit_delay:
                    time.sleep(self.commit_delay)
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        # Hot path: the whole batch in one transaction, no per-op savepoints. If any op
        # fails, the batch is rolled back and replayed op by op, so one bad write cannot
        # fail its neighbours.
        results: list[_Result]
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [(fut, op(conn), None) for op, fut in batch]
            conn.execute("COMMIT")
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            results = [self._run_alone(conn, op, fut) for op, fut in batch]
        assert self._loop is not None
        # One wake-up of the event loop per batch, not per request.
        self._loop.call_soon_threadsafe(_settle, results)

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, op: Op, fut: asyncio.Future[Any]) -> _Result:
        try:
            conn.execute("BEGIN IMMEDIATE")
            value = op(conn)
            conn.execute("COMMIT")
            return fut, value, None
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return fut, None, StoreUnavailable(f"sqlite: {exc}")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return fut, None, exc


def _settle(results: list[_Result]) -> None:
    # On the event loop: a caller that gave up (cancelled) has no one to tell.
    for fut, value, exc in results:
        if fut.cancelled():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
