"""What only the PostgreSQL store does: LISTEN/NOTIFY wake-ups between nodes, failing fast
when the server cannot be reached, and group commit sharing one transaction."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from nethook.config import StoreConfig
from nethook.events import EventDraft
from nethook.exceptions import StoreUnavailable

from .conftest import StoreFactory, pg_url_or_skip, require_pg


@pytest.fixture
def backend() -> str:
    return "postgres"


async def test_notify_wakes_another_node_within_milliseconds(stores: StoreFactory) -> None:
    producer, worker = await stores(), await stores()
    deadline = time.monotonic() + 5
    while not getattr(worker, "listening", False):
        assert time.monotonic() < deadline, "LISTEN connection never came up"
        await asyncio.sleep(0.01)
    latencies = []
    for i in range(5):
        await worker.wait_for_work(0)  # forget earlier wake-ups
        waiter = asyncio.create_task(worker.wait_for_work(10.0))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        await producer.append(EventDraft(source="s", type="t", data={"i": i}))
        await asyncio.wait_for(waiter, 5.0)
        latencies.append(time.monotonic() - started)
    # The poll fallback would take 10 s here; a notification takes a millisecond or so
    # after the commit (the append itself includes the commit's fsync).
    assert max(latencies) < 0.5, latencies
    print(
        f"\nNOTIFY wake-up after append (incl. commit): {[round(x * 1000, 1) for x in latencies]} ms"
    )


async def test_unreachable_server_is_store_unavailable_at_once() -> None:
    from conftest import free_port
    from nethook.store.postgres import PostgresStore

    store = PostgresStore(StoreConfig(url=f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await store.open()
    assert time.monotonic() - started < 5


async def test_concurrent_appends_share_statements(stores: StoreFactory) -> None:
    store: Any = await stores()
    sizes: list[int] = []
    original = store._appends.flush

    async def spy(rows: list[Any]) -> Any:
        sizes.append(len(rows))
        return await original(rows)

    store._appends.flush = spy
    drafts = [EventDraft(source="s", type="t", data=i) for i in range(300)]
    results = await asyncio.gather(*(store.append(d) for d in drafts))
    assert len({r.id for r in results}) == 300
    assert sum(sizes) == 300 and len(sizes) < 100, sizes


async def test_store_reports_unavailable_when_its_database_goes_away() -> None:
    """Connections killed under the store (as a server restart does): StoreUnavailable, then
    service again without a new store."""
    pgtools = require_pg()
    url = pg_url_or_skip()
    from nethook.store.postgres import PostgresStore

    store = PostgresStore(StoreConfig(url=url, pool_size=3))
    await store.open()
    try:
        await store.append(EventDraft(source="s", type="t", data=1))
        name = url.rsplit("/", 1)[1]
        with pgtools.admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        outcomes = []
        for i in range(20):
            try:
                await store.append(EventDraft(source="s", type="t", data=i))
                outcomes.append("ok")
            except StoreUnavailable:
                outcomes.append("503")
            await asyncio.sleep(0.05)
        print(f"\nafter pg_terminate_backend: {outcomes}")
        assert outcomes[-1] == "ok", outcomes
        assert "503" in outcomes or outcomes == ["ok"] * 20, outcomes
    finally:
        await store.close()
        pgtools.drop(url)
