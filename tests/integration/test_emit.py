"""emit: rule chaining through the real dispatcher and SQLite store, and its loop guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from nethook import config as config_mod
from nethook.actions.base import ActionContext
from nethook.actions.emit import EmitAction, EmitOptions
from nethook.engine.dispatcher import Dispatcher
from nethook.events import Event, EventDraft, EventStatus
from nethook.runtime import Runtime
from nethook.store.base import EventFilter
from nethook.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def make(tmp_path: Path, rules: list[dict[str, Any]], max_depth: int = 5) -> config_mod.Config:
    return config_mod.from_dict(
        {
            "store": {"url": f"sqlite:///{tmp_path / 's.db'}", "data_dir": str(tmp_path / "d")},
            "sources": {"devices": {"auth": {"type": "none"}}},
            "dispatcher": {"max_emit_depth": max_depth},
            "rules": rules,
        }
    )


async def drain(store: SQLiteStore, disp: Dispatcher) -> int:
    """Process until the queue is empty (emitted events are claimed in later rounds)."""
    n = 0
    while events := await store.claim(disp.owner, 100, 30):
        for ev in events:
            await disp.process(ev)
            n += 1
    return n


async def all_events(store: SQLiteStore) -> list[Event]:
    return sorted(await store.list_events(EventFilter(limit=1000)), key=lambda e: e.seq)


async def with_pipeline(tmp_path: Path, cfg: config_mod.Config) -> tuple[SQLiteStore, Dispatcher]:
    rt = Runtime.build(cfg)
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    return store, Dispatcher(store, cfg, lambda: rt.rulebook, httpx.AsyncClient())


async def test_emit_chains_an_event_that_other_rules_see(tmp_path: Path) -> None:
    cfg = make(
        tmp_path,
        [
            {
                "name": "classify",
                "on": {"type": "syslog"},
                "when": "event.data.mnemonic == 'LINK-3-UPDOWN'",
                "do": [
                    {
                        "emit": {
                            "type": "interface_down",
                            "data": {
                                "device": "{{ event.data.device }}",
                                "interface": "{{ event.data.interface }}",
                            },
                        }
                    }
                ],
            },
            {
                "name": "react",
                "on": {"type": "interface_down"},
                "do": [{"log": {"message": "{{ event.data.device }} {{ event.data.interface }}"}}],
            },
        ],
    )
    store, disp = await with_pipeline(tmp_path, cfg)
    try:
        first = await store.append(
            EventDraft(
                source="devices",
                type="syslog",
                data={"mnemonic": "LINK-3-UPDOWN", "device": "r1", "interface": "Gi2"},
            )
        )
        assert await drain(store, disp) == 2
        parent, child = await all_events(store)
        assert parent.id == first.id and parent.status is EventStatus.SUCCEEDED
        [emit_run] = await store.list_runs(parent.id)
        assert emit_run.output["id"] == child.id  # the action's output is the new id
        assert child.type == "interface_down"
        assert child.source == "devices"  # default: the emitting event's source
        assert child.data == {"device": "r1", "interface": "Gi2"}
        assert child.depth == 1
        assert child.meta == {"emitted_by": parent.id, "rule": "classify"}
        assert child.status is EventStatus.SUCCEEDED
        [log_run] = await store.list_runs(child.id)
        assert log_run.output["message"] == "r1 Gi2"
    finally:
        await store.close()
        await disp.http.aclose()


async def test_a_loop_stops_at_the_depth_limit_with_a_clear_error(tmp_path: Path) -> None:
    # A rule that emits the very type it reacts to: an infinite loop without the guard.
    cfg = make(
        tmp_path,
        [
            {
                "name": "echo",
                "on": {"type": "ping"},
                "do": [{"emit": {"type": "ping", "data": {"n": "{{ event.data.n + 1 }}"}}}],
            }
        ],
        max_depth=3,
    )
    store, disp = await with_pipeline(tmp_path, cfg)
    try:
        await store.append(EventDraft(source="devices", type="ping", data={"n": 0}))
        assert await drain(store, disp) == 4  # depths 0, 1, 2, 3
        events = await all_events(store)
        assert [e.depth for e in events] == [0, 1, 2, 3]
        assert [e.data["n"] for e in events] == [0, 1, 2, 3]
        assert [e.status for e in events[:3]] == [EventStatus.SUCCEEDED] * 3
        last = events[-1]
        assert last.status is EventStatus.DEAD
        assert last.attempts == 1  # permanent: not retried
        assert "chain depth 4 would exceed dispatcher.max_emit_depth=3" in (last.error or "")
        assert last.id in (last.error or "")
    finally:
        await store.close()
        await disp.http.aclose()


async def test_emit_is_idempotent_per_event_and_step(tmp_path: Path) -> None:
    """A step run twice (crash after the append, before the result was recorded) must not
    emit a second event: the delivery id ties the emitted event to (event, step)."""
    cfg = make(tmp_path, [])
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        parent_id = (await store.append(EventDraft(source="devices", type="x", data={}))).id
        parent = await store.get_event(parent_id)
        assert parent is not None
        async with httpx.AsyncClient() as http:
            ctx = ActionContext(
                event=parent,
                rule="r",
                step="r#0",
                attempt=1,
                config=cfg,
                store=store,
                http=http,
                log=structlog.get_logger("test"),
            )
            opts = EmitOptions(type="y", data={"a": 1}, source="other")
            first = await EmitAction().run(ctx, opts)
            again = await EmitAction().run(ctx, opts)
        assert first.output["id"] == again.output["id"]
        assert (first.output["duplicate"], again.output["duplicate"]) == (False, True)
        assert first.output["source"] == "other"
        assert len(await all_events(store)) == 2
    finally:
        await store.close()
