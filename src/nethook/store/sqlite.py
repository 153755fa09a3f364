"""SQLite store: WAL, ``synchronous=FULL``, one writer thread doing group commit.

Every write (append, claim, run records...) is a small function handed to the single
writer thread (:mod:`.sqlite_writer`), which runs whatever is waiting in one transaction
and commits once: N concurrent requests share one fsync. Reads use separate connections in
a small thread pool; WAL lets them run beside the writer. Schema versions are in
:mod:`.sqlite_schema`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..events import (
    ActionRun,
    AppendResult,
    Artifact,
    Event,
    EventDraft,
    EventStatus,
    RunStatus,
    id_floor,
    new_id,
)
from ..exceptions import StoreUnavailable
from .base import (
    ActivityRow,
    EventFilter,
    PurgeResult,
    Store,
    event_list_query,
    load_queries,
)
from .rows import (
    _dumps,
    activity_from_rows,
    artifact_from_row,
    draft_params,
    event_from_row,
    run_from_row,
    run_params,
)
from .sqlite_schema import migrate
from .sqlite_writer import Op, Writer

T = TypeVar("T")


class SQLiteStore(Store):
    """The embedded default store: one file, zero set-up."""

    def __init__(self, path: str | Path, commit_delay_ms: float = 0.0) -> None:
        self.path = Path(path)
        self.commit_delay = commit_delay_ms / 1000.0
        self.q = load_queries("sqlite")
        self._writer = Writer(self._connect, self.commit_delay)
        # The writer's own method, not a wrapper: every write (the ingest hot path) costs
        # no extra call or await for going through another module.
        self._write: Callable[[Op], Awaitable[Any]] = self._writer.write
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nethook-sqlite-r")
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = asyncio.Event()
        self._closed = False

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsync'd at every commit, so a 2xx survives a power cut.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            migrate(conn)
        finally:
            conn.close()
        self._writer.start(self._loop)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        self._readers.shutdown(wait=False)

    # ------------------------------------------------------------------ reads

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._loop is not None

        def call() -> T:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await self._loop.run_in_executor(self._readers, call)

    # ------------------------------------------------------------------ interface

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def append(self, draft: EventDraft) -> AppendResult:
        params = draft_params(draft, time.time())
        ins, find = self.q["insert_event"], self.q["find_delivery"]

        def op(conn: sqlite3.Connection) -> AppendResult:
            cur = conn.execute(ins, params)
            if cur.rowcount == 1:
                return AppendResult(params["id"])
            row = conn.execute(
                find, {"source": params["source"], "delivery_id": params["delivery_id"]}
            ).fetchone()
            if row is None:  # the conflict was not on the delivery id: retry with a new id
                params["id"] = new_id()
                conn.execute(ins, params)
                return AppendResult(params["id"])
            return AppendResult(row["id"], duplicate=True, status=EventStatus(row["status"]))

        result: AppendResult = await self._write(op)
        if not result.duplicate:
            self._work.set()
        return result

    async def append_many(self, drafts: list[EventDraft]) -> list[AppendResult]:
        return list(await asyncio.gather(*(self.append(d) for d in drafts)))

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    def notify_work(self) -> None:
        self._work.set()

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Event]:
        expired_sql, queued_sql = self.q["claim_expired"], self.q["claim_queued"]

        def op(conn: sqlite3.Connection) -> list[Event]:
            now = time.time()
            params = {"owner": owner, "expires": now + lease_seconds, "now": now, "limit": limit}
            rows = conn.execute(expired_sql, params).fetchall()
            if len(rows) < limit:
                params["limit"] = limit - len(rows)
                rows += conn.execute(queued_sql, params).fetchall()
            return sorted((event_from_row(r) for r in rows), key=lambda e: e.seq)

        result: list[Event] = await self._write(op)
        return result

    async def renew(self, owner: str, event_ids: list[str], lease_seconds: float) -> set[str]:
        sql = self.q["renew"]

        def op(conn: sqlite3.Connection) -> set[str]:
            expires = time.time() + lease_seconds
            kept = set()
            for eid in event_ids:
                if conn.execute(sql, {"id": eid, "owner": owner, "expires": expires}).rowcount:
                    kept.add(eid)
            return kept

        result: set[str] = await self._write(op)
        return result

    async def finish(
        self, event_id: str, owner: str, status: EventStatus, error: str | None = None
    ) -> bool:
        sql = self.q["finish"]
        params = {"id": event_id, "owner": owner, "status": str(status), "error": error}

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, {**params, "now": time.time()}).rowcount == 1

        result: bool = await self._write(op)
        return result

    async def finish_with_run(
        self, event_id: str, owner: str, status: EventStatus, run: ActionRun
    ) -> bool:
        insert, finish = self.q["insert_run"], self.q["finish"]
        run_row = run_params(run)
        params = {"id": event_id, "owner": owner, "status": str(status), "error": None}

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(insert, run_row)
            return conn.execute(finish, {**params, "now": time.time()}).rowcount == 1

        result: bool = await self._write(op)
        return result

    async def retry_later(
        self, event_id: str, owner: str, available_at: float, error: str | None
    ) -> bool:
        sql = self.q["retry_later"]
        params = {"id": event_id, "owner": owner, "available_at": available_at, "error": error}
        result: bool = await self._write(lambda c: c.execute(sql, params).rowcount == 1)
        return result

    async def record_run(self, run: ActionRun) -> int | None:
        sql = self.q["insert_run"]
        params = run_params(run)

        def op(conn: sqlite3.Connection) -> int | None:
            cur = conn.execute(sql, params)
            return cur.lastrowid if cur.rowcount == 1 else None

        result: int | None = await self._write(op)
        return result

    async def add_artifact(self, artifact: Artifact) -> int:
        sql = self.q["insert_artifact"]
        params = artifact.as_dict()
        params.pop("id")
        result: int = await self._write(lambda c: c.execute(sql, params).lastrowid)
        return result

    async def gate(
        self,
        event_id: str,
        step: str,
        rule: str,
        key: str,
        decide: Callable[[Any | None], tuple[dict[str, Any], Any | None]],
    ) -> dict[str, Any]:
        q = self.q

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute(q["gate_recorded"], {"event_id": event_id, "step": step}).fetchone()
            if row is not None:
                recorded: dict[str, Any] = orjson.loads(row["output"])
                return recorded
            now = time.time()
            ns = {"namespace": "throttle", "key": key, "now": now}
            current = conn.execute(q["kv_get"], ns).fetchone()
            decision, state = decide(orjson.loads(current[0]) if current else None)
            if state is None:
                conn.execute(q["kv_delete"], ns)
            else:
                conn.execute(q["kv_set"], {**ns, "value": _dumps(state), "expires_at": None})
            verdict = decision.get("verdict")
            if verdict in ("run", "suppress"):
                status = RunStatus.SUCCEEDED if verdict == "run" else RunStatus.SUPPRESSED
                conn.execute(
                    q["insert_run"],
                    {
                        "event_id": event_id,
                        "step": step,
                        "rule": rule,
                        "action": "throttle",
                        "attempt": 1,
                        "status": str(status),
                        "started_at": now,
                        "finished_at": now,
                        "output": _dumps(decision),
                        "error": None,
                        "transient": 0,
                    },
                )
            return decision

        result: dict[str, Any] = await self._write(op)
        return result

    async def get_event(self, event_id: str) -> Event | None:
        sql = self.q["get_event"]
        row = await self._read(lambda c: c.execute(sql, {"id": event_id}).fetchone())
        return event_from_row(row) if row else None

    async def list_events(self, flt: EventFilter) -> list[Event]:
        sql, params = event_list_query(
            flt,
            lambda name: f":{name}",
            "(CAST(data AS TEXT) LIKE {text} OR type LIKE {text} OR id = {raw})",
        )
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [event_from_row(r) for r in rows]

    async def list_runs(self, event_id: str) -> list[ActionRun]:
        sql = self.q["list_runs"]
        rows = await self._read(lambda c: c.execute(sql, {"event_id": event_id}).fetchall())
        return [run_from_row(r) for r in rows]

    async def list_artifacts(self, event_id: str) -> list[Artifact]:
        sql = self.q["list_artifacts"]
        rows = await self._read(lambda c: c.execute(sql, {"event_id": event_id}).fetchall())
        return [artifact_from_row(r) for r in rows]

    async def get_artifact(self, artifact_id: int) -> Artifact | None:
        sql = self.q["get_artifact"]
        row = await self._read(lambda c: c.execute(sql, {"id": artifact_id}).fetchone())
        return artifact_from_row(row) if row else None

    async def queue_depth(self) -> int:
        sql = self.q["queue_depth"]
        row = await self._read(lambda c: c.execute(sql).fetchone())
        return int(row[0])

    async def status_counts(self) -> dict[str, int]:
        sql = self.q["status_counts"]
        rows = await self._read(lambda c: c.execute(sql).fetchall())
        return {r["status"]: r["n"] for r in rows}

    async def activity(self, since: float) -> list[ActivityRow]:
        sql = self.q["activity"]
        params = {"since_id": id_floor(since), "since": since}
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return activity_from_rows(rows)

    async def kv_get(self, namespace: str, key: str) -> Any | None:
        sql = self.q["kv_get"]
        params = {"namespace": namespace, "key": key, "now": time.time()}
        row = await self._read(lambda c: c.execute(sql, params).fetchone())
        return orjson.loads(row[0]) if row else None

    async def kv_set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        sql = self.q["kv_set"]
        now = time.time()
        params = {
            "namespace": namespace,
            "key": key,
            "value": _dumps(value),
            "now": now,
            "expires_at": now + ttl if ttl else None,
        }
        await self._write(lambda c: c.execute(sql, params))

    async def purge(
        self, before: float | None = None, keep: int | None = None, chunk: int = 500
    ) -> PurgeResult:
        q = self.q
        max_seq = 0
        if keep is not None:
            row = await self._read(
                lambda c: c.execute(q["purge_cutoff_seq"], {"keep": keep}).fetchone()
            )
            max_seq = int(row[0]) if row else 0
        params = {
            "before_id": new_id(before)[:10] if before is not None else "",
            "max_seq": max_seq,
            "limit": chunk,
        }
        total, paths = 0, []
        # One chunk per write: the writer interleaves ingest batches between chunks.
        while True:
            n, found = await self._write(_purge_chunk(q, params))
            total += n
            paths += found
            if n < chunk:
                break
        now = time.time()
        kv = await self._write(lambda c: c.execute(q["purge_kv"], {"now": now}).rowcount)
        return PurgeResult(events=total, artifact_paths=tuple(paths), kv=kv)


def _purge_chunk(
    q: dict[str, str], params: dict[str, Any]
) -> Callable[[sqlite3.Connection], tuple[int, list[str]]]:
    def op(conn: sqlite3.Connection) -> tuple[int, list[str]]:
        picked = conn.execute(q["purge_pick"], params).fetchall()
        if not picked:
            return 0, []
        ids = _dumps([r["id"] for r in picked]).decode()
        paths = [r[0] for r in conn.execute(q["purge_artifact_paths"], {"ids": ids})]
        conn.execute(q["purge_delete"], {"seqs": _dumps([r["seq"] for r in picked]).decode()})
        return len(picked), paths

    return op
