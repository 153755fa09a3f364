"""Request limits: token-bucket rate limits, CIDR allowlists, client address behind proxies.

Pure logic with an injectable clock; the HTTP layer turns the answers into 403/429.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..exceptions import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Above this many tracked clients, buckets that have refilled completely are forgotten:
# they carry no information, and keeping them would let address churn grow memory.
MAX_TRACKED = 10_000


def parse_networks(values: Iterable[str], where: str) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` -> networks; a bad entry is a ConfigError naming it."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not an IP address or CIDR") from None
    return tuple(out)


def _address(value: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def in_networks(value: str, networks: tuple[Network, ...]) -> bool:
    addr = _address(value)
    return addr is not None and any(addr in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The sender's address. ``X-Forwarded-For`` counts only when the peer is a trusted proxy,
    and then only up to the first hop that is not itself a trusted proxy (the right-most
    untrusted entry): everything left of it could have been written by the client.
    """
    if peer is None:
        return "-"
    if not forwarded_for or not trusted or not in_networks(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if _address(hop) is None:
            return peer  # a garbled header is not trusted at all
        if not in_networks(hop, trusted):
            return hop
    return hops[0] if hops else peer


class RateLimiter(Protocol):
    """What ingress asks before taking a request: 0.0 to go ahead, else seconds to wait."""

    async def acquire(self, key: str) -> float: ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBucket:
    """Per-key token buckets: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(10, math.ceil(per_minute / 6)))
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """Take one token. Returns 0.0 when allowed, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: str, now: float) -> float:
        """Seconds until :meth:`take` would allow ``key`` (0.0 now), taking nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    async def acquire(self, key: str) -> float:
        """:meth:`take` on the monotonic clock (the :class:`RateLimiter` interface)."""
        return self.take(key, time.monotonic())

    def _forget_full(self, now: float) -> None:
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_TRACKED:  # all busy: drop the oldest half
            for k in sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[
                : MAX_TRACKED // 2
            ]:
                del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(wait: float) -> str:
    """Retry-After in whole seconds, never 0 (a client told 0 would retry at once)."""
    return str(max(1, math.ceil(wait)))


class FailedLogins:
    """Brute-force brake for admin credentials: each wrong attempt spends a token of the
    client's bucket; with none left, attempts are refused (429) before any compare.

    Right credentials spend nothing, so an operator who mistypes a few times is not locked
    out, while a guesser gets ``per_minute`` tries a minute after the first burst. Per
    address, not per user name: the login form also takes the admin token with any user
    name, so a per-name bucket would give a guesser a fresh one per name. (Behind a proxy,
    list it in ``security.trusted_proxies`` or every client shares the proxy's bucket.)
    IPv6 clients count per /64: one host usually holds the whole prefix. Thread-safe:
    FastAPI runs sync dependencies in its thread pool.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets = TokenBucket(per_minute, per_minute)
        self._lock = threading.Lock()

    @staticmethod
    def key(client: str) -> str:
        try:
            addr = ipaddress.ip_address(client)
        except ValueError:
            return client
        if addr.version == 6 and addr.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{addr}/64", strict=False))
        return client

    def retry_after(self, client: str, now: float | None = None) -> float:
        """0.0 when ``client`` may try, else the seconds until it may."""
        key = self.key(client)
        with self._lock:
            return self._buckets.wait(key, time.monotonic() if now is None else now)

    def failed(self, client: str, now: float | None = None) -> None:
        key = self.key(client)
        with self._lock:
            self._buckets.take(key, time.monotonic() if now is None else now)
