"""Prometheus metrics (``GET /metrics``). Names follow ``nethook_<noun>_<unit>``."""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_RECEIVED = Counter(
    "nethook_events_received_total",
    "Requests that reached an ingest route, by source.",
    ["source"],
    registry=REGISTRY,
)
EVENTS_ACCEPTED = Counter(
    "nethook_events_accepted_total",
    "Events stored durably (duplicates excluded), by source.",
    ["source"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "nethook_events_rejected_total",
    "Requests refused, by source and reason.",
    ["source", "reason"],
    registry=REGISTRY,
)
EVENTS_DUPLICATE = Counter(
    "nethook_events_duplicate_total",
    "Deliveries recognised as duplicates, by source.",
    ["source"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "nethook_ingest_seconds",
    "Time from request to durable acknowledgement.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "nethook_queue_depth",
    "Events queued or running (sampled when /metrics is read).",
    registry=REGISTRY,
)
ACTION_RUNS = Counter(
    "nethook_action_runs_total",
    "Action attempts, by action and outcome.",
    ["action", "outcome"],
    registry=REGISTRY,
)
ACTION_SECONDS = Histogram(
    "nethook_action_seconds",
    "Action attempt duration, by action.",
    ["action"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)


@functools.cache
def received(source: str) -> Any:
    """The received counter of one source (labels() costs microseconds; ingest is hot)."""
    return EVENTS_RECEIVED.labels(source)


@functools.cache
def accepted(source: str) -> Any:
    return EVENTS_ACCEPTED.labels(source)


@functools.cache
def _action_children(action: str, outcome: str) -> tuple[Any, Any]:
    return ACTION_RUNS.labels(action, outcome), ACTION_SECONDS.labels(action)


def action_run(action: str, ok: bool, seconds: float) -> None:
    """Count one action attempt and its duration."""
    runs, duration = _action_children(action, "succeeded" if ok else "failed")
    runs.inc()
    duration.observe(seconds)


DEVICE_SESSIONS_OPEN = Gauge(
    "nethook_device_sessions_open",
    "SSH sessions to devices open in this process.",
    registry=REGISTRY,
)
DEVICE_CONNECTS = Counter(
    "nethook_device_connects_total",
    "SSH logins to devices, by outcome (ok, auth_failed, error).",
    ["outcome"],
    registry=REGISTRY,
)


def rejected(source: str, reason: str) -> None:
    EVENTS_REJECTED.labels(source, reason).inc()


# Syslog listeners (issue part 5/7). received = stored + dropped + still queued, where
# dropped excludes reason "kernel": the kernel dropped those before nethook could read them.
SYSLOG_RECEIVED = Counter(
    "nethook_syslog_received_total",
    "Syslog messages read by a listener, by source and transport.",
    ["source", "transport"],
    registry=REGISTRY,
)
SYSLOG_STORED = Counter(
    "nethook_syslog_stored_total",
    "Syslog messages stored as events, by source.",
    ["source"],
    registry=REGISTRY,
)
SYSLOG_DROPPED = Counter(
    "nethook_syslog_dropped_total",
    "Syslog messages not stored, by source and reason: forbidden (sender not allowed), "
    "too_large, queue_full, store_error, error, shutdown, kernel (socket buffer overflow, UDP).",
    ["source", "reason"],
    registry=REGISTRY,
)
