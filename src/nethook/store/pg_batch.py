"""Group commit for the PostgreSQL store: many callers, one statement, one commit.

Appends, action-run records and finishes each have a :class:`Batcher`: a caller queues its
item and awaits a future; a writer task takes everything waiting and stores it with one
set-based statement (``unnest`` of parallel arrays) in autocommit, i.e. one round trip and
one WAL flush for the whole batch. While a batch is in flight the next one gathers, so the
batch size follows the load by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import structlog
from psycopg import AsyncConnection

from ..events import ActionRun, AppendResult, EventStatus, new_id
from ..exceptions import StoreUnavailable

log = structlog.get_logger("nethook.store.postgres")

I = TypeVar("I")  # noqa: E741 - item
R = TypeVar("R")  # result
_STOP = object()


@dataclass(slots=True)
class _Pending(Generic[I, R]):
    item: I
    future: asyncio.Future[R]


class Batcher(Generic[I, R]):
    """Queue items; ``flush(items) -> results`` (same order) stores each batch at once.

    A batch that fails with anything but :class:`StoreUnavailable` is retried item by item,
    so one bad item (a NUL character in a text field, say) fails only its own caller.
    """

    def __init__(
        self,
        name: str,
        flush: Callable[[list[I]], Awaitable[list[R]]],
        writers: int = 1,
        max_batch: int = 1000,
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.flush = flush
        self.writers = writers
        self.max_batch = max_batch
        self.delay = delay
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"nethook-pg-{self.name}-{i}")
            for i in range(self.writers)
        ]

    async def submit(self, item: I) -> R:
        if self._closed or not self._tasks:
            raise StoreUnavailable("store is closed")
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, fut))
        return await fut

    async def close(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop the writers."""
        self._closed = True
        for _ in self._tasks:
            self._queue.put_nowait(_STOP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            batch: list[_Pending[I, R]] = [first]
            stop = False
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            await self._write(batch)
            if stop:
                return

    async def _write(self, batch: list[_Pending[I, R]]) -> None:
        try:
            results = await self.flush([p.item for p in batch])
        except StoreUnavailable as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(StoreUnavailable(str(exc)))
            return
        except Exception as exc:
            if len(batch) > 1:
                for p in batch:
                    await self._write([p])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)


# --------------------------------------------------------------------------- appends


def _text(value: bytes) -> str:
    return value.decode()


def clean(value: str | None) -> str | None:
    """PostgreSQL ``text`` cannot hold NUL characters (SQLite can): U+FFFD stands in, so a
    hostile event type or an error message with one is stored instead of failing."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def event_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows (``draft_params``) -> the parallel arrays ``insert_events`` unnests."""
    return {
        "ids": [r["id"] for r in rows],
        "sources": [r["source"] for r in rows],
        "types": [r["type"] for r in rows],
        "timestamps": [r["timestamp"] for r in rows],
        "received": [r["received_at"] for r in rows],
        "deliveries": [r["delivery_id"] for r in rows],
        "datas": [_text(r["data"]) for r in rows],
        "metas": [_text(r["meta"]) for r in rows],
        "depths": [r["depth"] for r in rows],
        "replays": [r["replay_of"] for r in rows],
    }


