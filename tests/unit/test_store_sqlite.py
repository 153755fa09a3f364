"""The SQLite store against a real file: dedupe, leases, run records, group commit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from nethook.events import ActionRun, EventDraft, EventStatus, RunStatus
from nethook.store.base import EventFilter
from nethook.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteStore(tmp_path / "t.db")
    await s.open()
    yield s
    await s.close()


def draft(delivery: str | None = None, source: str = "default", n: int = 0) -> EventDraft:
    return EventDraft(source=source, type="t", data={"n": n}, delivery_id=delivery)


async def test_dedupe_by_source_and_delivery_id(store: SQLiteStore) -> None:
    a = await store.append(draft("k1"))
    b = await store.append(draft("k1"))
    c = await store.append(draft("k1", source="other"))
    d = await store.append(draft(None))
    e = await store.append(draft(None))
    assert not a.duplicate and b.duplicate and b.id == a.id
    assert not c.duplicate and c.id != a.id
    assert not d.duplicate and not e.duplicate and d.id != e.id
    assert len(await store.list_events(EventFilter(limit=100))) == 4


async def test_concurrent_duplicates_in_one_batch_store_one(store: SQLiteStore) -> None:
    results = await asyncio.gather(*(store.append(draft("same")) for _ in range(50)))
    ids = {r.id for r in results}
    assert len(ids) == 1
    assert sum(not r.duplicate for r in results) == 1


async def test_group_commit_shares_transactions(store: SQLiteStore) -> None:
    batches: list[int] = []
    original = store._run_batch

    def spy(conn, batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        original(conn, batch)

    store._run_batch = spy  # type: ignore[method-assign]
    await asyncio.gather(*(store.append(draft(n=i)) for i in range(300)))
    assert sum(batches) == 300
    assert len(batches) < 300  # concurrent appends shared commits


async def test_claim_lease_finish_and_expiry(store: SQLiteStore) -> None:
    ids = [(await store.append(draft(n=i))).id for i in range(3)]
    got = await store.claim("w1", 2, lease_seconds=30)
    assert [e.id for e in got] == ids[:2]
    assert all(e.status is EventStatus.RUNNING and e.attempts == 1 for e in got)
    assert [e.id for e in await store.claim("w2", 10, 30)] == ids[2:]
    assert await store.claim("w3", 10, 30) == []
    # Only the owner may finish.
    assert not await store.finish(ids[0], "w2", EventStatus.SUCCEEDED)
    assert await store.finish(ids[0], "w1", EventStatus.SUCCEEDED)
    # An expired lease is claimed again by someone else, with attempts counted.
    await store.renew("w1", [ids[1]], lease_seconds=-1)
    again = await store.claim("w3", 10, 30)
    assert [e.id for e in again] == [ids[1]] and again[0].attempts == 2
    assert not await store.finish(ids[1], "w1", EventStatus.SUCCEEDED)  # lost its lease
    assert await store.queue_depth() == 2


async def test_retry_later_is_invisible_until_due(store: SQLiteStore) -> None:
    eid = (await store.append(draft())).id
    assert len(await store.claim("w", 1, 30)) == 1
    assert await store.retry_later(eid, "w", time.time() + 60, "boom")
    assert await store.claim("w", 1, 30) == []
    assert (await store.get_event(eid)).status is EventStatus.QUEUED  # type: ignore[union-attr]


async def test_a_step_is_recorded_as_succeeded_once(store: SQLiteStore) -> None:
    eid = (await store.append(draft())).id
    now = time.time()

    def run(attempt: int, status: RunStatus) -> ActionRun:
        return ActionRun(
            event_id=eid,
            step="r#0",
            rule="r",
            action="log",
            attempt=attempt,
            status=status,
            started_at=now,
            finished_at=now + 0.1,
            output={"a": 1},
        )

    assert await store.record_run(run(1, RunStatus.FAILED)) is not None
    assert await store.record_run(run(2, RunStatus.SUCCEEDED)) is not None
    assert await store.record_run(run(3, RunStatus.SUCCEEDED)) is None
    runs = await store.list_runs(eid)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.FAILED),
        (2, RunStatus.SUCCEEDED),
    ]
    assert runs[1].output == {"a": 1}


async def test_replay_copies_and_links(store: SQLiteStore) -> None:
    eid = (await store.append(draft("d1"))).id
    copy = await store.replay(eid)
    assert copy is not None and copy.id != eid and not copy.duplicate
    ev = await store.get_event(copy.id)
    assert ev is not None and ev.replay_of == eid and ev.delivery_id is None
    assert await store.replay("nope") is None


async def test_list_filters_and_pagination(store: SQLiteStore) -> None:
    for i in range(5):
        await store.append(EventDraft(source="s", type="a" if i % 2 else "b", data={"n": i}))
    page1 = await store.list_events(EventFilter(limit=2))
    page2 = await store.list_events(EventFilter(limit=2, before_seq=page1[-1].seq))
    assert [e.data["n"] for e in page1 + page2] == [4, 3, 2, 1]
    assert {e.type for e in await store.list_events(EventFilter(type="a"))} == {"a"}
    assert len(await store.list_events(EventFilter(text='"n":3'))) == 1


async def test_kv_with_ttl(store: SQLiteStore) -> None:
    await store.kv_set("ns", "k", {"deck": "abc"})
    assert await store.kv_get("ns", "k") == {"deck": "abc"}
    await store.kv_set("ns", "gone", 1, ttl=-1)
    assert await store.kv_get("ns", "gone") is None


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    from nethook.exceptions import StoreUnavailable

    s = SQLiteStore(tmp_path / "c.db")
    await s.open()
    await s.close()
    with pytest.raises(StoreUnavailable):
        await s.append(draft())
