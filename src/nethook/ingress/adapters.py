"""Adapters: a sender's payload becomes one or more event drafts. Pure functions, no I/O.

Chosen per source with ``format:``. ``envelope`` is the generic ``{event, timestamp, source,
data}`` shape; ``raw`` keeps any JSON as the event data; ``auto`` picks ``envelope`` when the
body looks like one. Vendor formats: ``alertmanager``, ``catalyst_center``, ``meraki``,
``github``, ``standard-webhooks``, and ``syslog`` (syslog text posted over HTTP, as the EEM
guestshell script does). Authentication is not done here: the source's verifier has already
checked the request (and removed Meraki's ``sharedSecret``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ..events import EventDraft
from ..exceptions import NethookError
from . import syslog_parser

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


# --------------------------------------------------------------------------- vendors


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PayloadError(f"body must be a JSON object ({what})")
    return body


def _safe_timestamp(value: Any) -> str | None:
    """A sender's timestamp if it is usable, else None (the store then uses receipt time).

    Vendor timestamps describe the sender's event; a malformed one is no reason to refuse
    the delivery, unlike the envelope's, which the sender chose to give.
    """
    try:
        return _check_timestamp(value)
    except PayloadError:
        return None


def _host_part(instance: Any) -> str | None:
    """``"r1.example:161"`` -> ``"r1.example"``; ``"[2001:db8::1]:9100"`` -> ``"2001:db8::1"``."""
    if not isinstance(instance, str) or not instance:
        return None
    if instance.startswith("["):
        return instance[1:].partition("]")[0] or None
    host, colon, port = instance.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host
    return instance


def alertmanager(inc: Incoming) -> list[EventDraft]:
    """Prometheus Alertmanager webhook (version 4): one ``alert`` event per alert.

    The delivery id is a digest of groupKey, fingerprint, status and startsAt: Alertmanager
    re-sends a still-firing group every ``repeat_interval`` (a duplicate, not a new event),
    while the same alert firing again after it resolved has a new startsAt (a new event).
    """
    body = _object(inc.payload, "an Alertmanager notification")
    version = body.get("version")
    if version is not None and str(version) != "4":
        raise PayloadError(f"version: Alertmanager webhook version 4 expected, got {version!r}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: a list of alerts is required")
    group_key = str(body.get("groupKey", ""))
    common = {
        "receiver": body.get("receiver"),
        "group_key": body.get("groupKey"),
        "group_labels": body.get("groupLabels") or {},
        "external_url": body.get("externalURL"),
    }
    drafts = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(f"alerts[{i}]: must be an object")
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            raise PayloadError(f"alerts[{i}]: labels and annotations must be objects")
        status = str(alert.get("status") or body.get("status") or "firing")
        fingerprint = (
            alert.get("fingerprint")
            or hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        )
        starts = alert.get("startsAt")
        digest = hashlib.sha256(
            "\x00".join((group_key, str(fingerprint), status, str(starts))).encode()
        ).hexdigest()[:20]
        data = {
            "status": status,
            "alertname": labels.get("alertname"),
            "severity": labels.get("severity"),
            "labels": labels,
            "annotations": annotations,
            "fingerprint": fingerprint,
            "starts_at": starts,
            "ends_at": alert.get("endsAt"),
            "generator_url": alert.get("generatorURL"),
            # Names a rule uses to act on the alerting box; the inventory resolves them.
            "instance": labels.get("instance"),
            "device": labels.get("device") or _host_part(labels.get("instance")),
            "interface": labels.get("ifName") or labels.get("interface"),
            **common,
        }
        drafts.append(
            EventDraft(
                source=inc.source,
                type="alert",
                data=data,
                timestamp=_safe_timestamp(starts),
                delivery_id=_clip_id(f"{str(fingerprint)[:64]}:{status[:16]}:{digest}", "alert"),
                meta=dict(inc.meta),
            )
        )
    return drafts


def catalyst_center(inc: Incoming) -> list[EventDraft]:
    """Cisco Catalyst Center (DNA Center) event notifications: type from ``eventId``.

    The payload stays whole as the data (nothing is lost); ``device`` and ``summary`` are
    added from the assurance details when the payload does not have them. Some releases
    post a list of events: each becomes one event.
    """
    items = inc.payload if isinstance(inc.payload, list) else [inc.payload]
    drafts = []
    for i, item in enumerate(items):
        body = _object(item, f"a Catalyst Center event (item {i})")
        etype = _check_type(body.get("eventId"), "eventId")
        raw_details = body.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        data = dict(body)
        device = details.get("Device") or details.get("Device IP") or details.get("deviceName")
        data.setdefault("device", device)
        data.setdefault("summary", details.get("Assurance Issue Name") or body.get("name"))
        instance = body.get("instanceId")
        drafts.append(
            EventDraft(
                source=inc.source,
                type=etype,
                data=data,
                timestamp=_safe_timestamp(body.get("timestamp")),
                delivery_id=_clip_id(instance, "instanceId") if instance else inc.delivery_id,
                meta=dict(inc.meta),
            )
        )
    return drafts


def meraki(inc: Incoming) -> list[EventDraft]:
    """Cisco Meraki Dashboard alerts: ``alertTypeId`` is the type, ``alertId`` the delivery id.

    The ``meraki`` verifier has removed ``sharedSecret``; it is removed here too, so a source
    that pairs this format with another auth scheme still never stores it.
    """
    body = dict(_object(inc.payload, "a Meraki alert"))
    body.pop("sharedSecret", None)
    etype = _check_type(body.get("alertTypeId"), "alertTypeId")
    body.setdefault("device", body.get("deviceName") or body.get("deviceSerial"))
    alert_id = body.get("alertId")
    return [
        EventDraft(
            source=inc.source,
            type=etype,
            data=body,
            timestamp=_safe_timestamp(body.get("occurredAt") or body.get("sentAt")),
            delivery_id=_clip_id(alert_id, "alertId") if alert_id else inc.delivery_id,
            meta=dict(inc.meta),
        )
    ]


def github(inc: Incoming) -> list[EventDraft]:
    """GitHub webhooks: ``X-GitHub-Event`` is the type, ``X-GitHub-Delivery`` the delivery id."""
    etype = inc.event_type or inc.headers.get("x-github-event")
    if not etype:
        raise PayloadError("X-GitHub-Event: header required")
    return [
        EventDraft(
            source=inc.source,
            type=_check_type(etype, "X-GitHub-Event"),
            data=inc.payload,
            delivery_id=inc.delivery_id,
            meta=dict(inc.meta),
        )
    ]


def standard_webhooks(inc: Incoming) -> list[EventDraft]:
    """Standard Webhooks payloads ``{type, timestamp, data}``; the webhook-id is the delivery id."""
    body = _object(inc.payload, "a Standard Webhooks payload")
    etype = _check_type(body.get("type"), "type")
    meta = dict(inc.meta)
    extra = {k: v for k, v in body.items() if k not in ("type", "timestamp", "data")}
    if extra:
        meta["payload_extra"] = extra
    return [
        EventDraft(
            source=inc.source,
            type=etype,
            data=body.get("data", {}),
            timestamp=_safe_timestamp(body.get("timestamp")),
            delivery_id=inc.delivery_id,
            meta=meta,
        )
    ]


MAX_SYSLOG_MESSAGES = 1000


def syslog(inc: Incoming) -> list[EventDraft]:
    """Syslog text posted over HTTP (the EEM guestshell script): ``syslog`` events.

    Accepts a line as a JSON string, ``{"message": line, "host": name, ...}``, the envelope
    ``{"event": ..., "source": host, "data": {"message": ...}}`` that the EEM script sends,
    or a list of these. The line is parsed like one received by the syslog listener; other
    keys of the object are kept under ``data.extra``. ``device`` is the given host (the
    inventory is not consulted on the HTTP path).
    """
    items = inc.payload if isinstance(inc.payload, list) else [inc.payload]
    if len(items) > MAX_SYSLOG_MESSAGES:
        raise PayloadError(f"at most {MAX_SYSLOG_MESSAGES} messages per request")
    drafts = []
    for i, item in enumerate(items):
        host: Any = None
        extra: dict[str, Any] = {}
        if isinstance(item, dict) and isinstance(item.get("data"), dict) and "event" in item:
            host = item.get("source")
            item = item["data"]
        if isinstance(item, dict):
            line = item.get("message", item.get("msg"))
            host = item.get("host") or host
            extra = {k: v for k, v in item.items() if k not in ("message", "msg", "host")}
        else:
            line = item
        if not isinstance(line, str):
            raise PayloadError(f"item {i}: a syslog message (string) is required")
        if host is not None and not isinstance(host, str):
            raise PayloadError(f"item {i}: host must be a string")
        msg = syslog_parser.parse(line)
        data = syslog_parser.event_data(msg, device=host or msg.host)
        if host:
            data["host"] = host
        if extra:
            data["extra"] = extra
        drafts.append(
            EventDraft(
                source=inc.source,
                type=inc.default_type or "syslog",
                data=data,
                # One request, several lines: a sender's delivery id names the first only.
                delivery_id=inc.delivery_id if i == 0 else None,
                meta=dict(inc.meta),
            )
        )
    return drafts


ADAPTERS: dict[str, Adapter] = {
    "envelope": envelope,
    "raw": raw,
    "auto": auto,
    "alertmanager": alertmanager,
    "catalyst_center": catalyst_center,
    "meraki": meraki,
    "github": github,
    "standard-webhooks": standard_webhooks,
    "syslog": syslog,
}


def adapt(fmt: str, inc: Incoming) -> list[EventDraft]:
    """Run the adapter registered for ``fmt``."""
    try:
        adapter = ADAPTERS[fmt]
    except KeyError:
        raise PayloadError(f"unknown format {fmt!r}") from None
    return adapter(inc)
