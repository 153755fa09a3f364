"""SQLite-only store behaviour (group commit). The shared contract (dedupe, leases, run
records, kv, replay, history) runs on SQLite and PostgreSQL in tests/contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nethook.events import EventDraft
from nethook.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteStore(tmp_path / "t.db")
    await s.open()
    yield s
    await s.close()


def draft(delivery: str | None = None, source: str = "default", n: int = 0) -> EventDraft:
    return EventDraft(source=source, type="t", data={"n": n}, delivery_id=delivery)


async def test_group_commit_shares_transactions(store: SQLiteStore) -> None:
    batches: list[int] = []
    writer = store._writer
    original = writer._run_batch

    def spy(conn, batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        original(conn, batch)

    writer._run_batch = spy  # type: ignore[method-assign]
    await asyncio.gather(*(store.append(draft(n=i)) for i in range(300)))
    assert sum(batches) == 300
    assert len(batches) < 300  # concurrent appends shared commits
