"""devices.per_device holds across nodes: sessions lease per-device slots in the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devices_lab import PASSWORD, Lab

from conftest import require_service
from nethook.config import DevicesConfig
from nethook.devices import inventory as inventory_mod
from nethook.devices.sessions import SessionPool
from nethook.devices.slots import SharedSlots
from nethook.exceptions import TransientError
from nethook.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    os.environ["LAB_PASSWORD"] = PASSWORD
    try:
        import fakenos  # noqa: F401
        import netmiko  # noqa: F401
    except ImportError as exc:
        require_service("fakenos/netmiko", f"not installed: {exc}")
    lab = Lab(["s1"]).start()
    yield lab
    lab.stop()


def show(conn: Any) -> str:
    return str(conn.send_command("show ip interface brief"))


async def node(db: Path, lab: Lab) -> tuple[SQLiteStore, SessionPool]:
    """One nethook node: its own store connection to the shared database, its own pool."""
    store = SQLiteStore(db)
    await store.open()
    inv = inventory_mod.from_dict(lab.inventory())
    cfg = DevicesConfig(per_device=1, connect_timeout=1.5)
    pool = SessionPool(inv, cfg, slots=SharedSlots(store, cfg.per_device, ttl=30))
    await pool.start()
    return store, pool


async def test_two_nodes_share_one_vty_line(lab: Lab, tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    store_a, pool_a = await node(db, lab)
    store_b, pool_b = await node(db, lab)
    dev = pool_a.inventory.get("s1")
    assert dev is not None
    logins = lab["s1"].logins
    try:
        assert "GigabitEthernet1" in await pool_a.run(dev, show)
        # Node A keeps its warm session: the device's only slot is taken for node B.
        with pytest.raises(TransientError, match="session slots are taken"):
            await pool_b.run(dev, show)
        assert lab["s1"].logins - logins == 1  # B never logged in
        await pool_a.close()  # A's session closes and gives the slot back
        assert "GigabitEthernet1" in await pool_b.run(dev, show)
        assert lab["s1"].logins - logins == 2
    finally:
        await pool_a.close()
        await pool_b.close()
        await store_a.close()
        await store_b.close()


async def test_a_dead_nodes_lease_expires(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        slots = SharedSlots(store, cap=1, ttl=0.2)
        assert await slots.try_acquire("r1", "node-a")
        assert not await slots.try_acquire("r1", "node-b")
        import asyncio

        await asyncio.sleep(0.3)  # node A died without releasing: its lease runs out
        assert await slots.try_acquire("r1", "node-b")
        await slots.release("r1", "node-b")
        assert await slots.try_acquire("r1", "node-c")
    finally:
        await store.close()
