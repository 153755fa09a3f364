from __future__ import annotations

import json
from pathlib import Path

import pytest

from nethook.ingress.adapters import Incoming, PayloadError, adapt, header_delivery_id

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def seed() -> dict:
    return json.loads((VECTORS / "seed_envelopes.json").read_text())


def inc(payload: object, **kw: object) -> Incoming:
    return Incoming(source="default", payload=payload, headers=kw.pop("headers", {}), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["joke_request", "card_draw", "device_status_check"])
def test_classic_envelopes_become_events(name: str) -> None:
    body = seed()[name]
    [draft] = adapt("envelope", inc(body, meta={"client": "127.0.0.1"}))
    assert draft.type == name
    assert draft.source == "default"
    assert draft.data == body["data"]
    assert draft.timestamp == body["timestamp"]
    assert draft.meta == {"client": "127.0.0.1", "sender": body["source"]}
    assert draft.delivery_id is None


def test_envelope_id_is_the_delivery_id_unless_a_header_gives_one() -> None:
    [d] = adapt("envelope", inc({"event": "x", "id": "abc"}))
    assert d.delivery_id == "abc"
    [d] = adapt("envelope", inc({"event": "x", "id": "abc"}, delivery_id="hdr"))
    assert d.delivery_id == "hdr"


def test_extra_envelope_keys_are_kept_not_dropped() -> None:
    [d] = adapt("envelope", inc({"event": "x", "priority": 3}))
    assert d.meta["envelope_extra"] == {"priority": 3}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "JSON object"),
        ({"data": {}}, "event: field required"),
        ({"event": 5}, "event: must be a non-empty string"),
        ({"event": ""}, "event: must be a non-empty string"),
        ({"event": "x" * 201}, "longer than"),
        ({"event": "x", "timestamp": "yesterday"}, "not ISO 8601"),
        ({"event": "x", "timestamp": True}, "timestamp"),
        ({"event": "x", "id": ""}, "delivery id"),
    ],
)
def test_bad_envelopes_are_rejected_with_the_field(body: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        adapt("envelope", inc(body))


def test_unix_timestamps_are_normalised() -> None:
    [d] = adapt("envelope", inc({"event": "x", "timestamp": 1574457834497}))
    assert d.timestamp is not None and d.timestamp.startswith("2019-11-2")


def test_auto_and_raw() -> None:
    [d] = adapt("auto", inc({"event": "x", "data": 1}))
    assert d.type == "x" and d.data == 1
    [d] = adapt("auto", inc({"alerts": []}, default_type="alert"))
    assert d.type == "alert" and d.data == {"alerts": []}
    [d] = adapt("raw", inc([1], headers={"x-event-type": "custom"}))
    assert d.type == "custom"
    [d] = adapt("auto", inc({"event": "push"}, event_type="push-from-header"))
    assert d.type == "push-from-header"


def test_delivery_header_preference() -> None:
    assert header_delivery_id({"x-request-id": "r", "webhook-id": "w"}) == "w"
    assert header_delivery_id({"idempotency-key": "i", "webhook-id": "w"}) == "i"
    assert header_delivery_id({}) is None


def test_ids_are_ulids_sorted_by_time_and_floored_by_id_floor() -> None:
    import re

    from nethook.events import id_floor, new_id

    # Mid-millisecond instants: float rounding cannot put two of them in one millisecond.
    ids = [new_id((1_700_000_000_000 + i + 0.5) / 1000) for i in range(2000)]
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # one id per millisecond here: time order is id order
    # The time part of a known instant (the ULID spec's example: 1469918176385 ms).
    assert new_id(1469918176.385)[:10] == "01ARYZ6S41"
    floor = id_floor(1_700_000_000.5)
    assert floor <= new_id(1_700_000_000.5) and floor > new_id(1_700_000_000.499)
    assert floor.endswith("0" * 16) and len(floor) == 26
