"""Records: events, action runs and artifacts. Frozen, built from store rows, no I/O."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: float | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, 26 Crockford base32 characters.

    Ids sort by creation time, so "newest first" is an index scan and ids are safe in URLs.
    """
    ms = int((time.time() if now is None else now) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


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