async def insert_events(
    conn: AsyncConnection[Any], q: dict[str, str], rows: list[dict[str, Any]]
) -> list[AppendResult]:
    """Store a batch (autocommit: one statement, one commit); duplicates resolve to the
    stored event's id.

    Idempotent, so the caller may run it again after a connection died mid-commit: a row
    whose id is already stored with the same ``received_at`` was committed by the earlier
    try, and is answered as stored (ids carry 80 random bits: no other event has it).
    """
    for r in rows:
        for key in ("source", "type", "timestamp", "delivery_id"):
            r[key] = clean(r[key])
    results: dict[int, AppendResult] = {}
    # Rows with a delivery id in key order: two nodes inserting overlapping keys then take
    # the index entries in the same order and cannot deadlock.
    todo = sorted(
        range(len(rows)),
        key=lambda i: (
            rows[i]["delivery_id"] is None,
            rows[i]["source"],
            rows[i]["delivery_id"] or "",
        ),
    )
    for _ in range(3):
        cur = await conn.execute(q["insert_events"], event_columns([rows[i] for i in todo]))
        inserted = {r[0] for r in await cur.fetchall()}
        rest = [i for i in todo if rows[i]["id"] not in inserted]
        for i in todo:
            if rows[i]["id"] in inserted:
                results[i] = AppendResult(rows[i]["id"])
        if not rest:
            break
        cur = await conn.execute(q["find_ids"], {"ids": [rows[i]["id"] for i in rest]})
        stored = {eid: (at, st) for eid, at, st in await cur.fetchall()}
        keyed = [rows[i] for i in rest if rows[i]["delivery_id"] is not None]
        found: dict[tuple[str, str], tuple[str, str]] = {}
        if keyed:
            cur = await conn.execute(
                q["find_deliveries"],
                {
                    "sources": [r["source"] for r in keyed],
                    "deliveries": [r["delivery_id"] for r in keyed],
                },
            )
            found = {(s, d): (eid, st) for s, d, eid, st in await cur.fetchall()}
        retry = []
        for i in rest:
            r = rows[i]
            mine = stored.get(r["id"])
            if mine is not None and mine[0] == r["received_at"]:
                results[i] = AppendResult(r["id"], status=EventStatus(mine[1]))
            elif (hit := found.get((r["source"], r["delivery_id"]))) is not None:
                results[i] = AppendResult(hit[0], duplicate=True, status=EventStatus(hit[1]))
            else:  # the conflict was on the id itself (a ULID collision): new id, again
                r["id"] = new_id()
                retry.append(i)
        if not retry:
            break
        todo = retry
    if len(results) < len(rows):
        raise AssertionError("append: a row was neither inserted nor found")
    return [results[i] for i in range(len(rows))]


# --------------------------------------------------------------------------- runs


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return _text(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def run_columns(runs: list[ActionRun]) -> dict[str, list[Any]]:
    return {
        "event_ids": [r.event_id for r in runs],
        "steps": [r.step for r in runs],
        "rules": [r.rule for r in runs],
        "actions": [r.action for r in runs],
        "attempts": [r.attempt for r in runs],
        "statuses": [str(r.status) for r in runs],
        "started": [r.started_at for r in runs],
        "finished": [r.finished_at for r in runs],
        "outputs": [_json(r.output) for r in runs],
        "errors": [clean(r.error) for r in runs],
        "transients": [r.transient for r in runs],
    }


async def insert_runs(
    conn: AsyncConnection[Any], q: dict[str, str], runs: list[ActionRun]
) -> list[int | None]:
    """Record a batch of attempts; None for a success of a step that had already succeeded."""
    cur = await conn.execute(q["insert_runs"], run_columns(runs))
    ids: dict[tuple[str, str, int, str], list[int]] = {}
    for rid, event_id, step, attempt, status in await cur.fetchall():
        ids.setdefault((event_id, step, attempt, status), []).append(int(rid))
    out: list[int | None] = []
    for r in runs:
        got = ids.get((r.event_id, r.step, r.attempt, str(r.status)))
        out.append(got.pop(0) if got else None)
    return out


# --------------------------------------------------------------------------- finishes


@dataclass(frozen=True, slots=True)
class Finish:
    event_id: str
    owner: str
    status: str
    error: str | None
    at: float


async def finish_many(
    conn: AsyncConnection[Any], q: dict[str, str], items: list[Finish]
) -> list[bool]:
    """Finish leased events; False for those whose lease the caller no longer holds."""
    cur = await conn.execute(
        q["finish_many"],
        {
            "ids": [f.event_id for f in items],
            "owners": [f.owner for f in items],
            "statuses": [f.status for f in items],
            "errors": [clean(f.error) for f in items],
            "ats": [f.at for f in items],
        },
    )
    done = {(eid, owner) for eid, owner in await cur.fetchall()}
    return [(f.event_id, f.owner) in done for f in items]
