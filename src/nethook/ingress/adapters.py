"""Adapters: a sender's payload becomes one or more event drafts. Pure functions, no I/O.

Chosen per source with ``format:``. ``envelope`` is the generic ``{event, timestamp, source,
data}`` shape; ``raw`` keeps any JSON as the event data; ``auto`` picks ``envelope`` when the
body looks like one. Vendor formats (Alertmanager, Catalyst Center, Meraki, GitHub, Standard
Webhooks) register here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events import EventDraft
from ..exceptions import NethookError

MAX_TYPE_LEN = 200
MAX_DELIVERY_ID_LEN = 200
# Headers a sender uses to name a delivery, in order of preference.
DELIVERY_HEADERS = ("idempotency-key", "webhook-id", "x-github-delivery", "x-request-id")


class PayloadError(NethookError):
    """The body is valid JSON but not the shape this source expects (answered with 400)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One authenticated, parsed request, as adapters see it."""

    source: str
    payload: Any
    headers: Mapping[str, str]
    meta: dict[str, Any] = field(default_factory=dict)
    delivery_id: str | None = None
    event_type: str | None = None
    default_type: str | None = None


Adapter = Callable[[Incoming], list[EventDraft]]


def header_delivery_id(headers: Mapping[str, str]) -> str | None:
    for name in DELIVERY_HEADERS:
        value = headers.get(name)
        if value:
            return _clip_id(value, name)
    return None


def _clip_id(value: Any, where: str) -> str:
    text = str(value).strip()
    if not text or len(text) > MAX_DELIVERY_ID_LEN:
        raise PayloadError(f"{where}: a delivery id must be 1 to {MAX_DELIVERY_ID_LEN} characters")
    return text


def _check_type(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{where}: must be a non-empty string")
    if len(value) > MAX_TYPE_LEN:
        raise PayloadError(f"{where}: longer than {MAX_TYPE_LEN} characters")
    return value


def _check_timestamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Unix seconds (or milliseconds, as some controllers send) are normalised to ISO 8601.
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds).astimezone().isoformat()
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError("timestamp: out of range") from exc
    if not isinstance(value, str):
        raise PayloadError("timestamp: must be an ISO 8601 string or unix seconds")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise PayloadError(f"timestamp: not ISO 8601: {value[:64]!r}") from exc
    return value


def envelope(inc: Incoming) -> list[EventDraft]:
    """``{"event": type, "timestamp": ..., "source": sender, "data": {...}, "id": ...}``."""
    body = inc.payload
    if not isinstance(body, dict):
        raise PayloadError("body must be a JSON object with an 'event' field")
    if "event" not in body:
        raise PayloadError("event: field required (the event type, e.g. 'joke_request')")
    etype = _check_type(body["event"], "event")
    meta = dict(inc.meta)
    sender = body.get("source")
    if sender is not None:
        meta["sender"] = _check_type(sender, "source")
    extra = {
        k: v for k, v in body.items() if k not in ("event", "timestamp", "source", "data", "id")
    }
    if extra:
        meta["envelope_extra"] = extra  # kept, not dropped: nothing the sender sent is lost
    delivery = inc.delivery_id
    if delivery is None and body.get("id") is not None:
        delivery = _clip_id(body["id"], "id")
    return [
        EventDraft(
            source=inc.source,
            type=etype,
            data=body.get("data", {}),
            timestamp=_check_timestamp(body.get("timestamp")),
            delivery_id=delivery,
            meta=meta,
        )
    ]


def raw(inc: Incoming) -> list[EventDraft]:
    """Any JSON document as the event's data; the type comes from the sender or the source."""
    etype = inc.event_type or inc.headers.get("x-event-type") or inc.default_type or "webhook"
    return [
        EventDraft(
            source=inc.source,
            type=_check_type(etype, "event type"),
            data=inc.payload,
            delivery_id=inc.delivery_id,
            meta=dict(inc.meta),
        )
    ]


def auto(inc: Incoming) -> list[EventDraft]:
    body = inc.payload
    if isinstance(body, dict) and isinstance(body.get("event"), str) and inc.event_type is None:
        return envelope(inc)
    return raw(inc)


ADAPTERS: dict[str, Adapter] = {"envelope": envelope, "raw": raw, "auto": auto}


def adapt(fmt: str, inc: Incoming) -> list[EventDraft]:
    """Run the adapter registered for ``fmt``."""
    try:
        adapter = ADAPTERS[fmt]
    except KeyError:
        raise PayloadError(f"unknown format {fmt!r}") from None
    return adapter(inc)
