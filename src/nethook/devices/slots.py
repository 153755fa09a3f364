"""Per-device session slots shared by every node through the store.

A device has few vty lines, and ``devices.per_device`` is meant for the device, not for
each nethook process. Each open session leases one slot in the store's key/value table,
updated atomically (``Store.kv_update``: a single writer on SQLite, an advisory lock on
PostgreSQL). Leases are renewed while the session lives and expire if a node dies.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import structlog

from ..exceptions import TransientError
from ..store.base import Store

log = structlog.get_logger("nethook.devices.slots")


def _take(state: Any | None, token: str, cap: int, now: float, ttl: float) -> tuple[bool, Any]:
    leases = {t: exp for t, exp in (state or {}).get("leases", {}).items() if exp > now}
    if token in leases or len(leases) < cap:
        leases[token] = now + ttl
        return True, {"leases": leases}
    return False, {"leases": leases}


class SharedSlots:
    """Leases at most ``cap`` sessions per device across all nodes sharing a store."""

    def __init__(self, store: Store, cap: int, ttl: float = 90.0) -> None:
        self.store = store
        self.cap = cap
        self.ttl = ttl
        self.node = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def new_token(self) -> str:
        return f"{self.node}-{uuid.uuid4().hex[:8]}"

    @staticmethod
    def _key(device: str) -> str:
        return f"device-slots|{device}"

    async def try_acquire(self, device: str, token: str) -> bool:
        now, cap, ttl = time.time(), self.cap, self.ttl

        def fn(state: Any | None) -> tuple[bool, Any]:
            return _take(state, token, cap, now, ttl)

        return bool(await self.store.kv_update(self._key(device), fn))

    async def acquire(self, device: str, token: str, timeout: float) -> None:
        """Wait up to ``timeout`` for a slot; TransientError (retry later) if none frees up."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while not await self.try_acquire(device, token):
            if time.monotonic() >= deadline:
                raise TransientError(
                    f"{device}: all {self.cap} session slots are taken by nethook nodes "
                    "(devices.per_device); retrying later"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def release(self, device: str, token: str) -> None:
        def fn(state: Any | None) -> tuple[None, Any]:
            leases = dict((state or {}).get("leases", {}))
            leases.pop(token, None)
            return None, ({"leases": leases} if leases else None)

        await self.store.kv_update(self._key(device), fn)

    async def renew(self, held: list[tuple[str, str]]) -> None:
        """Extend the leases of sessions this node still has open."""
        for device, token in held:
            await self.try_acquire(device, token)
