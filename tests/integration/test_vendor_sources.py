"""Monitoring systems and controllers posting to nethook over HTTP (issue part 5/7), each
with its own authentication and ``format:``; rules match on ``on: {source, type}``.

* Alertmanager v4 (bearer): the vector with two alerts makes two ``alert`` events; a repeat
  notification is a duplicate. With Debian's ``prometheus-alertmanager`` installed, a real
  Alertmanager is pointed at nethook with bearer auth and an alert is posted to its API.
* Catalyst Center (basic), Meraki (sharedSecret in the body, never stored), GitHub
  (X-Hub-Signature-256), Standard Webhooks (signed with the ``standardwebhooks`` package).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from conftest import TOKEN, VECTORS, Server, base_config, free_port, require_service, wait_port

pytestmark = pytest.mark.integration

AM_TOKEN = "alertmanager-bearer-2b7e9c41d05f"
CC_PASSWORD = "catalyst-basic-pw-8e3a61f0"
GH_SECRET = "github-hook-secret-41c9e7d2a6"
SW_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-0123").decode()
MERAKI = json.loads((VECTORS / "meraki_alert.json").read_text())
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

SOURCES: dict[str, Any] = {
    "default": {"auth": {"type": "token", "secret": TOKEN}},
    "alertmanager": {"format": "alertmanager", "auth": {"type": "bearer", "token": AM_TOKEN}},
    "catalyst": {
        "format": "catalyst_center",
        "auth": {"type": "basic", "username": "dnac", "secret": CC_PASSWORD},
    },
    "meraki": {"format": "meraki", "auth": {"type": "meraki", "secret": MERAKI["sharedSecret"]}},
    "github": {"format": "github", "auth": {"type": "github", "secret": GH_SECRET}},
    "sw": {
        "format": "standard-webhooks",
        "auth": {"type": "standard-webhooks", "secret": SW_SECRET},
    },
}


def _log_rule(name: str, source: str, type_: str, when: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": name,
        "on": {"source": source, "type": type_},
        "do": [{"log": {"message": f"{name}: {{{{ event.type }}}}"}}],
    }
    if when:
        rule["when"] = when
    return rule


RULES = [
    _log_rule(
        "alert interface down", "alertmanager", "alert", "event.data.alertname == 'InterfaceDown'"
    ),
    _log_rule("assurance issue", "catalyst", "NETWORK-NON-FABRIC_WIRED-1-251"),
    _log_rule("meraki port", "meraki", "port_status_change"),
    _log_rule("github push", "github", "push"),
    _log_rule("sw invoice", "sw", "invoice.paid"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("vendors")
    port = free_port()
    cfg = base_config(workdir, port, sources=SOURCES, rules=RULES)
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()


def _events(srv: Server, source: str) -> list[dict[str, Any]]:
    rows = srv.db_rows(
        "SELECT id, type, delivery_id, data FROM events WHERE source = ? ORDER BY seq", (source,)
    )
    return [dict(r) | {"data": json.loads(r["data"])} for r in rows]


def _ran(srv: Server, event_id: str, timeout: float = 15) -> list[str]:
    """Rules whose actions ran for the event (waits for the dispatcher)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = srv.db_rows(
            "SELECT rule FROM action_runs WHERE event_id = ? AND status = 'succeeded'",
            (event_id,),
        )
        if rows:
            return [r["rule"] for r in rows]
        time.sleep(0.1)
    return []


