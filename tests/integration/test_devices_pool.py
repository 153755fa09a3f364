"""The SSH session pool against real fakenos devices, seen from the device's side.

Logins are counted by the lab's SSH server, so "N commands, one connection" and "an auth
failure is tried exactly once" are the device's view, not the pool's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from devices_lab import PASSWORD, Lab, free_port

from conftest import require_service
from nethook.config import DevicesConfig
from nethook.devices import inventory as inventory_mod
from nethook.devices.inventory import Device, Inventory
from nethook.devices.sessions import AuthFailed, SessionPool
from nethook.exceptions import PermanentError, TransientError

pytestmark = pytest.mark.integration

SHOW = "show ip interface brief"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # Credentials are references resolved from the environment at login time.
    os.environ["LAB_PASSWORD"] = PASSWORD
    try:
        import fakenos  # noqa: F401
        import netmiko  # noqa: F401
    except ImportError as exc:
        require_service("fakenos/netmiko", f"not installed: {exc}")
    lab = Lab(["p1", "p2", "p3", "p4", "p5", "p6", "p7"]).start()
    yield lab
    lab.stop()


def lab_inventory(lab: Lab, **overrides: Any) -> Inventory:
    raw = lab.inventory()
    for name, extra in overrides.items():
        raw["devices"][name] = {**raw["devices"].get(name, {}), **extra}
    return inventory_mod.from_dict(raw)


def show(conn: Any) -> str:
    return str(conn.send_command(SHOW))


async def make_pool(inv: Inventory, **cfg: Any) -> SessionPool:
    pool = SessionPool(inv, DevicesConfig(**{"connect_timeout": 10, **cfg}))
    await pool.start()
    return pool


def device(inv: Inventory, name: str) -> Device:
    dev = inv.get(name)
    assert dev is not None
    return dev


async def test_commands_reuse_one_connection(lab: Lab) -> None:
    inv = lab_inventory(lab)
    pool = await make_pool(inv)
    logins = lab["p1"].logins
    try:
        for _ in range(6):
            assert "GigabitEthernet1" in await pool.run(device(inv, "p1"), show)
        assert lab["p1"].logins - logins == 1
        assert pool.stats.connects == 1 and pool.stats.reuses == 5
        assert pool.open_count() == 1 and pool.idle_count("p1") == 1
    finally:
        await pool.close()
    assert pool.open_count() == 0


async def test_inventory_swap_retires_sessions_of_changed_devices(lab: Lab) -> None:
    """A reload that changes a device closes its idle session and retires a leased one
    when its action ends; an unchanged device keeps its warm session."""
    inv = lab_inventory(lab)
    pool = await make_pool(inv)
    logins = {name: lab[name].logins for name in ("p1", "p2")}
    try:
        await pool.run(device(inv, "p1"), show)
        await pool.run(device(inv, "p2"), show)
        started = asyncio.Event()

        def slow_show(conn: Any) -> str:
            asyncio.run_coroutine_threadsafe(_set(started), loop)
            time.sleep(0.5)
            return show(conn)

        loop = asyncio.get_running_loop()
        leased = asyncio.create_task(pool.run(device(inv, "p2"), slow_show))
        await started.wait()
        changed = lab_inventory(lab, p1={"description": "moved to rack 9"}, p2={"tags": ["core"]})
        diff = pool.swap_inventory(changed)
        assert diff == {"added": [], "removed": [], "changed": ["p1", "p2"]}
        assert pool.idle_count("p1") == 0  # closed at once
        assert "GigabitEthernet1" in await leased  # finished on its own connection...
        assert pool.idle_count("p2") == 0  # ...which was then closed, not put back
        await pool.run(device(changed, "p1"), show)
        await pool.run(device(changed, "p2"), show)
        assert lab["p1"].logins - logins["p1"] == 2 and lab["p2"].logins - logins["p2"] == 2
        # Swapping in an equal inventory changes nothing: the new sessions stay warm.
        assert (
            pool.swap_inventory(
                lab_inventory(lab, p1={"description": "moved to rack 9"}, p2={"tags": ["core"]})
            )["changed"]
            == []
        )
        await pool.run(device(changed, "p1"), show)
        assert lab["p1"].logins - logins["p1"] == 2
        # A caller still holding the old definition (resolved before the reload) gets a
        # session of its own, closed when it comes back: it never serves the new one.
        await pool.run(device(inv, "p1"), show)
        assert lab["p1"].logins - logins["p1"] == 3
        assert pool.idle_count("p1") == 1
        await pool.run(device(changed, "p1"), show)
        assert lab["p1"].logins - logins["p1"] == 3
    finally:
        await pool.close()


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_per_device_cap_and_event_loop_stays_free(lab: Lab) -> None:
    inv = lab_inventory(lab)
    pool = await make_pool(inv, per_device=2)
    logins = lab["p2"].logins
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        outs = await asyncio.gather(*(pool.run(device(inv, "p2"), show) for _ in range(6)))
        assert all("Loopback0" in o for o in outs)
        # Six concurrent actions, two vty lines: exactly two logins, sessions shared in turn.
        assert lab["p2"].logins - logins == 2
        assert pool.open_count() == 2
        # Netmiko ran in threads: the loop kept ticking through logins and commands.
        assert max(gaps) < 0.25, max(gaps)
    finally:
        tick.cancel()
        await pool.close()


async def test_global_cap_evicts_least_recent_idle(lab: Lab) -> None:
    inv = lab_inventory(lab)
    pool = await make_pool(inv, max_sessions=1)
    try:
        await pool.run(device(inv, "p3"), show)
        await pool.run(device(inv, "p4"), show)  # needs p3's slot: p3's idle session goes
        assert pool.open_count() == 1 and pool.stats.evicted == 1
        assert pool.idle_count("p3") == 0 and pool.idle_count("p4") == 1
    finally:
        await pool.close()


async def test_device_restarted_mid_run_is_reconnected(lab: Lab) -> None:
    inv = lab_inventory(lab)
    pool = await make_pool(inv)
    logins = lab["p5"].logins
    try:
        assert "Loopback0" in await pool.run(device(inv, "p5"), show)
        await asyncio.to_thread(lab.restart, "p5")  # the device drops every session
        assert "Loopback0" in await pool.run(device(inv, "p5"), show)
        assert "Loopback0" in await pool.run(device(inv, "p5"), show)
        assert lab["p5"].logins - logins == 2  # one reconnect, then reuse again
        assert pool.stats.health_failures + pool.stats.reconnects == 1
    finally:
        await pool.close()


async def test_dead_session_under_a_command_is_replaced_once(lab: Lab) -> None:
    """The transport still looks fine when the command starts; the write fails."""
    inv = lab_inventory(lab)
    pool = await make_pool(inv)
    calls = 0

    def flaky(conn: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            conn.remote_conn.close()  # the channel dies under the first attempt
        return str(conn.send_command(SHOW))

    try:
        await pool.run(device(inv, "p6"), show)  # a warm, reused session next
        assert "Loopback0" in await pool.run(device(inv, "p6"), flaky)
        assert calls == 2 and pool.stats.reconnects == 1
        # A caller that must not repeat its work (config) gets a transient error instead.
        calls = 0
        with pytest.raises(TransientError, match="session lost"):
            await pool.run(device(inv, "p6"), flaky, retry_dead=False)
        assert calls == 1
    finally:
        await pool.close()


async def test_auth_failure_is_permanent_and_tried_once(lab: Lab) -> None:
    inv = inventory_mod.from_dict(
        {
            "devices": {
                "p1": {
                    "host": "127.0.0.1",
                    "port": lab["p1"].port,
                    "username": "netops",
                    "password": "wrong-password",
                }
            }
        }
    )
    pool = await make_pool(inv)
    before, failed = lab["p1"].logins, lab["p1"].logins_failed
    try:
        with pytest.raises(AuthFailed, match="authentication failed") as info:
            await pool.run(device(inv, "p1"), show)
        assert isinstance(info.value, PermanentError)
        # Events keep coming for the device: no new login with the same bad password.
        for _ in range(3):
            with pytest.raises(AuthFailed, match="not retrying"):
                await pool.run(device(inv, "p1"), show)
        assert lab["p1"].logins - before == 1 and lab["p1"].logins_failed - failed == 1
        assert pool.stats.auth_refusals == 3 and pool.open_count() == 0
    finally:
        await pool.close()


async def test_refused_port_is_transient(lab: Lab) -> None:
    inv = inventory_mod.from_dict(
        {"devices": {"gone": {"host": "127.0.0.1", "port": free_port(), "username": "u"}}}
    )
    pool = await make_pool(inv, connect_timeout=3)
    try:
        with pytest.raises(TransientError, match="gone"):
            await pool.run(device(inv, "gone"), show)
        assert pool.open_count() == 0  # the slot came back
    finally:
        await pool.close()


async def test_idle_sessions_are_closed(lab: Lab) -> None:
    inv = lab_inventory(lab)
    pool = await make_pool(inv, idle_timeout=1.0)
    try:
        await pool.run(device(inv, "p3"), show)
        assert pool.open_count() == 1
        for _ in range(50):  # the reaper runs every idle_timeout / 2 (here 0.5 s)
            if not pool.open_count():
                break
            await asyncio.sleep(0.1)
        assert pool.open_count() == 0 and pool.stats.closed_idle == 1
    finally:
        await pool.close()


async def test_cancelled_action_does_not_leak_its_session(lab: Lab) -> None:
    inv = lab_inventory(lab)
    pool = await make_pool(inv)
    try:
        await pool.run(device(inv, "p4"), show)

        def slow(conn: Any) -> str:
            time.sleep(1.0)
            return str(conn.send_command(SHOW))

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(device(inv, "p4"), slow), 0.2)
        # The session the thread still held is closed, never handed out again.
        assert pool.idle_count("p4") == 0
        assert "Loopback0" in await pool.run(device(inv, "p4"), show)
    finally:
        await pool.close()


async def wait_until(check: Any, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.1)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return bool(check())


async def test_cancelled_login_is_logged_out(lab: Lab) -> None:
    """An action that times out during the login must not leave a vty line taken."""
    inv = lab_inventory(lab)
    assert await wait_until(lambda: lab["p7"].active == 0)  # earlier tests' sessions gone
    pool = await make_pool(inv)
    logins = lab["p7"].logins
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(device(inv, "p7"), show), 0.3)  # login takes ~1 s
        assert pool.open_count() == 0
        # The login completed in its thread, and the session was closed right after.
        assert await wait_until(lambda: lab["p7"].logins == logins + 1)
        assert await wait_until(lambda: lab["p7"].active == 0)
    finally:
        await pool.close()
