"""Prometheus metrics (``GET /metrics``). Names follow ``nethook_<noun>_<unit>``."""

from __future__ import annotations

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


def rejected(source: str, reason: str) -> None:
    EVENTS_REJECTED.labels(source, reason).inc()
