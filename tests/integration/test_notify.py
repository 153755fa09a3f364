"""notify through the real dispatcher and SQLite store, against local HTTP(S) targets.

Targets are pytest-httpserver (or small stdlib servers where a test needs IPv6 or TLS) on
loopback, so the configs that should reach them set ``allow_private: true``; the SSRF tests
run the same targets with it off and prove that no request arrives.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook
from werkzeug import Request, Response

from conftest import require_service
from nethook import config as config_mod
from nethook.engine.dispatcher import Dispatcher
from nethook.events import Event, EventDraft, EventStatus
from nethook.runtime import Runtime
from nethook.security.ssrf import SSRFRefused, guarded_client
from nethook.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SECRET = "whsec_" + base64.b64encode(b"notify-test-key-notify-test-key!").decode()


# --------------------------------------------------------------------------- harness


class Pipeline:
    """A SQLite store and a dispatcher with one rule for events of type ``alert``."""

    def __init__(self, tmp_path: Path, step: dict[str, Any], notify: dict[str, Any]) -> None:
        self.cfg = config_mod.from_dict(
            {
                "store": {
                    "url": f"sqlite:///{tmp_path / 's.db'}",
                    "data_dir": str(tmp_path / "d"),
                    "poll_interval": 0.05,
                },
                "sources": {"nms": {"auth": {"type": "none"}}},
                # backoff_max above Retry-After: the dispatcher caps the hint at backoff_max.
                "dispatcher": {
                    "backoff_base": 0.05,
                    "backoff_max": 5,
                    "max_attempts": 3,
                    "action_timeout": 5,
                },
                "notify": notify,
                "rules": [{"name": "page", "on": {"type": "alert"}, "do": [step]}],
            }
        )
        self.runtime = Runtime.build(self.cfg)
        self.store = SQLiteStore(tmp_path / "s.db")
        self.client = httpx.AsyncClient()
        self.disp = Dispatcher(self.store, self.cfg, lambda: self.runtime.rulebook, self.client)

    async def __aenter__(self) -> Pipeline:
        await self.store.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()
        await self.client.aclose()

    async def append(self, **data: Any) -> str:
        res = await self.store.append(EventDraft(source="nms", type="alert", data=data))
        return res.id

    async def run_once(self, **data: Any) -> Event:
        """Append one event and process it once (first attempt only)."""
        event_id = await self.append(**data)
        [event] = await self.store.claim(self.disp.owner, 1, 30)
        await self.disp.process(event)
        got = await self.store.get_event(event_id)
        assert got is not None
        return got

    async def until_done(self, event_id: str, timeout: float = 15.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = await self.store.get_event(event_id)
            assert ev is not None
            if ev.status not in (EventStatus.QUEUED, EventStatus.RUNNING):
                return ev
            await asyncio.sleep(0.05)
        raise TimeoutError(f"event {event_id} still pending")


ALLOW = {"allow_private": True, "secret": SECRET}


def body_of(req: Request) -> Any:
    return orjson.loads(req.get_data())


# --------------------------------------------------------------------------- retries


async def test_503_with_retry_after_is_retried_no_sooner_and_succeeds(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    """Must show: a notify delivery survives a 503 from its target."""
    seen: list[tuple[float, bytes, dict[str, str]]] = []

    def handler(request: Request) -> Response:
        seen.append((time.monotonic(), request.get_data(), dict(request.headers)))
        if len(seen) == 1:
            return Response("busy", status=503, headers={"Retry-After": "1"})
        return Response('{"ok": true}', status=200, content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    step = {"notify": {"url": httpserver.url_for("/hook"), "body": {"dev": "{{ event.data.dev }}"}}}
    async with Pipeline(tmp_path, step, ALLOW) as p:
        p.disp.start()
        try:
            event_id = await p.append(dev="r1")
            ev = await p.until_done(event_id)
        finally:
            await p.disp.stop()
        runs = await p.store.list_runs(event_id)

    assert ev.status is EventStatus.SUCCEEDED, ev.error
    assert len(seen) == 2
    gap = seen[1][0] - seen[0][0]
    # Retry-After: 1 against a 0.05 s backoff: the target's hint must win, not by much more.
    assert 1.0 <= gap < 3.0, gap
    assert [(r.attempt, str(r.status)) for r in runs] == [(1, "failed"), (2, "succeeded")]
    assert runs[0].transient and "HTTP 503 (Retry-After 1s)" in (runs[0].error or "")
    assert runs[1].output["status"] == 200
    # Both attempts carry a valid Standard Webhooks signature, under the same webhook-id
    # (so the receiver can drop a duplicate delivery).
    for _, body, headers in seen:
        assert Webhook(SECRET).verify(body, headers) == {"dev": "r1"}
    assert seen[0][2]["Webhook-Id"] == seen[1][2]["Webhook-Id"]


async def test_4xx_is_permanent_and_the_url_secret_stays_out_of_the_error(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/services/T0/B0/SECRETPART").respond_with_data(
        "invalid_payload", status=400
    )
    url = httpserver.url_for("/services/T0/B0/SECRETPART")
    async with Pipeline(
        tmp_path, {"notify": {"target": "slack", "url": url, "text": "x"}}, ALLOW
    ) as p:
        ev = await p.run_once()
    assert ev.status is EventStatus.DEAD
    assert ev.attempts == 1
    assert "HTTP 400: invalid_payload" in (ev.error or "")
    assert "SECRETPART" not in (ev.error or "")


# --------------------------------------------------------------------------- formats


async def test_generic_target_signature_verifies_with_standardwebhooks(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/in", method="POST").respond_with_data("ok")
    step = {
        "notify": {
            "url": httpserver.url_for("/in"),
            "body": {"device": "{{ event.data.dev }}", "n": "{{ event.data.n }}"},
            "headers": {"X-Tenant": "lab"},
        }
    }
    async with Pipeline(tmp_path, step, ALLOW) as p:
        ev = await p.run_once(dev="r2", n=3)
    assert ev.status is EventStatus.SUCCEEDED, ev.error
    [(req, _resp)] = httpserver.log
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Tenant"] == "lab"
    assert Webhook(SECRET).verify(req.get_data(), dict(req.headers)) == {"device": "r2", "n": 3}
    # A tampered body must not verify: the signature covers the exact bytes.
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(SECRET).verify(req.get_data() + b" ", dict(req.headers))


async def test_slack_teams_and_webex_shapes(tmp_path: Path, httpserver: HTTPServer) -> None:
    for path in ("/slack", "/teams", "/webex-hook", "/v1/messages"):
        httpserver.expect_request(path, method="POST").respond_with_json({"id": "m1"})
    steps = [
        {
            "notify": {
                "target": "slack",
                "url": httpserver.url_for("/slack"),
                "text": "{{ event.data.msg }}",
            }
        },
        {
            "notify": {
                "target": "teams",
                "url": httpserver.url_for("/teams"),
                "title": "Link down",
                "text": "{{ event.data.msg }}",
                "facts": {"device": "r1"},
            }
        },
        {
            "notify": {
                "target": "webex",
                "url": httpserver.url_for("/webex-hook"),
                "markdown": "**{{ event.data.msg }}**",
            }
        },
        {
            "notify": {
                "target": "webex",
                "url": httpserver.url_for("/v1/messages"),
                "room_id": "ROOM1",
                "token": "bot-token",
                "text": "{{ event.data.msg }}",
            }
        },
    ]
    got: dict[str, Request] = {}
    for i, step in enumerate(steps):
        async with Pipeline(tmp_path / str(i), step, {"allow_private": True}) as p:
            ev = await p.run_once(msg="Gi2 down")
        assert ev.status is EventStatus.SUCCEEDED, ev.error
        req = httpserver.log[-1][0]
        got[req.path] = req
    assert body_of(got["/slack"]) == {"text": "Gi2 down"}
    teams = body_of(got["/teams"])
    assert teams["type"] == "message"
    [att] = teams["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert att["content"]["type"] == "AdaptiveCard"
    assert [b["type"] for b in att["content"]["body"]] == ["TextBlock", "TextBlock", "FactSet"]
    assert att["content"]["body"][1]["text"] == "Gi2 down"
    assert body_of(got["/webex-hook"]) == {"markdown": "**Gi2 down**"}
    assert "Authorization" not in got["/webex-hook"].headers
    assert body_of(got["/v1/messages"]) == {"roomId": "ROOM1", "text": "Gi2 down"}
    assert got["/v1/messages"].headers["Authorization"] == "Bearer bot-token"
    # Chat targets are not signed (they authenticate by their URL or token).
    assert all("webhook-signature" not in r.headers for r in got.values())


# --------------------------------------------------------------------------- SSRF


class Counter:
    """A stdlib HTTP server on any address family that counts requests (and answers 200)."""

    def __init__(self, host: str, tls: ssl.SSLContext | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = family

        self.server = Server((host, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def v4() -> Iterator[Counter]:
    c = Counter("127.0.0.1")
    yield c
    c.close()


@pytest.fixture
def v6() -> Iterator[Counter]:
    try:
        c = Counter("::1")
    except OSError as exc:
        require_service("IPv6 loopback", str(exc))
    yield c
    c.close()


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),  # a name that resolves to loopback
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback (embedded IPv4 127.0.0.1)"),
        ("10.20.30.40", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
    ],
)
async def test_ssrf_guard_refuses_private_targets(
    tmp_path: Path, v4: Counter, v6: Counter, host: str, why: str
) -> None:
    port = v6.port if host == "[::1]" else v4.port
    step = {"notify": {"target": "slack", "url": f"http://{host}:{port}/hook", "text": "x"}}
    started = time.monotonic()
    async with Pipeline(tmp_path, step, {"allow_private": False}) as p:
        ev = await p.run_once()
    assert ev.status is EventStatus.DEAD  # permanent: refused once, not retried
    assert ev.attempts == 1
    assert f"{why} address" in (ev.error or "")
    assert "refusing to connect" in (ev.error or "") and "allow_private" in (ev.error or "")
    assert time.monotonic() - started < 3  # refused before any connection attempt
    assert v4.hits == [] and v6.hits == []


async def test_non_http_scheme_is_refused(tmp_path: Path) -> None:
    step = {"notify": {"url": "file:///etc/passwd", "text": "x"}}
    async with Pipeline(tmp_path, step, {"allow_private": True}) as p:
        ev = await p.run_once()
    assert ev.status is EventStatus.DEAD
    assert "scheme 'file' is not http or https" in (ev.error or "")


async def test_per_action_allow_private_overrides_the_config(tmp_path: Path, v4: Counter) -> None:
    url = f"http://localhost:{v4.port}/inside"
    step = {"notify": {"target": "slack", "url": url, "text": "x", "allow_private": True}}
    async with Pipeline(tmp_path, step, {"allow_private": False}) as p:
        ev = await p.run_once()
    assert ev.status is EventStatus.SUCCEEDED, ev.error
    assert v4.hits == ["/inside"]


async def test_guarded_tls_connects_by_address_but_verifies_the_host_name(tmp_path: Path) -> None:
    """The guard connects to the vetted IP; TLS must still check the certificate against
    the URL's host name (SNI), or connecting by address would weaken HTTPS."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    counter = Counter("127.0.0.1", tls=server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    try:
        async with guarded_client(allow_private=True, verify=client_ctx) as client:
            resp = await client.post(f"https://localhost:{counter.port}/tls", content=b"{}")
            assert resp.status_code == 200
            # Same server by address: the certificate does not name 127.0.0.1 -> refused.
            with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
                await client.post(f"https://127.0.0.1:{counter.port}/tls", content=b"{}")
        async with guarded_client(allow_private=False, verify=client_ctx) as client:
            with pytest.raises(SSRFRefused):
                await client.post(f"https://localhost:{counter.port}/tls", content=b"{}")
    finally:
        counter.close()
    assert counter.hits == ["/tls"]
