"""The Store contract, against every backend (SQLite and PostgreSQL, real databases).

What the interface promises (store/base.py): durable appends with dedupe on
``(source, delivery_id)``, leases that only their owner can use, a step recorded as
succeeded at most once, atomic storm-control gates, kv with TTLs, retention. The
"two nodes" tests open a second store on the same database, as a second process would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from nethook.events import ActionRun, Artifact, EventDraft, EventStatus, RunStatus
from nethook.exceptions import StoreUnavailable
from nethook.store.base import EventFilter, Store

from .conftest import StoreFactory


def draft(delivery: str | None = None, source: str = "default", n: int = 0) -> EventDraft:
    return EventDraft(source=source, type="t", data={"n": n}, delivery_id=delivery)


def run(event_id: str, attempt: int, status: RunStatus, step: str = "r#0") -> ActionRun:
    now = time.time()
    return ActionRun(
        event_id=event_id,
        step=step,
        rule="r",
        action="log",
        attempt=attempt,
        status=status,
        started_at=now,
        finished_at=now + 0.1,
        output={"a": attempt},
    )


# --------------------------------------------------------------------------- appends


async def test_dedupe_by_source_and_delivery_id(store: Store) -> None:
    a = await store.append(draft("k1"))
    b = await store.append(draft("k1"))
    c = await store.append(draft("k1", source="other"))
    d = await store.append(draft(None))
    e = await store.append(draft(None))
    assert not a.duplicate and b.duplicate and b.id == a.id
    assert b.status is EventStatus.QUEUED
    assert not c.duplicate and c.id != a.id
    assert not d.duplicate and not e.duplicate and d.id != e.id
    assert len(await store.list_events(EventFilter(limit=100))) == 4


async def test_concurrent_duplicates_in_one_batch_store_one(store: Store) -> None:
    results = await asyncio.gather(*(store.append(draft("same")) for _ in range(50)))
    assert len({r.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1


async def test_duplicates_across_nodes_store_one(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    keys = [f"k{i}" for i in range(40)]
    # Each key four times, from both nodes, in opposite orders (no deadlock either).
    calls = [(k, s) for k in keys for s in (a, b)] + [
        (k, s) for k in reversed(keys) for s in (b, a)
    ]
    results = await asyncio.gather(*(s.append(draft(k)) for k, s in calls))
    by_key: dict[str, set[str]] = {}
    for (k, _), r in zip(calls, results, strict=True):
        by_key.setdefault(k, set()).add(r.id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sum(not r.duplicate for r in results) == len(keys)
    assert sum((await a.status_counts()).values()) == len(keys)


async def test_append_many_and_data_round_trip(store: Store) -> None:
    data = {"b": 1, "a": [1, 2.5, None, True], "s": "é\u0000x", "nested": {"k": {}}}
    results = await store.append_many(
        [EventDraft(source="s", type="x", data=data, meta={"client": "1.2.3.4"})] * 3
    )
    assert len({r.id for r in results}) == 3
    ev = await store.get_event(results[0].id)
    assert ev is not None
    assert ev.data == data and list(ev.data) == ["b", "a", "s", "nested"]  # order kept
    assert ev.meta == {"client": "1.2.3.4"} and ev.status is EventStatus.QUEUED
    assert ev.timestamp and ev.received_at == pytest.approx(time.time(), abs=30)
    assert await store.get_event("missing") is None


async def test_closed_store_refuses_writes(stores: StoreFactory) -> None:
    s = await stores()
    await s.close()
    with pytest.raises(StoreUnavailable):
        await s.append(draft())


# --------------------------------------------------------------------------- the queue


async def test_claim_lease_finish_and_expiry(store: Store) -> None:
    ids = [(await store.append(draft(n=i))).id for i in range(3)]
    got = await store.claim("w1", 2, lease_seconds=30)
    assert [e.id for e in got] == ids[:2]
    assert all(e.status is EventStatus.RUNNING and e.attempts == 1 for e in got)
    assert all(e.lease_owner == "w1" for e in got)
    assert [e.id for e in await store.claim("w2", 10, 30)] == ids[2:]
    assert await store.claim("w3", 10, 30) == []
    # Only the owner may finish.
    assert not await store.finish(ids[0], "w2", EventStatus.SUCCEEDED)
    assert await store.finish(ids[0], "w1", EventStatus.SUCCEEDED)
    assert not await store.finish(ids[0], "w1", EventStatus.SUCCEEDED)  # once
    # An expired lease is claimed again by someone else, with attempts counted.
    assert await store.renew("w1", [ids[1], ids[2]], lease_seconds=-1) == {ids[1]}
    again = await store.claim("w3", 10, 30)
    assert [e.id for e in again] == [ids[1]] and again[0].attempts == 2
    assert not await store.finish(ids[1], "w1", EventStatus.SUCCEEDED)  # lost its lease
    assert await store.renew("w1", [ids[1]], 30) == set()
    assert await store.queue_depth() == 2
    done = await store.get_event(ids[0])
    assert done is not None and done.status is EventStatus.SUCCEEDED
    assert done.finished_at is not None and done.lease_owner is None


async def test_retry_later_is_invisible_until_due(store: Store) -> None:
    eid = (await store.append(draft())).id
    assert len(await store.claim("w", 1, 30)) == 1
    assert not await store.retry_later(eid, "other", time.time(), "boom")
    assert await store.retry_later(eid, "w", time.time() + 60, "boom")
    assert await store.claim("w", 1, 30) == []
    ev = await store.get_event(eid)
    assert ev is not None and ev.status is EventStatus.QUEUED and ev.error == "boom"
    other = (await store.append(draft(n=2))).id
    assert [e.id for e in await store.claim("w", 5, 30)] == [other]


async def test_claims_from_two_nodes_never_overlap(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    ids = {r.id for r in await a.append_many([draft(n=i) for i in range(120)])}
    claimed: list[str] = []

    async def worker(s: Store, owner: str) -> None:
        while True:
            got = await s.claim(owner, 7, 30)
            if not got:
                return
            claimed.extend(e.id for e in got)
            for e in got:
                assert await s.finish(e.id, owner, EventStatus.SUCCEEDED)

    await asyncio.gather(
        *(worker(s, f"{name}{i}") for i in range(3) for s, name in ((a, "a"), (b, "b")))
    )
    assert sorted(claimed) == sorted(ids)  # every event once, none twice
    assert await a.status_counts() == {"succeeded": 120}


async def test_activity_counts_the_window_by_source_status_and_minute(store: Store) -> None:
    before = time.time()
    await store.append_many([draft(source="a", n=i) for i in range(3)])
    await store.append_many([draft(source="b", n=i) for i in range(2)])
    (claimed, *_) = await store.claim("w", 1, 30)
    assert await store.finish(claimed.id, "w", EventStatus.DEAD, "boom")
    rows = await store.activity(before - 60)
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        assert row.minute in (int(before) // 60, int(time.time()) // 60)
        assert before - 1 <= row.last_seen <= time.time() + 1
        counts[(row.source, row.status)] = counts.get((row.source, row.status), 0) + row.count
    assert counts == {("a", "queued"): 2, ("a", "dead"): 1, ("b", "queued"): 2}
    # Nothing was received after now: the id range alone already says so.
    assert await store.activity(time.time() + 120) == []


async def test_wait_for_work_wakes_on_append(store: Store) -> None:
    # Woken by the append, not by its own 60 s timeout (10 s is slack for a loaded machine).
    waiter = asyncio.create_task(store.wait_for_work(60.0))
    await asyncio.sleep(0.05)
    await store.append(draft())
    await asyncio.wait_for(waiter, 10.0)


# --------------------------------------------------------------------------- runs


async def test_a_step_is_recorded_as_succeeded_once(store: Store) -> None:
    eid = (await store.append(draft())).id
    assert await store.record_run(run(eid, 1, RunStatus.FAILED)) is not None
    assert await store.record_run(run(eid, 2, RunStatus.SUCCEEDED)) is not None
    assert await store.record_run(run(eid, 3, RunStatus.SUCCEEDED)) is None
    assert await store.record_run(run(eid, 1, RunStatus.SUCCEEDED, step="r#1")) is not None
    runs = await store.list_runs(eid)
    assert [(r.step, r.attempt, r.status) for r in runs] == [
        ("r#0", 1, RunStatus.FAILED),
        ("r#0", 2, RunStatus.SUCCEEDED),
        ("r#1", 1, RunStatus.SUCCEEDED),
    ]
    assert runs[1].output == {"a": 2} and runs[1].elapsed == pytest.approx(0.1)


async def test_concurrent_successes_across_nodes_record_one(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    eid = (await a.append(draft())).id
    ids = await asyncio.gather(
        *(s.record_run(run(eid, i, RunStatus.SUCCEEDED)) for i in range(10) for s in (a, b))
    )
    assert sum(i is not None for i in ids) == 1
    assert len([r for r in await b.list_runs(eid) if r.status is RunStatus.SUCCEEDED]) == 1


async def test_artifacts(store: Store) -> None:
    eid = (await store.append(draft())).id
    rid = await store.record_run(run(eid, 1, RunStatus.SUCCEEDED))
    art = Artifact(eid, "out.txt", "/tmp/x", "text/plain", 3, "ab" * 32, time.time(), rid, "r#0")
    aid = await store.add_artifact(art)
    got = await store.get_artifact(aid)
    assert got is not None and got.id == aid and got.name == "out.txt" and got.run_id == rid
    assert [a.id for a in await store.list_artifacts(eid)] == [aid]
    assert await store.get_artifact(aid + 1000) is None


# --------------------------------------------------------------------------- gate and kv


def counting_decide(seen: list[int]) -> Any:
    def decide(state: Any | None) -> tuple[dict[str, Any], Any | None]:
        count = (state or {}).get("count", 0) + 1
        seen.append(count)
        return {"verdict": "run" if count == 1 else "suppress", "count": count}, {"count": count}

    return decide


async def test_gate_is_atomic_across_nodes_and_recorded(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    ids = [r.id for r in await a.append_many([draft(n=i) for i in range(30)])]
    seen: list[int] = []
    decisions = await asyncio.gather(
        *(
            (a if i % 2 else b).gate(eid, "r#gate", "r", "group-1", counting_decide(seen))
            for i, eid in enumerate(ids)
        )
    )
    # One history for the group: every event saw a distinct count, exactly one ran.
    assert sorted(d["count"] for d in decisions) == list(range(1, 31))
    assert sum(d["verdict"] == "run" for d in decisions) == 1
    assert await a.kv_get("throttle", "group-1") == {"count": 30}
    # Asked again (a restart, another worker), an event gets its recorded decision.
    again = await b.gate(ids[0], "r#gate", "r", "group-1", counting_decide(seen))
    assert again == decisions[0]
    runs = await a.list_runs(ids[0])
    assert len(runs) == 1 and runs[0].action == "throttle" and runs[0].output == decisions[0]


async def test_gate_state_none_deletes_and_defer_records_nothing(store: Store) -> None:
    eid = (await store.append(draft())).id
    await store.kv_set("throttle", "g", {"x": 1})
    out = await store.gate(eid, "r#gate", "r", "g", lambda st: ({"verdict": "defer"}, None))
    assert out == {"verdict": "defer"}
    assert await store.kv_get("throttle", "g") is None
    assert await store.list_runs(eid) == []


async def test_kv_with_ttl(store: Store) -> None:
    await store.kv_set("ns", "k", {"deck": "abc"})
    assert await store.kv_get("ns", "k") == {"deck": "abc"}
    await store.kv_set("ns", "k", [1, 2], ttl=60)
    assert await store.kv_get("ns", "k") == [1, 2]
    await store.kv_set("ns", "gone", 1, ttl=-1)
    assert await store.kv_get("ns", "gone") is None
    assert await store.kv_get("other", "k") is None


# --------------------------------------------------------------------------- reads


async def test_replay_copies_and_links(store: Store) -> None:
    eid = (await store.append(draft("d1"))).id
    copy = await store.replay(eid)
    assert copy is not None and copy.id != eid and not copy.duplicate
    ev = await store.get_event(copy.id)
    assert ev is not None and ev.replay_of == eid and ev.delivery_id is None
    assert ev.meta["replay_of"] == eid
    assert await store.replay("nope") is None


async def test_list_filters_and_pagination(store: Store) -> None:
    for i in range(5):
        await store.append(EventDraft(source="s", type="a" if i % 2 else "b", data={"n": i}))
    page1 = await store.list_events(EventFilter(limit=2))
    page2 = await store.list_events(EventFilter(limit=2, before_seq=page1[-1].seq))
    assert [e.data["n"] for e in page1 + page2] == [4, 3, 2, 1]
    assert {e.type for e in await store.list_events(EventFilter(type="a"))} == {"a"}
    assert len(await store.list_events(EventFilter(text='"n":3'))) == 1
    assert len(await store.list_events(EventFilter(source="s", status="queued"))) == 5
    assert await store.list_events(EventFilter(status="dead")) == []
    assert await store.status_counts() == {"queued": 5}


# --------------------------------------------------------------------------- retention


async def finish_all(store: Store, n: int) -> None:
    for e in await store.claim("w", n, 30):
        assert await store.finish(e.id, "w", EventStatus.SUCCEEDED)


async def test_purge_by_age_keeps_live_and_recent(store: Store) -> None:
    old = [r.id for r in await store.append_many([draft(n=i) for i in range(7)])]
    await finish_all(store, 5)  # 5 finished, 2 still queued
    await asyncio.sleep(0.01)
    cutoff = time.time()
    await asyncio.sleep(0.01)
    new = (await store.append(draft(n=99))).id
    await finish_all(store, 10)  # the 2 old queued ones and the new one finish now
    eid = old[0]
    await store.record_run(run(eid, 1, RunStatus.SUCCEEDED))
    art = Artifact(eid, "a", "/data/artifacts/x/a", "text/plain", 1, "0" * 64, time.time())
    await store.add_artifact(art)
    await store.kv_set("ns", "expired", 1, ttl=-5)
    await store.kv_set("ns", "kept", 1)

    result = await store.purge(before=cutoff, chunk=2)
    assert result.events == 7 and result.artifact_paths == ("/data/artifacts/x/a",)
    assert result.kv == 1
    assert [e.id for e in await store.list_events(EventFilter())] == [new]
    assert await store.list_runs(eid) == [] and await store.list_artifacts(eid) == []
    assert await store.kv_get("ns", "kept") == 1


async def test_purge_by_count_never_touches_queued(store: Store) -> None:
    ids = [r.id for r in await store.append_many([draft(n=i) for i in range(10)])]
    # The 6 oldest are claimed; all but the 2nd finish (it stays running).
    claimed = await store.claim("w", 6, 30)
    for e in claimed:
        if e.id != ids[1]:
            await store.finish(e.id, "w", EventStatus.DEAD, "x")
    result = await store.purge(keep=3)
    # The newest 3 stay; of the 7 older ones, only finished ones go (ids[1] is running,
    # ids[6] is queued).
    assert result.events == 5
    left = {e.id for e in await store.list_events(EventFilter(limit=100))}
    assert left == {ids[1], ids[6], *ids[7:]}
    assert (await store.purge(keep=3)).events == 0
    assert (await store.purge()).events == 0


async def test_nul_characters_in_text_fields_are_stored(store: Store) -> None:
    """PostgreSQL text cannot hold NUL; the store must not fail the request for it."""
    a = await store.append(
        EventDraft(source="s", type="t\x00x", data={"k": "v\x00"}, delivery_id="d\x00")
    )
    b = await store.append(EventDraft(source="s", type="t\x00x", data={}, delivery_id="d\x00"))
    assert b.duplicate and b.id == a.id
    ev = await store.get_event(a.id)
    assert ev is not None and ev.type.startswith("t") and ev.data == {"k": "v\x00"}
    assert len(await store.claim("w", 1, 30)) == 1
    assert await store.record_run(run(a.id, 1, RunStatus.FAILED)) is not None
    assert await store.retry_later(a.id, "w", time.time(), "bad\x00error")


async def test_device_slots_hold_across_nodes(stores: StoreFactory) -> None:
    """devices.per_device counts sessions of every node: kv_update is atomic across them."""
    from nethook.devices.slots import SharedSlots

    a, b = SharedSlots(await stores(), cap=2), SharedSlots(await stores(), cap=2)
    results = await asyncio.gather(
        *(s.try_acquire("r1", f"{name}-{i}") for i in range(5) for s, name in ((a, "a"), (b, "b")))
    )
    assert sum(results) == 2  # ten concurrent attempts from two nodes, two slots
    assert await a.try_acquire("r2", "a-0")  # another device has its own slots
    winners = [
        f"{n}-{i}"
        for (i, n), ok in zip(((i, n) for i in range(5) for n in ("a", "b")), results, strict=True)
        if ok
    ]
    await b.release("r1", winners[0])
    assert await b.try_acquire("r1", "b-late")
    assert not await a.try_acquire("r1", "a-late")
