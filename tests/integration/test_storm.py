"""Storm control through the real dispatcher and SQLite store, with a controllable clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from nethook import config as config_mod
from nethook.engine.dispatcher import Dispatcher
from nethook.events import EventDraft, EventStatus, RunStatus
from nethook.runtime import Runtime
from nethook.store.base import EventFilter
from nethook.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_config(tmp_path: Path, rule: dict[str, Any]) -> config_mod.Config:
    return config_mod.from_dict(
        {
            "store": {"url": f"sqlite:///{tmp_path / 's.db'}", "data_dir": str(tmp_path / "d")},
            "sources": {"devices": {"auth": {"type": "none"}}},
            "rules": [rule],
        }
    )


async def drain(store: SQLiteStore, disp: Dispatcher) -> list[Any]:
    outcomes = []
    while True:
        events = await store.claim(disp.owner, 100, 30)
        if not events:
            return outcomes
        for ev in events:
            outcomes.append(await disp.process(ev))


async def setup(
    tmp_path: Path, rule: dict[str, Any], clock: Clock, store: SQLiteStore | None = None
) -> tuple[SQLiteStore, Dispatcher, httpx.AsyncClient]:
    cfg = make_config(tmp_path, rule)
    rt = Runtime.build(cfg)
    store = store or SQLiteStore(tmp_path / "s.db")
    await store.open()
    client = httpx.AsyncClient()
    return store, Dispatcher(store, cfg, lambda: rt.rulebook, client, clock=clock), client


def link_event(interface: str, state: str = "down") -> EventDraft:
    return EventDraft(
        source="devices",
        type="syslog",
        data={"mnemonic": "LINK-3-UPDOWN", "interface": interface, "state": state, "device": "r1"},
    )


async def action_runs(store: SQLiteStore) -> list[Any]:
    runs = []
    for ev in await store.list_events(EventFilter(limit=1000)):
        runs += [r for r in await store.list_runs(ev.id) if r.action == "log"]
    return runs


STORM_RULE = {
    "name": "interface down",
    "on": {"type": "syslog"},
    "when": "event.data.mnemonic == 'LINK-3-UPDOWN' and event.data.state == 'down'",
    "throttle": {"once_within": "60s", "group_by": ["event.data.device", "event.data.interface"]},
    "do": [{"log": {"message": "down {{ event.data.interface }}"}}],
}


async def test_storm_of_500_over_5_interfaces_runs_5_times(tmp_path: Path) -> None:
    clock = Clock()
    store, disp, client = await setup(tmp_path, STORM_RULE, clock)
    try:
        for i in range(500):
            await store.append(link_event(f"Gi{i % 5}"))
            clock.now += 0.05  # 25 s of flapping, inside one window
        outcomes = await drain(store, disp)
        assert len(outcomes) == 500
        runs = await action_runs(store)
        assert len(runs) == 5
        assert sorted(r.output["message"] for r in runs) == [f"down Gi{i}" for i in range(5)]
        counts = await store.status_counts()
        assert counts == {"succeeded": 5, "suppressed": 495}
        # After the window, the next flap of an interface runs again.
        clock.now += 61
        await store.append(link_event("Gi0"))
        await store.append(link_event("Gi0"))
        await drain(store, disp)
        assert len(await action_runs(store)) == 6
    finally:
        await store.close()
        await client.aclose()


async def test_throttle_state_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    store, disp, client = await setup(tmp_path, STORM_RULE, clock)
    await store.append(link_event("Gi1"))
    await drain(store, disp)
    await store.close()
    await client.aclose()
    # A new process: new store object, new dispatcher, same database file.
    clock.now += 10
    store2, disp2, client2 = await setup(tmp_path, STORM_RULE, clock)
    try:
        await store2.append(link_event("Gi1"))
        [outcome] = await drain(store2, disp2)
        assert outcome.status is EventStatus.SUPPRESSED
        assert len(await action_runs(store2)) == 1
    finally:
        await store2.close()
        await client2.aclose()


async def test_once_after_runs_once_at_window_end_with_all(tmp_path: Path) -> None:
    clock = Clock()
    rule = {
        **STORM_RULE,
        "throttle": {"once_after": "30s", "group_by": ["event.data.interface"]},
        "do": [
            {
                "log": {
                    "message": "{{ throttle.count }}: {{ throttle.events "
                    "| map(attribute='data.state') | join(',') }}"
                }
            }
        ],
    }
    store, disp, client = await setup(tmp_path, rule, clock)
    try:
        first = await store.append(link_event("Gi2"))
        for _ in range(3):
            clock.now += 1
            await store.append(link_event("Gi2"))
        await drain(store, disp)
        assert await action_runs(store) == []
        ev = await store.get_event(first.id)
        assert ev is not None and ev.status is EventStatus.QUEUED  # waiting for the window
        # The store schedules by the wall clock; move the event's due time to "now".
        clock.now += 30
        import sqlite3

        with sqlite3.connect(tmp_path / "s.db") as conn:
            conn.execute("UPDATE events SET available_at = 0 WHERE id = ?", (first.id,))
        await drain(store, disp)
        [run] = await action_runs(store)
        assert run.output["message"] == "4: down,down,down,down"
        assert (await store.get_event(first.id)).status is EventStatus.SUCCEEDED  # type: ignore[union-attr]
    finally:
        await store.close()
        await client.aclose()


async def test_accumulate_runs_at_threshold(tmp_path: Path) -> None:
    clock = Clock()
    rule = {
        **STORM_RULE,
        "throttle": None,
        "accumulate": {"threshold": 3, "within": "10s", "group_by": ["event.data.interface"]},
    }
    store, disp, client = await setup(tmp_path, rule, clock)
    try:
        for _ in range(2):
            await store.append(link_event("Gi3"))
            clock.now += 1
        await drain(store, disp)
        assert await action_runs(store) == []
        clock.now += 20  # the first two age out of the window
        for _ in range(3):
            await store.append(link_event("Gi3"))
            clock.now += 1
        await drain(store, disp)
        assert len(await action_runs(store)) == 1
        gates = [
            r
            for ev in await store.list_events(EventFilter(limit=100))
            for r in await store.list_runs(ev.id)
            if r.action == "throttle"
        ]
        assert sorted(str(g.status) for g in gates).count(str(RunStatus.SUPPRESSED)) == 4
    finally:
        await store.close()
        await client.aclose()
