"""Rate limits shared by every node, in Redis, through the ``limits`` package.

Off by default: each node keeps its own token buckets (``security.limits.TokenBucket``),
so N nodes admit up to N times the configured rate. With
``security.rate_limit.storage: redis://host:6379`` (or ``rediss://``) all nodes count in one
place. The token bucket's terms map onto ``limits``' sliding-window counter: ``burst``
requests per ``burst / rate`` seconds, the same average rate and the same largest burst
(windows are whole seconds, so a burst under one second of traffic becomes one second's).

Redis is an optimisation of fairness, not a dependency of ingest: when it cannot answer
within :data:`REDIS_TIMEOUT`, the node falls back to its local bucket and says so in the
log (at most every :data:`WARN_EVERY` seconds).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import structlog

from ..exceptions import ConfigError
from .limits import TokenBucket

log = structlog.get_logger("nethook.limits")

REDIS_TIMEOUT = 0.25  # seconds per check; a slow Redis must not become slow ingest
FIRST_TIMEOUT = 3.0  # the first check also connects and loads the Lua scripts
RETRY_AFTER_FAILURE = 1.0  # seconds on the local bucket before asking Redis again
WARN_EVERY = 30.0
SCHEMES = ("redis://", "rediss://", "redis+unix://")

# One storage (one connection pool) per URL, shared by every source and kept across reloads.
_storages: dict[str, Any] = {}


def is_shared(storage: str) -> bool:
    return storage.startswith(SCHEMES)


def window_terms(per_minute: float, burst: int | None) -> tuple[int, int]:
    """``(amount, seconds)`` of the sliding window matching a token bucket's rate and burst."""
    size = float(burst if burst is not None else max(10, math.ceil(per_minute / 6)))
    seconds = max(1, round(size * 60.0 / per_minute))
    amount = max(1, round(per_minute * seconds / 60.0))
    return amount, seconds


class SharedRateLimiter:
    """A per-client limit for one source, counted in Redis across nodes."""

    def __init__(
        self, source: str, storage: str, per_minute: float, burst: int | None = None
    ) -> None:
        try:
            from limits import RateLimitItemPerSecond
        except ImportError as exc:
            raise ConfigError(
                "security.rate_limit.storage: a shared (redis://) limit needs the redis extra: "
                "pip install 'nethook[redis]'"
            ) from exc
        self.source = source
        self.url = storage
        amount, seconds = window_terms(per_minute, burst)
        self.item = RateLimitItemPerSecond(amount, seconds)
        self.local = TokenBucket(per_minute, burst)
        self._limiter: Any = None
        self._connected = False
        self._skip_until = 0.0
        self._warned = 0.0

    def _strategy(self) -> Any:
        # Built on first use, inside the running event loop the Redis client will live in.
        if self._limiter is None:
            from limits.aio.strategies import SlidingWindowCounterRateLimiter
            from limits.storage import storage_from_string

            storage = _storages.get(self.url)
            if storage is None:
                storage = _storages[self.url] = storage_from_string(
                    "async+" + self.url, wrap_exceptions=True
                )
            self._limiter = SlidingWindowCounterRateLimiter(storage)
        return self._limiter

    async def acquire(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until the window allows one."""
        now = time.monotonic()
        if now < self._skip_until:
            return await self.local.acquire(key)
        try:
            timeout = REDIS_TIMEOUT if self._connected else FIRST_TIMEOUT
            wait = await asyncio.wait_for(self._acquire(key), timeout)
            self._connected = True
            return wait
        except Exception as exc:  # Redis down, slow, or refusing: keep limiting, locally
            # Not every request should pay a timeout while Redis is away: ask again later.
            self._skip_until = now + RETRY_AFTER_FAILURE
            if now - self._warned > WARN_EVERY:
                self._warned = now
                log.warning("rate_limit.redis_unavailable", source=self.source, error=repr(exc))
            return await self.local.acquire(key)

    async def _acquire(self, key: str) -> float:
        limiter = self._strategy()
        if await limiter.hit(self.item, "nethook", self.source, key):
            return 0.0
        stats = await limiter.get_window_stats(self.item, "nethook", self.source, key)
        return max(0.001, float(stats.reset_time) - time.time())
