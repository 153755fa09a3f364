"""Prometheus metrics (``GET /metrics``). Names follow ``nethook_<noun>_<unit>``."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

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
QUEUE_DEPTH = Gauge(
    "nethook_queue_depth",
    "Events queued or running (sampled when /metrics is read).",
    registry=REGISTRY,
)

INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ACTION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class HotPath(Collector):
    """Counters on the ingest and dispatch paths, as plain numbers.

    prometheus_client takes a lock per increment; these are only touched from the event
    loop's thread, so plain ints do, and they become metric families when /metrics is read.
    """

    def __init__(self) -> None:
        self.received: dict[str, int] = defaultdict(int)
        self.accepted: dict[str, int] = defaultdict(int)
        self.ingest = _Histogram(INGEST_BUCKETS)
        self.action_runs: dict[tuple[str, str], int] = defaultdict(int)
        self.action_seconds: dict[str, _Histogram] = {}

    def collect(self) -> Iterator[Any]:
        received = CounterMetricFamily(
            "nethook_events_received",
            "Requests that reached an ingest route, by source.",
            labels=["source"],
        )
        for source, n in sorted(self.received.items()):
            received.add_metric([source], n)
        accepted = CounterMetricFamily(
            "nethook_events_accepted",
            "Events stored durably (duplicates excluded), by source.",
            labels=["source"],
        )
        for source, n in sorted(self.accepted.items()):
            accepted.add_metric([source], n)
        ingest = HistogramMetricFamily(
            "nethook_ingest_seconds", "Time from request to durable acknowledgement."
        )
        ingest.add_metric([], self.ingest.buckets(), self.ingest.sum)
        runs = CounterMetricFamily(
            "nethook_action_runs",
            "Action attempts, by action and outcome.",
            labels=["action", "outcome"],
        )
        for (action, outcome), n in sorted(self.action_runs.items()):
            runs.add_metric([action, outcome], n)
        seconds = HistogramMetricFamily(
            "nethook_action_seconds", "Action attempt duration, by action.", labels=["action"]
        )
        for action, hist in sorted(self.action_seconds.items()):
            seconds.add_metric([action], hist.buckets(), hist.sum)
        yield from (received, accepted, ingest, runs, seconds)


HOT = HotPath()
REGISTRY.register(HOT)


def received(source: str) -> None:
    HOT.received[source] += 1


def accepted(source: str, n: int = 1) -> None:
    HOT.accepted[source] += n


def ingest_seconds(seconds: float) -> None:
    HOT.ingest.observe(seconds)


def action_run(action: str, ok: bool, seconds: float) -> None:
    """Count one action attempt and its duration."""
    HOT.action_runs[(action, "succeeded" if ok else "failed")] += 1
    hist = HOT.action_seconds.get(action)
    if hist is None:
        hist = HOT.action_seconds[action] = _Histogram(ACTION_BUCKETS)
    hist.observe(seconds)


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
