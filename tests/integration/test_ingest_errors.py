"""Ingress refusals and dedupe over real HTTP against one ``nethook serve`` subprocess.

Every refusal has its status and a JSON ``{"error", "detail"}`` body, stores nothing, never
echoes a token and is never a 5xx. Duplicate deliveries answer with the first event's id and
do not run the action again.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import TOKEN, VECTORS, Server, base_config, free_port, post_event

pytestmark = pytest.mark.integration

SEED: dict[str, Any] = json.loads((VECTORS / "seed_envelopes.json").read_text())
CAP = 1024
OTHER_TOKEN = "other-token-fedcba9876543210"
JOKE = {"id": "R7UfaahVfFd", "joke": "My dog used to chase people on a bike a lot.", "status": 200}


@pytest.fixture(scope="module")
def server(
    make_httpserver: HTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("ingest")
    port = free_port()
    cfg = base_config(
        workdir,
        port,
        apis={"dad_jokes": {"url": make_httpserver.url_for("/")}},
        sources={
            # POST /events reads the generic envelope, as the classic default source does.
            "default": {"format": "envelope", "auth": {"type": "token", "secret": TOKEN}},
            "other": {"auth": {"type": "token", "secret": OTHER_TOKEN}},
        },
    )
    # Keep base_config's generous rate limit (these tests send bursts); only the cap changes.
    cfg.setdefault("security", {})["max_payload_size"] = CAP
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()
    assert TOKEN not in srv.log() and OTHER_TOKEN not in srv.log()


@pytest.fixture(autouse=True)
def _settle_after(server: Server) -> Iterator[None]:
    yield
    server.wait_settled(15)


class Jokes:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.calls += 1
        return Response(json.dumps(JOKE), content_type="application/json")


@pytest.fixture
def jokes(httpserver: HTTPServer) -> Jokes:
    stand_in = Jokes()
    httpserver.expect_request("/", method="GET").respond_with_handler(stand_in)
    return stand_in


def headers(token: str | None = TOKEN, ctype: str | None = "application/json") -> dict[str, str]:
    h = {}
    if token is not None:
        h["X-Webhook-Token"] = token
    if ctype is not None:
        h["Content-Type"] = ctype
    return h


def send(server: Server, body: Any, path: str = "/events", **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", content=body, timeout=10, **kw)


def assert_refused(
    r: httpx.Response, status: int, code: str, sent_token: str | None = None
) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    for secret in (TOKEN, OTHER_TOKEN, sent_token):
        if secret:
            assert secret not in r.text
            assert all(secret not in v for v in r.headers.values())


def envelope_of_size(size: int) -> bytes:
    """A valid envelope of exactly ``size`` bytes."""
    base = {"event": "device_status_check", "data": {"pad": ""}}
    raw = json.dumps(base, separators=(",", ":")).encode()
    base["data"]["pad"] = "x" * (size - len(raw))
    out = json.dumps(base, separators=(",", ":")).encode()
    assert len(out) == size
    return out


# --------------------------------------------------------------------------- 5. refusals

BAD_BODIES = {
    "malformed_seed": SEED["malformed_body"].encode(),
    "truncated": b'{"event": "joke_request", "data": {',
    "not_utf8": b'{"event": "\xff\xfe"}',
    "empty": b"",
    "whitespace": b"  \n ",
}
NOT_ENVELOPES = {
    "array": [SEED["joke_request"]],
    "string": "joke_request",
    "number": 42,
    "no_event": {"timestamp": "2025-09-28T10:00:00Z", "data": {"user_id": "student123"}},
    "event_not_string": {"event": 7, "data": {}},
    "event_null": {"event": None},
    "event_empty": {"event": "  "},
    "event_too_long": {"event": "x" * 201},
    "bad_timestamp": {"event": "joke_request", "timestamp": "yesterday at noon"},
    "timestamp_object": {"event": "joke_request", "timestamp": {"at": 1}},
    "source_not_string": {"event": "joke_request", "source": ["a"]},
    "id_too_long": {"event": "joke_request", "id": "i" * 201},
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_malformed_json_is_400(server: Server, name: str) -> None:
    before = server.event_count()
    r = send(server, BAD_BODIES[name], headers=headers())
    assert_refused(r, 400, "malformed_json")
    assert server.event_count() == before


@pytest.mark.parametrize("name", list(NOT_ENVELOPES))
def test_json_that_is_not_an_envelope_is_400(server: Server, name: str) -> None:
    before = server.event_count()
    r = send(server, json.dumps(NOT_ENVELOPES[name]).encode(), headers=headers())
    assert_refused(r, 400, "invalid_payload")
    assert server.event_count() == before


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", None, "application/xml"]
)
def test_wrong_content_type_is_415(server: Server, ctype: str | None) -> None:
    before = server.event_count()
    body = (
        b"event=joke_request"
        if ctype and "form" in ctype
        else json.dumps(SEED["joke_request"]).encode()
    )
    r = send(server, body, headers=headers(ctype=ctype))
    if ctype is None:
        assert "content-type" not in r.request.headers
    assert_refused(r, 415, "unsupported_media_type")
    assert server.event_count() == before


def test_form_post_is_415(server: Server) -> None:
    before = server.event_count()
    r = httpx.post(
        f"{server.url}/events",
        data={"event": "joke_request"},
        headers={"X-Webhook-Token": TOKEN},
        timeout=10,
    )
    assert r.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert_refused(r, 415, "unsupported_media_type")
    assert server.event_count() == before


def test_json_suffix_content_type_is_accepted(server: Server) -> None:
    r = send(
        server,
        json.dumps(SEED["device_status_check"]).encode(),
        headers=headers(ctype="application/vnd.nethook+json; charset=utf-8"),
    )
    assert r.status_code == 202, r.text


def test_unknown_source_is_404(server: Server) -> None:
    before = server.event_count()
    r = send(
        server, json.dumps(SEED["joke_request"]).encode(), path="/hooks/nope", headers=headers()
    )
    assert_refused(r, 404, "unknown_source")
    assert server.event_count() == before


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/events", None),
        ("/events", "wrong-token-0000000000000000"),
        ("/events", TOKEN[:-1]),
        ("/events", TOKEN + "x"),
        ("/events", OTHER_TOKEN),  # another source's token is not this source's
        ("/hooks/other", TOKEN),
        ("/hooks/other", None),
    ],
    ids=[
        "missing",
        "wrong",
        "prefix",
        "longer",
        "other_source_token",
        "hooks_wrong",
        "hooks_missing",
    ],
)
def test_bad_token_is_401(server: Server, path: str, token: str | None) -> None:
    before = server.event_count()
    r = send(server, json.dumps(SEED["joke_request"]).encode(), path=path, headers=headers(token))
    assert_refused(r, 401, "unauthorized", sent_token=token)
    assert server.event_count() == before


def test_auth_is_checked_before_the_body(server: Server) -> None:
    # No token, wrong content type, malformed and oversized: the answer is still 401.
    r = send(server, b"{" * (CAP * 4), headers=headers(None, "text/plain"))
    assert_refused(r, 401, "unauthorized")


def test_payload_at_the_cap_is_accepted(server: Server) -> None:
    r = send(server, envelope_of_size(CAP), headers=headers())
    assert r.status_code == 202, r.text


def test_payload_over_the_cap_with_content_length_is_413(server: Server) -> None:
    before = server.event_count()
    body = envelope_of_size(CAP + 1)
    r = send(server, body, headers=headers())
    assert r.request.headers["content-length"] == str(CAP + 1)
    assert_refused(r, 413, "payload_too_large")
    assert server.event_count() == before


@pytest.mark.parametrize("size", [CAP + 1, CAP * 8])
def test_payload_over_the_cap_chunked_is_413(server: Server, size: int) -> None:
    before = server.event_count()
    body = envelope_of_size(size)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 256):
            yield body[i : i + 256]

    r = send(server, chunks(), headers=headers())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert_refused(r, 413, "payload_too_large")
    assert server.event_count() == before


def test_chunked_payload_under_the_cap_is_accepted(server: Server) -> None:
    body = envelope_of_size(CAP - 10)
    r = send(server, iter([body[:100], body[100:]]), headers=headers())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 202, r.text


def test_unknown_get_route_is_404_json(server: Server) -> None:
    r = httpx.get(f"{server.url}/no/such/page", timeout=5)
    assert_refused(r, 404, "not_found")


def test_unknown_post_route_is_404_json(server: Server) -> None:
    before = server.event_count()
    r = send(
        server, json.dumps(SEED["joke_request"]).encode(), path="/no/such/hook", headers=headers()
    )
    assert_refused(r, 404, "not_found")
    assert server.event_count() == before


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/events", "POST"),
        ("PUT", "/events", "POST"),
        ("DELETE", "/events", "POST"),
        ("GET", "/hooks/default", "POST"),
        ("POST", "/health", "GET"),
        ("DELETE", "/api/events", "GET"),
    ],
)
def test_wrong_method_is_405_json(server: Server, method: str, path: str, allowed: str) -> None:
    r = httpx.request(method, f"{server.url}{path}", headers=headers(), timeout=5)
    assert_refused(r, 405, "method_not_allowed")
    assert r.headers.get("allow", "").split(", ") == [allowed]


def test_no_refusal_stored_anything(server: Server) -> None:
    # Belt and braces over the per-test counts: no stored event is of a refused shape.
    rows = server.db_rows("SELECT type FROM events")
    assert {r["type"] for r in rows} <= {"device_status_check", "joke_request"}


# --------------------------------------------------------------------------- 6. dedupe


def _joke(**extra: Any) -> dict[str, Any]:
    return {**SEED["joke_request"], **extra}


def _wait_done(server: Server, event_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/api/events/{event_id}", timeout=5).json()
        if body["event"]["status"] in ("succeeded", "dead"):
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"{event_id} did not finish")


def _check_duplicate(server: Server, first: httpx.Response, second: httpx.Response) -> str:
    assert first.status_code == 202, first.text
    first_id = first.json()["id"]
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["id"] == first_id
    assert body["duplicate"] is True
    return str(first_id)


@pytest.mark.parametrize(
    "header", ["Idempotency-Key", "X-GitHub-Delivery", "webhook-id", "X-Request-Id"]
)
def test_delivery_header_dedupes(server: Server, jokes: Jokes, header: str) -> None:
    key = f"dlv-{uuid.uuid4()}"
    before = server.event_count()
    first = post_event(server.url, _joke(), headers={header: key})
    # Let the first one finish, so a second run of the action could not hide behind timing.
    _wait_done(server, first.json()["id"])
    second = post_event(server.url, _joke(data={"changed": True}), headers={header: key})
    first_id = _check_duplicate(server, first, second)

    assert server.event_count() == before + 1
    rows = server.db_rows("SELECT id, delivery_id FROM events WHERE delivery_id = ?", (key,))
    assert [tuple(r) for r in rows] == [(first_id, key)]
    server.wait_settled(10)
    runs = server.db_rows("SELECT count(*) FROM action_runs WHERE event_id = ?", (first_id,))
    assert runs[0][0] == 1
    assert jokes.calls == 1


def test_duplicate_while_first_is_still_queued(server: Server, jokes: Jokes) -> None:
    key = f"fast-{uuid.uuid4()}"
    before = server.event_count()
    first = post_event(server.url, _joke(), headers={"Idempotency-Key": key})
    second = post_event(server.url, _joke(), headers={"Idempotency-Key": key})
    _check_duplicate(server, first, second)
    server.wait_settled(10)
    assert server.event_count() == before + 1
    assert jokes.calls == 1


def test_envelope_id_dedupes(server: Server, jokes: Jokes) -> None:
    delivery = f"env-{uuid.uuid4()}"
    before = server.event_count()
    first = post_event(server.url, _joke(id=delivery))
    second = post_event(server.url, _joke(id=delivery))
    first_id = _check_duplicate(server, first, second)
    server.wait_settled(10)
    assert server.event_count() == before + 1
    assert (
        server.db_rows("SELECT delivery_id FROM events WHERE id = ?", (first_id,))[0][0] == delivery
    )
    assert jokes.calls == 1


def test_same_key_in_different_sources_is_not_a_duplicate(server: Server, jokes: Jokes) -> None:
    key = f"shared-{uuid.uuid4()}"
    before = server.event_count()
    a = post_event(server.url, _joke(), headers={"Idempotency-Key": key})
    b = httpx.post(
        f"{server.url}/hooks/other",
        json=_joke(),
        headers={"X-Webhook-Token": OTHER_TOKEN, "Idempotency-Key": key},
        timeout=10,
    )
    assert a.status_code == 202 and b.status_code == 202, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    assert "duplicate" not in a.json() and "duplicate" not in b.json()
    server.wait_settled(10)
    assert server.event_count() == before + 2
    rows = server.db_rows("SELECT source FROM events WHERE delivery_id = ? ORDER BY seq", (key,))
    assert [r[0] for r in rows] == ["default", "other"]
    assert jokes.calls == 2
    # And within "other", the key dedupes as usual.
    c = httpx.post(
        f"{server.url}/hooks/other",
        json=_joke(),
        headers={"X-Webhook-Token": OTHER_TOKEN, "Idempotency-Key": key},
        timeout=10,
    )
    assert c.status_code == 200 and c.json()["id"] == b.json()["id"]


def test_different_keys_are_different_events(server: Server, jokes: Jokes) -> None:
    before = server.event_count()
    ids = {
        post_event(
            server.url, _joke(), headers={"Idempotency-Key": f"k-{i}-{uuid.uuid4()}"}
        ).json()["id"]
        for i in range(3)
    }
    assert len(ids) == 3
    server.wait_settled(10)
    assert server.event_count() == before + 3
    assert jokes.calls == 3


def test_stored_event_keeps_no_secret(server: Server) -> None:
    for row in server.db_rows("SELECT data, meta FROM events"):
        blob = bytes(row["data"]) + bytes(row["meta"])
        assert TOKEN.encode() not in blob and OTHER_TOKEN.encode() not in blob


@pytest.mark.parametrize(
    ("header", "value"),
    [("Idempotency-Key", "k" * 201), ("X-GitHub-Delivery", "g" * 300), ("webhook-id", "w" * 500)],
    ids=["idempotency_key", "github_delivery", "webhook_id"],
)
def test_bad_delivery_header_is_400_not_500(server: Server, header: str, value: str) -> None:
    before = server.event_count()
    r = post_event(server.url, _joke(), headers={header: value})
    assert_refused(r, 400, "invalid_payload")
    assert server.event_count() == before
