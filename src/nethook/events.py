"""Records: events, action runs and artifacts. Frozen, built from store rows, no I/O."""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as two Crockford characters: the 80 random bits are 8 lookups.
# (base64.b32encode is pure Python in 3.11 and cost three times as much on the hot path.)
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_prefix_cache: tuple[int, str] = (-1, "")
# Ids need uniqueness, not secrecy (nothing is authorised by knowing one), and os.urandom
# costs a system call per id; a PRNG seeded from the OS once per process is enough.
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def _time_prefix(ms: int) -> str:
    global _prefix_cache
    if _prefix_cache[0] != ms:
        chars = []
        value = ms
        for _ in range(10):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        _prefix_cache = (ms, "".join(reversed(chars)))
    return _prefix_cache[1]


def id_floor(ts: float) -> str:
    """The smallest id a ULID made at ``ts`` can have: ``id >= id_floor(t)`` is a time range
    the ids' unique index answers (no index on received_at needed)."""
    value, chars = int(ts * 1000), []
    for _ in range(10):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars)) + "0" * 16


def new_id(now: float | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, 26 Crockford base32 characters.

    Ids sort by creation time, so "newest first" is an index scan and ids are safe in URLs.
    This is on the ingest hot path: the time prefix is cached per millisecond and the random
    part (80 bits = 16 characters) is encoded by table lookups.
    """
    ms = int((time.time() if now is None else now) * 1000)
    r, p = _rng.getrandbits(80), _PAIRS
    return (
        _time_prefix(ms)
        + p[r >> 70]
        + p[(r >> 60) & 1023]
        + p[(r >> 50) & 1023]
        + p[(r >> 40) & 1023]
        + p[(r >> 30) & 1023]
        + p[(r >> 20) & 1023]
        + p[(r >> 10) & 1023]
        + p[r & 1023]
    )


class EventStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    SUPPRESSED = "suppressed"


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class EventDraft:
    """What ingress produces before the store gives it an id: one per event to store."""

    source: str
    type: str
    data: Any
    timestamp: str | None = None
    delivery_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    replay_of: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event. ``data`` is the payload (or its normalised form); ``meta`` never holds secrets."""

    id: str
    source: str
    type: str
    timestamp: str
    received_at: float
    data: Any
    meta: dict[str, Any]
    status: EventStatus
    delivery_id: str | None = None
    attempts: int = 0
    available_at: float = 0.0
    lease_owner: str | None = None
    lease_expires: float | None = None
    error: str | None = None
    depth: int = 0
    replay_of: str | None = None
    finished_at: float | None = None
    seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = str(self.status)
        return d

    def template_view(self) -> dict[str, Any]:
        """The names a rule's templates see as ``event``."""
        return {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "timestamp": self.timestamp,
            "received_at": self.received_at,
            "data": self.data,
            "meta": self.meta,
            "delivery_id": self.delivery_id,
            "depth": self.depth,
        }


@dataclass(frozen=True, slots=True)
class ActionRun:
    """One attempt of one step (rule x action) for one event."""

    event_id: str
    step: str
    rule: str
    action: str
    attempt: int
    status: RunStatus
    started_at: float
    finished_at: float
    output: Any = None
    error: str | None = None
    transient: bool = False
    id: int | None = None

    @property
    def elapsed(self) -> float:
        return self.finished_at - self.started_at

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = str(self.status)
        d["elapsed"] = round(self.elapsed, 6)
        return d


@dataclass(frozen=True, slots=True)
class Artifact:
    """A raw output kept as a file under the data directory (a response body, a config...)."""

    event_id: str
    name: str
    path: str
    content_type: str
    size: int
    sha256: str
    created_at: float
    run_id: int | None = None
    step: str | None = None
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AppendResult:
    id: str
    duplicate: bool = False
    status: EventStatus = EventStatus.QUEUED
