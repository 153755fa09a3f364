"""Rows <-> records for the SQL stores: JSON columns, enums, parameter dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from ..events import ActionRun, Artifact, Event, EventDraft, EventStatus, RunStatus, new_id
from .base import ActivityRow


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def event_from_row(row: Any) -> Event:
    r = dict(row)
    return Event(
        id=r["id"],
        source=r["source"],
        type=r["type"],
        timestamp=r["timestamp"],
        received_at=r["received_at"],
        data=orjson.loads(r["data"]),
        meta=orjson.loads(r["meta"]),
        status=EventStatus(r["status"]),
        delivery_id=r["delivery_id"],
        attempts=r["attempts"],
        available_at=r["available_at"],
        lease_owner=r["lease_owner"],
        lease_expires=r["lease_expires"],
        error=r["error"],
        depth=r["depth"],
        replay_of=r["replay_of"],
        finished_at=r["finished_at"],
        seq=r["seq"],
    )


def run_from_row(row: Any) -> ActionRun:
    r = dict(row)
    return ActionRun(
        id=r["id"],
        event_id=r["event_id"],
        step=r["step"],
        rule=r["rule"],
        action=r["action"],
        attempt=r["attempt"],
        status=RunStatus(r["status"]),
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        output=orjson.loads(r["output"]) if r["output"] is not None else None,
        error=r["error"],
        transient=bool(r["transient"]),
    )


def activity_from_rows(rows: list[Any]) -> list[ActivityRow]:
    """The ``activity`` query's rows (source, status, minute, n, last_seen) as records."""
    return [
        ActivityRow(r["source"], r["status"], int(r["minute"]), int(r["n"]), r["last_seen"])
        for r in rows
    ]


def artifact_from_row(row: Any) -> Artifact:
    return Artifact(**dict(row))


def run_params(run: ActionRun) -> dict[str, Any]:
    return {
        "event_id": run.event_id,
        "step": run.step,
        "rule": run.rule,
        "action": run.action,
        "attempt": run.attempt,
        "status": str(run.status),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "output": _dumps(run.output) if run.output is not None else None,
        "error": run.error,
        "transient": int(run.transient),
    }


def draft_params(draft: EventDraft, now: float) -> dict[str, Any]:
    ts = draft.timestamp or datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": new_id(now),
        "source": draft.source,
        "type": draft.type,
        "timestamp": ts,
        "received_at": now,
        "delivery_id": draft.delivery_id,
        "data": _dumps(draft.data),
        "meta": _dumps(draft.meta),
        "depth": draft.depth,
        "replay_of": draft.replay_of,
    }
