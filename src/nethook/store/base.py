"""The Store interface: the durable event log that is also the work queue.

Every implementation keeps the same promises:

* ``append`` returns only once the event is durable (fsync'd); concurrent appends share
  one commit (group commit). A second event with the same ``(source, delivery_id)`` is not
  stored: the first one's id comes back with ``duplicate=True``.
* ``claim`` hands out queued events (and running events whose lease expired) to one owner
  with a lease; ``finish``/``retry_later`` only act while that owner still holds the lease.
* ``record_run`` stores each attempt; a step is recorded as *succeeded* at most once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..events import ActionRun, AppendResult, Artifact, Event, EventDraft, EventStatus


@dataclass(frozen=True, slots=True)
class EventFilter:
    status: str | None = None
    type: str | None = None
    source: str | None = None
    text: str | None = None
    before_seq: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """Events received in one minute (``epoch seconds // 60``) from one source in one status."""

    source: str
    status: str
    minute: int
    count: int
    last_seen: float


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a retention purge removed: events (with their runs), expired kv rows, and the
    artifact files whose rows went with the events (the caller deletes the files)."""

    events: int = 0
    artifact_paths: tuple[str, ...] = ()
    kv: int = 0


class Store(ABC):
    """Durable events, action runs, artifacts and small key/value state."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and start background writers."""

    @abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release connections."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~nethook.exceptions.StoreUnavailable` when the store cannot serve."""

    @abstractmethod
    async def append(self, draft: EventDraft) -> AppendResult:
        """Store one event durably (or find its duplicate)."""

    async def append_many(self, drafts: list[EventDraft]) -> list[AppendResult]:
        """Store several events; the default appends them one by one (still group-committed)."""
        import asyncio

        return list(await asyncio.gather(*(self.append(d) for d in drafts)))

    @abstractmethod
    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be ready, or after ``timeout`` seconds."""

    @abstractmethod
    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Event]:
        """Lease up to ``limit`` ready events to ``owner``."""

    @abstractmethod
    async def renew(self, owner: str, event_ids: list[str], lease_seconds: float) -> set[str]:
        """Extend leases; returns the ids ``owner`` still holds."""

    @abstractmethod
    async def finish(
        self, event_id: str, owner: str, status: EventStatus, error: str | None = None
    ) -> bool:
        """Mark a leased event done (succeeded, dead, suppressed). False if the lease was lost."""

    async def finish_with_run(
        self, event_id: str, owner: str, status: EventStatus, run: ActionRun
    ) -> bool:
        """Record the last step's run and finish the event; stores may do both at once."""
        await self.record_run(run)
        return await self.finish(event_id, owner, status)

    @abstractmethod
    async def retry_later(
        self, event_id: str, owner: str, available_at: float, error: str | None
    ) -> bool:
        """Put a leased event back in the queue, ready at ``available_at``."""

    @abstractmethod
    async def record_run(self, run: ActionRun) -> int | None:
        """Store one attempt; returns its id, or None if the step had already succeeded."""

    @abstractmethod
    async def add_artifact(self, artifact: Artifact) -> int:
        """Record an artifact file written under the data directory."""

    @abstractmethod
    async def gate(
        self,
        event_id: str,
        step: str,
        rule: str,
        key: str,
        decide: Callable[[Any | None], tuple[dict[str, Any], Any | None]],
    ) -> dict[str, Any]:
        """Storm control, atomically: the decision already recorded for ``(event_id, step)``,
        or else read the group state under ``key``, call ``decide(state)`` -> (decision,
        new state or None to delete), store both, and record a "run" or "suppress"
        decision as the step's run. One transaction (or row lock): concurrent events of a
        group, restarts and other nodes all see one history.
        """

    async def kv_update(self, key: str, fn: Callable[[Any | None], tuple[Any, Any | None]]) -> Any:
        """Read-modify-write one shared value atomically across nodes: ``fn(state)`` returns
        (result, new state or None to delete). Built on ``gate``'s locking; nothing is
        recorded as a run."""

        def decide(state: Any | None) -> tuple[dict[str, Any], Any | None]:
            result, new_state = fn(state)
            return {"verdict": "none", "result": result}, new_state

        decision = await self.gate("", f"kv:{key}", "", key, decide)
        return decision.get("result")

    @abstractmethod
    async def get_event(self, event_id: str) -> Event | None: ...

    @abstractmethod
    async def list_events(self, flt: EventFilter) -> list[Event]:
        """Newest first, ``flt.before_seq`` as the pagination cursor."""

    @abstractmethod
    async def list_runs(self, event_id: str) -> list[ActionRun]: ...

    @abstractmethod
    async def list_artifacts(self, event_id: str) -> list[Artifact]: ...

    @abstractmethod
    async def get_artifact(self, artifact_id: int) -> Artifact | None: ...

    @abstractmethod
    async def queue_depth(self) -> int:
        """Events queued or running."""

    @abstractmethod
    async def status_counts(self) -> dict[str, int]: ...

    @abstractmethod
    async def activity(self, since: float) -> list[ActivityRow]:
        """Events received at or after ``since``, counted by source, status and minute.

        Exact, and cheap on a long history: the range is on the time-ordered ids.
        """

    @abstractmethod
    async def kv_get(self, namespace: str, key: str) -> Any | None: ...

    @abstractmethod
    async def kv_set(
        self, namespace: str, key: str, value: Any, ttl: float | None = None
    ) -> None: ...

    async def purge(
        self, before: float | None = None, keep: int | None = None, chunk: int = 500
    ) -> PurgeResult:
        """Delete finished events (succeeded, dead, suppressed) received before ``before``
        (epoch seconds) or older than the newest ``keep`` events, ``chunk`` at a time in
        short transactions so that ingest never waits long behind a purge; and expired kv
        rows. Queued and running events are work and are never purged."""
        raise NotImplementedError(f"{type(self).__name__} does not support purging")

    async def replay(self, event_id: str) -> AppendResult | None:
        """Queue a fresh copy of an event (same source, type, data); None if it does not exist.

        A copy, not a reset: the original's history stays as it was, and the copy runs every
        action again.
        """
        original = await self.get_event(event_id)
        if original is None:
            return None
        meta = dict(original.meta)
        meta["replay_of"] = original.id
        return await self.append(
            EventDraft(
                source=original.source,
                type=original.type,
                data=original.data,
                timestamp=original.timestamp,
                meta=meta,
                depth=original.depth,
                replay_of=original.id,
            )
        )


def event_list_query(
    flt: EventFilter, param: Callable[[str], str], text_match: str
) -> tuple[str, dict[str, Any]]:
    """The history query for both dialects: ``param("x")`` spells a placeholder (``:x`` or
    ``%(x)s``); ``text_match`` is the dialect's free-text condition over ``{text}`` and
    ``{raw}`` placeholders."""
    where, params = [], {}
    for col in ("status", "type", "source"):
        value = getattr(flt, col)
        if value:
            where.append(f"{col} = {param(col)}")
            params[col] = value
    if flt.text:
        where.append(text_match.format(text=param("text"), raw=param("raw")))
        params["text"] = f"%{flt.text}%"
        params["raw"] = flt.text
    if flt.before_seq is not None:
        where.append(f"seq < {param('before')}")
        params["before"] = flt.before_seq
    sql = "SELECT * FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY seq DESC LIMIT {param('limit')}"
    params["limit"] = max(1, min(flt.limit, 1000))
    return sql, params


# --------------------------------------------------------------------------- SQL files

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)


def load_queries(dialect: str) -> dict[str, str]:
    """Read ``store/sql/<dialect>/queries.sql`` into ``{name: sql}``."""
    text = resources.files(__package__).joinpath("sql", dialect, "queries.sql").read_text("utf-8")
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def load_migrations(dialect: str) -> list[tuple[int, str, str]]:
    """Every ``NNNN_name.sql`` of a dialect, in version order: ``(version, name, sql)``."""
    folder = resources.files(__package__).joinpath("sql", dialect)
    out = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(out)


def load_schema(dialect: str) -> str:
    """``store/sql/<dialect>/schema.sql``: the current schema, for creating a new database."""
    return resources.files(__package__).joinpath("sql", dialect, "schema.sql").read_text("utf-8")
