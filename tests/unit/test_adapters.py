"""Vendor adapters (issue part 5/7) on the shared vectors: pure functions, no server.

Alertmanager v4, Catalyst Center, Meraki, GitHub, Standard Webhooks, syslog-over-HTTP; and
the generic envelope/raw/auto adapters still behave as before.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from conftest import VECTORS
from nethook.ingress.adapters import ADAPTERS, Incoming, PayloadError, adapt


def _vector(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def _inc(payload: Any, **kw: Any) -> Incoming:
    kw.setdefault("headers", {})
    return Incoming(source=kw.pop("source", "src"), payload=payload, **kw)


def test_registry_names() -> None:
    for name in (
        "envelope",
        "raw",
        "auto",
        "alertmanager",
        "catalyst_center",
        "meraki",
        "github",
        "standard-webhooks",
        "syslog",
    ):
        assert name in ADAPTERS


# --------------------------------------------------------------------------- alertmanager


def test_alertmanager_two_alerts_two_events() -> None:
    body = _vector("alertmanager_v4.json")
    drafts = adapt("alertmanager", _inc(body, meta={"client": "10.0.0.9"}))
    assert len(drafts) == 2
    first, second = drafts
    assert {d.type for d in drafts} == {"alert"}
    assert first.data["status"] == "firing"
    assert first.data["alertname"] == "InterfaceDown"
    assert first.data["labels"]["instance"] == "r1.example:161"
    assert first.data["annotations"] == {"summary": "GigabitEthernet2 down on r1"}
    assert first.data["fingerprint"] == "4c1f3a9e0b7d2a11"
    assert (first.data["device"], first.data["interface"]) == ("r1.example", "GigabitEthernet2")
    assert (second.data["device"], second.data["interface"]) == ("r2.example", "GigabitEthernet3")
    assert first.data["receiver"] == "nethook"
    assert first.timestamp == "2026-11-30T09:12:03.201Z"
    assert first.meta == {"client": "10.0.0.9"}
    assert first.delivery_id and second.delivery_id and first.delivery_id != second.delivery_id
    assert first.delivery_id.startswith("4c1f3a9e0b7d2a11:firing:")


def test_alertmanager_delivery_ids() -> None:
    body = _vector("alertmanager_v4.json")
    ids = [d.delivery_id for d in adapt("alertmanager", _inc(body))]
    # A repeat notification of the same firing alerts: the same ids (deduplicated).
    assert [d.delivery_id for d in adapt("alertmanager", _inc(copy.deepcopy(body)))] == ids
    # Resolved: a new event for each alert.
    resolved = copy.deepcopy(body)
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
    r_ids = [d.delivery_id for d in adapt("alertmanager", _inc(resolved))]
    assert set(r_ids).isdisjoint(ids)
    # Firing again later (a new startsAt): new events, not duplicates of the first firing.
    again = copy.deepcopy(body)
    for alert in again["alerts"]:
        alert["startsAt"] = "2026-12-01T00:00:00Z"
    assert set(d.delivery_id for d in adapt("alertmanager", _inc(again))).isdisjoint(ids)
    # Another group (route) delivering the same alert: its own id.
    other = copy.deepcopy(body)
    other["groupKey"] = '{}:{alertname="Other"}'
    assert set(d.delivery_id for d in adapt("alertmanager", _inc(other))).isdisjoint(ids)


def test_alertmanager_edge_cases() -> None:
    body = _vector("alertmanager_v4.json")
    assert adapt("alertmanager", _inc({**body, "alerts": []})) == []
    with pytest.raises(PayloadError, match="version"):
        adapt("alertmanager", _inc({**body, "version": "3"}))
    with pytest.raises(PayloadError, match="alerts"):
        adapt("alertmanager", _inc({"version": "4"}))
    with pytest.raises(PayloadError):
        adapt("alertmanager", _inc([1, 2]))
    no_fp = copy.deepcopy(body)
    del no_fp["alerts"][0]["fingerprint"]
    no_fp["alerts"][0]["startsAt"] = "not a time"
    draft = adapt("alertmanager", _inc(no_fp))[0]
    assert len(draft.data["fingerprint"]) == 16  # derived from the labels
    assert draft.timestamp is None  # a bad vendor timestamp is not a reason to refuse
    v6 = copy.deepcopy(body)
    v6["alerts"][0]["labels"]["instance"] = "[2001:db8::1]:9100"
    assert adapt("alertmanager", _inc(v6))[0].data["device"] == "2001:db8::1"


# --------------------------------------------------------------------------- catalyst center


def test_catalyst_center_issue() -> None:
    body = _vector("catalyst_center_issue.json")
    (draft,) = adapt("catalyst_center", _inc(body))
    assert draft.type == "NETWORK-NON-FABRIC_WIRED-1-251"
    assert draft.delivery_id == "ea6e28c5-b7f2-43a4-9937-def73771c5ef"
    assert draft.data["severity"] == 1
    assert draft.data["details"]["Assurance Issue Priority"] == "P1"
    assert draft.data["device"] == "10.93.141.17"
    assert draft.data["summary"].startswith("Interface GigabitEthernet1/0/3 is Down")
    assert draft.timestamp is not None and draft.timestamp.startswith("2019-11-2")
    # Nothing of the vendor payload is lost.
    assert {k: draft.data[k] for k in body} == body


def test_catalyst_center_list_and_errors() -> None:
    body = _vector("catalyst_center_issue.json")
    other = {**body, "instanceId": "other-id", "eventId": "NETWORK-DEVICES-3-206"}
    drafts = adapt("catalyst_center", _inc([body, other]))
    assert [d.delivery_id for d in drafts] == [body["instanceId"], "other-id"]
    with pytest.raises(PayloadError, match="eventId"):
        adapt("catalyst_center", _inc({k: v for k, v in body.items() if k != "eventId"}))


# --------------------------------------------------------------------------- meraki


def test_meraki_alert() -> None:
    body = _vector("meraki_alert.json")
    (draft,) = adapt("meraki", _inc(copy.deepcopy(body)))
    assert draft.type == "port_status_change"
    assert draft.delivery_id == "0000000000000001"
    assert draft.timestamp == "2026-11-30T06:15:33.504142Z"
    assert draft.data["device"] == "MS-Access-1"
    assert draft.data["alertData"]["statusChange"]["to"] == "disconnected"
    # Even when the verifier did not remove it (another auth type), the secret is not kept.
    assert "sharedSecret" not in draft.data
    assert "meraki-shared-secret" not in json.dumps(draft.data)


def test_meraki_needs_alert_type() -> None:
    with pytest.raises(PayloadError, match="alertTypeId"):
        adapt("meraki", _inc({"alertId": "1"}))


# --------------------------------------------------------------------------- github, standard webhooks


def test_github_event_type_and_delivery() -> None:
    body = {"action": "opened", "pull_request": {"number": 7}}
    (draft,) = adapt(
        "github", _inc(body, event_type="pull_request", delivery_id="72d3162e-cc78-11e3")
    )
    assert (draft.type, draft.delivery_id, draft.data) == (
        "pull_request",
        "72d3162e-cc78-11e3",
        body,
    )
    # Without the verifier's help (auth type none), the header still names the type.
    (plain,) = adapt("github", _inc({"zen": "hi"}, headers={"x-github-event": "ping"}))
    assert plain.type == "ping"
    with pytest.raises(PayloadError, match="X-GitHub-Event"):
        adapt("github", _inc(body))


def test_standard_webhooks_type_from_body() -> None:
    body = {
        "type": "invoice.paid",
        "timestamp": "2026-11-30T06:20:39Z",
        "data": {"id": "inv_1", "amount": 5},
        "extra": 1,
    }
    (draft,) = adapt("standard-webhooks", _inc(body, delivery_id="msg_2Kd"))
    assert draft.type == "invoice.paid"
    assert draft.data == {"id": "inv_1", "amount": 5}
    assert draft.delivery_id == "msg_2Kd"
    assert draft.timestamp == "2026-11-30T06:20:39Z"
    assert draft.meta["payload_extra"] == {"extra": 1}
    with pytest.raises(PayloadError, match="type"):
        adapt("standard-webhooks", _inc({"data": {}}))


# --------------------------------------------------------------------------- syslog over HTTP


def test_syslog_adapter_shapes() -> None:
    line = "*Nov 30 09:12:03.201: %LINK-3-UPDOWN: Interface Gi2, changed state to down"
    envelope = {
        "event": "syslog",
        "source": "r1",
        "data": {"message": line, "applet": "nethook"},
    }
    (draft,) = adapt("syslog", _inc(envelope))
    assert draft.type == "syslog"
    assert (draft.data["host"], draft.data["device"]) == ("r1", "r1")
    assert (draft.data["interface"], draft.data["state"]) == ("Gi2", "down")
    assert draft.data["extra"] == {"applet": "nethook"}
    assert adapt("syslog", _inc(line))[0].data["mnemonic"] == "LINK-3-UPDOWN"
    many = adapt("syslog", _inc([{"message": line, "host": "r2"}, "garbage"]))
    assert [d.data["format"] for d in many] == ["cisco", "unparsed"]
    assert many[0].data["device"] == "r2"
    with pytest.raises(PayloadError):
        adapt("syslog", _inc({"host": "r1"}))
    with pytest.raises(PayloadError):
        adapt("syslog", _inc([line] * 1001))


# --------------------------------------------------------------------------- the generic ones


def test_generic_adapters_unchanged() -> None:
    env = {"event": "joke_request", "data": {"user_id": "u"}, "id": "d-1"}
    (draft,) = adapt("envelope", _inc(env))
    assert (draft.type, draft.data, draft.delivery_id) == ("joke_request", {"user_id": "u"}, "d-1")
    assert adapt("auto", _inc(env))[0].type == "joke_request"
    (raw,) = adapt("raw", _inc({"a": 1}, default_type="thing"))
    assert (raw.type, raw.data) == ("thing", {"a": 1})
    with pytest.raises(PayloadError, match="unknown format"):
        adapt("nope", _inc({}))