def _post(srv: Server, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    headers = {"Content-Type": "application/json", **headers}
    return httpx.post(f"{srv.url}{path}", content=body, headers=headers, timeout=10)


# --------------------------------------------------------------------------- alertmanager


def test_alertmanager_vector_two_alerts_two_events(server: Server) -> None:
    body = (VECTORS / "alertmanager_v4.json").read_bytes()
    bearer = {"Authorization": f"Bearer {AM_TOKEN}"}
    assert _post(server, "/hooks/alertmanager", body, {}).status_code == 401
    first = _post(server, "/hooks/alertmanager", body, bearer)
    assert first.status_code == 202, first.text
    assert len(first.json()["ids"]) == 2
    events = _events(server, "alertmanager")
    assert [e["type"] for e in events] == ["alert", "alert"]
    assert [e["data"]["device"] for e in events] == ["r1.example", "r2.example"]
    assert [e["data"]["labels"]["ifName"] for e in events] == [
        "GigabitEthernet2",
        "GigabitEthernet3",
    ]
    # Alertmanager re-sends a firing group every repeat_interval: duplicates, not new work.
    again = _post(server, "/hooks/alertmanager", body, bearer)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(_events(server, "alertmanager")) == 2
    for event in events:
        assert _ran(server, event["id"]) == ["alert interface down"]


@pytest.fixture
def alertmanager(server: Server, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager whose webhook receiver is nethook, with bearer auth."""
    if ALERTMANAGER_BIN is None:
        require_service("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
    assert ALERTMANAGER_BIN is not None
    port = free_port()
    config = {
        "route": {
            "receiver": "nethook",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "nethook",
                "webhook_configs": [
                    {
                        "url": f"{server.url}/hooks/alertmanager",
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials": AM_TOKEN}
                        },
                    }
                ],
            }
        ],
    }
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            ALERTMANAGER_BIN,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: one instance on loopback
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port("127.0.0.1", port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_real_alertmanager_posts_to_nethook(server: Server, alertmanager: str) -> None:
    run = uuid.uuid4().hex[:8]
    alerts = [
        {
            "labels": {
                "alertname": "InterfaceDown",
                "instance": f"{name}.lab:161",
                "ifName": "GigabitEthernet1",
                "severity": "critical",
                "run": run,
            },
            "annotations": {"summary": f"GigabitEthernet1 down on {name}"},
        }
        for name in ("edge1", "edge2")
    ]
    resp = httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts, timeout=10)
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 30
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        mine = [e for e in _events(server, "alertmanager") if e["data"]["labels"].get("run") == run]
        if len(mine) >= 2:
            break
        time.sleep(0.2)
    assert sorted(e["data"]["device"] for e in mine) == ["edge1.lab", "edge2.lab"]
    for event in mine:
        assert event["data"]["status"] == "firing"
        assert event["data"]["receiver"] == "nethook"
        assert len(event["data"]["fingerprint"]) == 16
        assert _ran(server, event["id"]) == ["alert interface down"]


# --------------------------------------------------------------------------- controllers


def test_catalyst_center_basic_auth(server: Server) -> None:
    body = (VECTORS / "catalyst_center_issue.json").read_bytes()
    basic = base64.b64encode(f"dnac:{CC_PASSWORD}".encode()).decode()
    bad = base64.b64encode(b"dnac:nope").decode()
    assert (
        _post(server, "/hooks/catalyst", body, {"Authorization": f"Basic {bad}"}).status_code == 401
    )
    resp = _post(server, "/hooks/catalyst", body, {"Authorization": f"Basic {basic}"})
    assert resp.status_code == 202, resp.text
    (event,) = _events(server, "catalyst")
    assert event["type"] == "NETWORK-NON-FABRIC_WIRED-1-251"
    assert event["delivery_id"] == "ea6e28c5-b7f2-43a4-9937-def73771c5ef"
    assert event["data"]["severity"] == 1 and event["data"]["device"] == "10.93.141.17"
    assert _ran(server, event["id"]) == ["assurance issue"]
    dup = _post(server, "/hooks/catalyst", body, {"Authorization": f"Basic {basic}"})
    assert dup.status_code == 200 and dup.json()["duplicate"] is True


def test_meraki_shared_secret_checked_and_never_stored(server: Server) -> None:
    wrong = dict(MERAKI, sharedSecret="not-the-secret")
    assert _post(server, "/hooks/meraki", json.dumps(wrong).encode(), {}).status_code == 401
    resp = _post(server, "/hooks/meraki", json.dumps(MERAKI).encode(), {})
    assert resp.status_code == 202, resp.text
    (event,) = _events(server, "meraki")
    assert (event["type"], event["delivery_id"]) == ("port_status_change", "0000000000000001")
    assert event["data"]["device"] == "MS-Access-1"
    assert _ran(server, event["id"]) == ["meraki port"]
    raw = server.db_rows("SELECT data, meta FROM events WHERE source = 'meraki'")
    assert all(
        MERAKI["sharedSecret"].encode() not in bytes(r["data"]) + bytes(r["meta"]) for r in raw
    )


def test_github_signature_event_type_and_delivery(server: Server) -> None:
    body = json.dumps({"ref": "refs/heads/main", "commits": [{"id": "abc"}]}).encode()
    sig = "sha256=" + hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    delivery = str(uuid.uuid4())
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert _post(server, "/hooks/github", body, forged).status_code == 401
    resp = _post(server, "/hooks/github", body, {**headers, "X-Hub-Signature-256": sig})
    assert resp.status_code == 202, resp.text
    (event,) = _events(server, "github")
    assert (event["type"], event["delivery_id"]) == ("push", delivery)
    assert event["data"]["ref"] == "refs/heads/main"
    assert _ran(server, event["id"]) == ["github push"]


def test_standard_webhooks_type_from_body(server: Server) -> None:
    payload = {"type": "invoice.paid", "timestamp": "2026-11-30T06:20:39Z", "data": {"id": "inv_9"}}
    body = json.dumps(payload)
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = time.time()
    signature = Webhook(SW_SECRET).sign(msg_id, datetime.fromtimestamp(now, UTC), body)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    resp = _post(server, "/hooks/sw", body.encode(), headers)
    assert resp.status_code == 202, resp.text
    (event,) = _events(server, "sw")
    assert (event["type"], event["delivery_id"], event["data"]) == (
        "invoice.paid",
        msg_id,
        {"id": "inv_9"},
    )
    assert _ran(server, event["id"]) == ["sw invoice"]
    tampered = body.replace("inv_9", "inv_0").encode()
    assert _post(server, "/hooks/sw", tampered, headers).status_code == 401
