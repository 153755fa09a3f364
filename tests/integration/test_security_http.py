"""Inbound security over real HTTP (issue part 2/7): every auth scheme, forgeries, replay,
body and header caps, slow bodies, rate limits, allowlists behind trusted proxies, secrets
that never leak, and ``nethook config check``.

Two ``nethook serve`` subprocesses are shared by the module: ``server`` (one source per
scheme, no trusted proxies) and ``proxied`` (trusted proxy 127.0.0.1, tight header and body
read limits). Every refusal is checked to store nothing.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
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
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from conftest import NETHOOK, TOKEN, VECTORS, Server, base_config, free_port
from nethook.config import AuthConfig
from nethook.ingress.http import KEPT_HEADERS
from nethook.security.signing import sign

pytestmark = pytest.mark.integration

MERAKI: dict[str, Any] = json.loads((VECTORS / "meraki_alert.json").read_text())

TOKEN_S = "tok-9f2c41d7e8b6a5f3c0d1e2"
BEARER_S = "bearer-5a7e0c93d1f24b68aa"
BASIC_S = "basic-pw-c81e2f0a9d374b56"
HMAC_S = "hmac-key-3d9a7c1e5f2b8064"
GH_S = "gh-secret-7b1d0e6c4a93f285"
SW_S = "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789").decode()
MERAKI_S = MERAKI["sharedSecret"]
ROT_OLD = "rotation-old-4e1a9c7d2b5f"
ROT_NEW = "rotation-new-8d3f6b0e1c7a"
FILE_OLD = "file-secret-old-2c9e7a1d5b"
FILE_NEW = "file-secret-new-6f0b3d8e4a"
LIMITS_TOKEN = "limits-token-0d5e9b2a7c4f"
# Wrong credentials of the same shape as the real ones. None of them may leak either.
WRONG = {
    "token": "tok-0000000000000000000000",
    "bearer": "bearer-000000000000000000",
    "basic": "basic-pw-0000000000000000",
    "hmac": "hmac-key-0000000000000000",
    "github": "gh-secret-000000000000000",
    "standard-webhooks": "whsec_" + base64.b64encode(b"an-attacker-guess-0123456789abcd").decode(),
    "meraki": "meraki-wrong-secret-0000",
}

# One source per scheme, named after it: POST /hooks/<scheme>.
AUTH: dict[str, dict[str, Any]] = {
    "token": {"type": "token", "header": "X-Api-Key", "secret": TOKEN_S},
    "bearer": {"type": "bearer", "token": BEARER_S},
    "basic": {"type": "basic", "username": "alice", "secret": BASIC_S},
    "hmac": {
        "type": "hmac",
        "header": "X-Signature",
        "algorithm": "sha512",
        "encoding": "base64",
        "prefix": "sha512=",
        "timestamp_header": "X-Timestamp",
        "tolerance": 60,
        "secret": HMAC_S,
    },
    "github": {"type": "github", "secret": GH_S},
    "standard-webhooks": {"type": "standard-webhooks", "secret": SW_S},
    "meraki": {"type": "meraki", "secret": MERAKI_S},
}
SCHEMES = list(AUTH)
# The header that carries the credential (meraki carries it in the body).
CREDENTIAL_HEADER = {
    "token": "X-Api-Key",
    "bearer": "Authorization",
    "basic": "Authorization",
    "hmac": "X-Signature",
    "github": "X-Hub-Signature-256",
    "standard-webhooks": "webhook-signature",
}
BODY_SIGNED = ("hmac", "github", "standard-webhooks")
TIMESTAMPED = ("hmac", "standard-webhooks")
ALL_SECRETS = [
    TOKEN_S,
    BEARER_S,
    BASIC_S,
    base64.b64encode(f"alice:{BASIC_S}".encode()).decode(),
    HMAC_S,
    GH_S,
    SW_S,
    SW_S.removeprefix("whsec_"),
    MERAKI_S,
    ROT_OLD,
    ROT_NEW,
    FILE_OLD,
    FILE_NEW,
    LIMITS_TOKEN,
    *WRONG.values(),
    TOKEN_S[:-3],  # a wrong token that is a prefix of the real one
]
BODY = b'{"event": "interface_down", "data": {"device": "r1", "if": "Gi0/1"}}'
CAP = 2048
JSON_CT = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- servers


def _start(workdir: Path, cfg: dict[str, Any], port: int) -> Server:
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Server(path, port, workdir).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("security")
    (workdir / "rotated.secrets").write_text(f"{FILE_NEW}\n\n{FILE_OLD}\n")
    port = free_port()
    sources: dict[str, Any] = {name: {"auth": auth} for name, auth in AUTH.items()}
    sources["rotated"] = {
        "auth": {"type": "hmac", "prefix": "sha256=", "secrets": [ROT_OLD, ROT_NEW]}
    }
    # Relative to the config file, as users write it.
    sources["filetoken"] = {"auth": {"type": "token", "secret_file": "rotated.secrets"}}
    token = {"type": "token", "header": "X-Api-Key", "secret": TOKEN_S}
    sources["capped"] = {"max_payload_size": CAP, "auth": token}
    sources["limited"] = {"rate_limit": {"requests_per_minute": 60, "burst": 5}, "auth": token}
    sources["limited2"] = {"rate_limit": {"requests_per_minute": 60, "burst": 5}, "auth": token}
    sources["allowed"] = {"allow": ["10.0.0.0/8"], "auth": token}
    cfg = base_config(
        workdir,
        port,
        sources=sources,
        rules=[
            {
                "name": "github push",
                "on": {"source": "github"},
                "do": [{"log": {"message": "push {{ event.id }}"}}],
            }
        ],
    )
    srv = _start(workdir, cfg, port)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Behind a trusted proxy on 127.0.0.1, with small header and body-read limits."""
    workdir = tmp_path_factory.mktemp("proxied")
    port = free_port()
    token = {"type": "token", "secret": LIMITS_TOKEN}
    cfg = base_config(
        workdir,
        port,
        server={"host": "127.0.0.1", "port": port, "max_header_bytes": 4096, "request_timeout": 1},
        security={
            "trusted_proxies": ["127.0.0.1/32"],
            "rate_limit": {"requests_per_minute": 1_000_000, "burst": 100_000},
        },
        sources={
            "default": {"auth": token},
            "allowed": {"allow": ["10.0.0.0/8"], "auth": token},
            "limited": {"rate_limit": {"requests_per_minute": 60, "burst": 5}, "auth": token},
        },
        rules=[],
    )
    srv = _start(workdir, cfg, port)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


# --------------------------------------------------------------------------- helpers


def auth_config(name: str, secret: str | None = None) -> AuthConfig:
    raw = dict(AUTH[name])
    if secret is not None:
        raw.pop("token", None)
        raw["secret"] = secret
    return AuthConfig.model_validate(raw)


def meraki_body(secret: str | None = MERAKI_S, alert_id: str | None = None) -> bytes:
    body = dict(MERAKI)
    body.pop("sharedSecret")
    if secret is not None:
        body["sharedSecret"] = secret
    body["alertId"] = alert_id or uuid.uuid4().hex
    return json.dumps(body).encode()


def valid_request(name: str, body: bytes = BODY, now: float | None = None) -> tuple[dict, bytes]:
    if name == "meraki":
        return dict(JSON_CT), meraki_body()
    return {**JSON_CT, **sign(auth_config(name), body, now)}, body


def post(
    client: httpx.Client, srv: Server, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return client.post(f"{srv.url}{path}", content=body, headers=headers)


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["error"] == code, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return dict(body)


def assert_no_secret(text: str, where: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"


def stored(srv: Server, event_id: str) -> dict[str, Any]:
    row = srv.db_rows("SELECT source, type, data, meta FROM events WHERE id = ?", (event_id,))
    assert len(row) == 1, event_id
    r = row[0]
    return {
        "source": r["source"],
        "type": r["type"],
        "data": json.loads(r["data"]),
        "meta": json.loads(r["meta"]),
    }


def rejected_count(text: str, source: str, reason: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name != "nethook_events_rejected":
            continue
        for sample in family.samples:
            if (
                sample.name.endswith("_total")
                and sample.labels.get("source") == source
                and sample.labels.get("reason") == reason
            ):
                return float(sample.value)
    return 0.0


# --------------------------------------------------------------------------- raw sockets


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, body


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one response with a Content-Length body (all of ours have one)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    status, headers, body = parse_response(data)
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------- 1. schemes


@pytest.mark.parametrize("name", SCHEMES)
def test_each_scheme_accepts_a_valid_request(
    server: Server, client: httpx.Client, name: str
) -> None:
    headers, body = valid_request(name)
    before = server.event_count()
    r = post(client, server, f"/hooks/{name}", body, headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    assert server.event_count() == before + 1
    event = stored(server, r.json()["id"])
    assert event["source"] == name
    if name != "meraki":
        assert event["type"] == "interface_down"
        assert event["data"] == json.loads(BODY)["data"]


def test_standard_webhooks_package_signature_is_accepted(
    server: Server, client: httpx.Client
) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = time.time()
    signature = Webhook(SW_S).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), BODY.decode())
    headers = {
        **JSON_CT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    r = post(client, server, "/hooks/standard-webhooks", BODY, headers)
    assert r.status_code == 202, r.text
    rows = server.db_rows("SELECT delivery_id FROM events WHERE id = ?", (r.json()["id"],))
    assert rows[0]["delivery_id"] == msg_id
    # And the package accepts what our signer produces for the same source.
    ours = sign(auth_config("standard-webhooks"), BODY)
    assert Webhook(SW_S).verify(BODY, ours) == json.loads(BODY)


def _forged(name: str, kind: str) -> tuple[dict[str, str], bytes]:
    now = time.time()
    if name == "meraki":
        body = {
            "missing": meraki_body(None),
            "wrong_secret": meraki_body(WRONG["meraki"]),
            "truncated": meraki_body(MERAKI_S[:-1]),
            "empty": meraki_body(""),
        }[kind]
        return dict(JSON_CT), body
    if kind == "wrong_secret":
        return {**JSON_CT, **sign(auth_config(name, WRONG[name]), BODY, now)}, BODY
    if kind in ("expired", "future"):
        shift = -600 if kind == "expired" else 600
        return {**JSON_CT, **sign(auth_config(name), BODY, now + shift)}, BODY
    headers, _ = valid_request(name, BODY, now)
    body = BODY
    cred = CREDENTIAL_HEADER[name]
    if kind == "missing":
        del headers[cred]
    elif kind == "empty":
        headers[cred] = ""
    elif kind == "truncated":
        headers[cred] = headers[cred][:-1]
    elif kind == "tampered":
        body = BODY.replace(b'"r1"', b'"r2"')  # one byte, still valid JSON
        assert len(body) == len(BODY) and body != BODY
    elif kind == "restamped":
        # The timestamp is part of the signed bytes: moving it breaks the signature.
        stamp = "X-Timestamp" if name == "hmac" else "webhook-timestamp"
        headers[stamp] = str(int(headers[stamp]) + 1)
    else:  # pragma: no cover - a typo in FORGERIES
        raise AssertionError(kind)
    return headers, body


FORGERIES = [
    (name, kind)
    for name in SCHEMES
    for kind in (
        "missing",
        "empty",
        "wrong_secret",
        "truncated",
        "tampered",
        "expired",
        "future",
        "restamped",
    )
    if (kind != "tampered" or name in BODY_SIGNED)
    and (kind not in ("expired", "future", "restamped") or name in TIMESTAMPED)
]


@pytest.mark.parametrize(("name", "kind"), FORGERIES, ids=[f"{n}-{k}" for n, k in FORGERIES])
def test_forged_requests_are_401_and_store_nothing(
    server: Server, client: httpx.Client, name: str, kind: str
) -> None:
    headers, body = _forged(name, kind)
    before = server.event_count()
    r = post(client, server, f"/hooks/{name}", body, headers)
    assert_error(r, 401, "unauthorized")
    assert_no_secret(r.text + repr(dict(r.headers)), "a 401 response")
    assert server.event_count() == before


@pytest.mark.parametrize("secret", [ROT_OLD, ROT_NEW])
def test_rotation_accepts_old_and_new_secret(
    server: Server, client: httpx.Client, secret: str
) -> None:
    auth = AuthConfig(type="hmac", prefix="sha256=", secret=secret)
    r = post(client, server, "/hooks/rotated", BODY, {**JSON_CT, **sign(auth, BODY)})
    assert r.status_code == 202, r.text


def test_rotation_still_refuses_a_third_secret(server: Server, client: httpx.Client) -> None:
    auth = AuthConfig(type="hmac", prefix="sha256=", secret=WRONG["hmac"])
    before = server.event_count()
    r = post(client, server, "/hooks/rotated", BODY, {**JSON_CT, **sign(auth, BODY)})
    assert_error(r, 401, "unauthorized")
    assert server.event_count() == before


@pytest.mark.parametrize("secret", [FILE_OLD, FILE_NEW, WRONG["token"]])
def test_secret_file_lines_are_rotated_secrets(
    server: Server, client: httpx.Client, secret: str
) -> None:
    before = server.event_count()
    r = post(client, server, "/hooks/filetoken", BODY, {**JSON_CT, "X-Webhook-Token": secret})
    if secret == WRONG["token"]:
        assert_error(r, 401, "unauthorized")
        assert server.event_count() == before
    else:
        assert r.status_code == 202, r.text
        assert server.event_count() == before + 1


def _wait_status(srv: Server, event_id: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = srv.db_rows("SELECT status FROM events WHERE id = ?", (event_id,))[0][0]
        if status in ("succeeded", "dead"):
            return str(status)
        time.sleep(0.05)
    raise AssertionError(f"{event_id} did not finish")


def test_github_replay_is_a_duplicate_and_runs_nothing_more(
    server: Server, client: httpx.Client
) -> None:
    body = b'{"ref": "refs/heads/main", "after": "0123abcd"}'
    delivery = str(uuid.uuid4())
    headers = {
        **JSON_CT,
        **sign(auth_config("github"), body, delivery_id=delivery, event_type="push"),
    }
    first = post(client, server, "/hooks/github", body, headers)
    assert first.status_code == 202, first.text
    event_id = first.json()["id"]
    assert _wait_status(server, event_id) == "succeeded"
    runs = "SELECT count(*) FROM action_runs WHERE event_id = ?"
    assert server.db_rows(runs, (event_id,))[0][0] == 1

    again = post(client, server, "/hooks/github", body, headers)  # the same valid delivery
    assert again.status_code == 200, again.text
    assert again.json()["id"] == event_id and again.json()["duplicate"] is True
    rows = server.db_rows("SELECT id, type FROM events WHERE delivery_id = ?", (delivery,))
    assert [tuple(r) for r in rows] == [(event_id, "push")]
    server.wait_settled(10)
    assert server.db_rows(runs, (event_id,))[0][0] == 1
    assert server.db_rows("SELECT status FROM events WHERE id = ?", (event_id,))[0][0] == (
        "succeeded"
    )


def test_meraki_shared_secret_is_never_stored(server: Server, client: httpx.Client) -> None:
    alert = f"alert-{uuid.uuid4().hex}"
    r = post(client, server, "/hooks/meraki", meraki_body(alert_id=alert), dict(JSON_CT))
    assert r.status_code == 202, r.text
    event_id = r.json()["id"]
    event = stored(server, event_id)
    assert event["data"]["alertId"] == alert
    assert event["data"]["alertTypeId"] == MERAKI["alertTypeId"]
    assert "sharedSecret" not in event["data"]
    raw = server.db_rows("SELECT data, meta FROM events WHERE id = ?", (event_id,))[0]
    assert MERAKI_S.encode() not in bytes(raw["data"]) + bytes(raw["meta"])
    api = client.get(f"{server.url}/api/events/{event_id}")
    assert api.status_code == 200, api.text
    assert api.json()["event"]["data"]["alertId"] == alert
    assert "sharedSecret" not in api.text and MERAKI_S not in api.text


# --------------------------------------------------------------------------- 2. body cap


def test_declared_oversize_body_is_413_before_the_body_is_read(server: Server) -> None:
    before = server.event_count()
    head = request_head(
        "/hooks/capped", {**JSON_CT, "X-Api-Key": TOKEN_S, "Content-Length": "100000"}
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b'{"event": "x", "data": "')  # 24 of the 100000 bytes
        started = time.monotonic()
        status, headers, body = read_response(sock, timeout=5)
        assert time.monotonic() - started < 3  # it did not wait for the other 99976 bytes
        assert status == 413
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"] == "payload_too_large"
        assert json.loads(body)["detail"]
        # The unread body is not drained: the server hangs up.
        assert closed_by_peer(sock, 3)
    assert server.event_count() == before


def test_chunked_upload_past_the_cap_is_413_and_the_server_stops_reading(server: Server) -> None:
    before = server.event_count()
    head = request_head(
        "/hooks/capped", {**JSON_CT, "X-Api-Key": TOKEN_S, "Transfer-Encoding": "chunked"}
    )
    limit = 5_000_000
    chunk = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
    sent = 0
    sent_at_response: int | None = None
    received = b""
    stopped = ""
    pending = b""
    blocked_since: float | None = None
    deadline = time.monotonic() + 15
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while sent < limit and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
                if not data:
                    stopped = "eof"
                    break
                received += data
                if sent_at_response is None and b"\r\n\r\n" in received:
                    sent_at_response = sent
            except BlockingIOError:
                pass
            except OSError as exc:
                stopped = f"recv: {exc}"
                break
            if not pending:
                pending = chunk
            try:
                n = sock.send(pending)
                pending = pending[n:]
                sent += n
                blocked_since = None
                if sent % 65536 < n:
                    time.sleep(0.001)  # let the server's loop run: socket buffers are large
            except BlockingIOError:
                # The server is not reading any more; that counts as stopping if it lasts.
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 2:
                    stopped = "blocked"
                    break
                time.sleep(0.005)
            except OSError as exc:
                assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
                stopped = f"send: {exc}"
                break
    assert sent_at_response is not None, f"no response after sending {sent} bytes"
    status, headers, body = parse_response(received)
    assert status == 413, received[:300]
    assert json.loads(body[: int(headers["content-length"])])["error"] == "payload_too_large"
    assert sent_at_response < 1_000_000, sent_at_response
    assert stopped, f"the server read all {sent} bytes of an over-cap body"
    assert sent < limit
    assert server.event_count() == before


# --------------------------------------------------------------------------- 3. rate limit


def test_rate_limit_burst_then_429_with_retry_after_then_recovery(
    server: Server, client: httpx.Client
) -> None:
    headers = {**JSON_CT, "X-Api-Key": TOKEN_S}
    before = server.event_count()
    for i in range(5):
        r = post(client, server, "/hooks/limited", BODY, headers)
        assert r.status_code == 202, (i, r.text)
    r = post(client, server, "/hooks/limited", BODY, headers)
    assert_error(r, 429, "rate_limited")
    retry_after = r.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    assert server.event_count() == before + 5
    time.sleep(int(retry_after))
    r = post(client, server, "/hooks/limited", BODY, headers)
    assert r.status_code == 202, r.text
    assert server.event_count() == before + 6


def test_rate_limit_buckets_are_per_client_behind_a_trusted_proxy(
    proxied: Server, client: httpx.Client
) -> None:
    def send(forwarded: str | None) -> httpx.Response:
        headers = {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN}
        if forwarded:
            headers["X-Forwarded-For"] = forwarded
        return post(client, proxied, "/hooks/limited", BODY, headers)

    for _ in range(5):
        assert send("203.0.113.7").status_code == 202
    limited = send("203.0.113.7")
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # Another client (and the proxy itself) has its own bucket.
    for _ in range(5):
        assert send("203.0.113.8").status_code == 202
    assert send(None).status_code == 202
    assert_error(send("203.0.113.8"), 429, "rate_limited")


def test_forwarded_for_does_not_escape_the_limit_without_trusted_proxies(
    server: Server, client: httpx.Client
) -> None:
    # `server` trusts no proxy: a client rotating X-Forwarded-For is still one client.
    headers = {**JSON_CT, "X-Api-Key": TOKEN_S}
    statuses = []
    for i in range(8):
        h = {**headers, "X-Forwarded-For": f"198.51.100.{i}"}
        statuses.append(post(client, server, "/hooks/limited2", BODY, h).status_code)
    assert 429 in statuses, statuses


# --------------------------------------------------------------------------- 4. allowlist


def test_allowlist_refuses_other_addresses(server: Server, client: httpx.Client) -> None:
    before = server.event_count()
    headers = {**JSON_CT, "X-Api-Key": TOKEN_S}
    assert_error(post(client, server, "/hooks/allowed", BODY, headers), 403, "forbidden")
    assert server.event_count() == before


def test_allowlist_ignores_forwarded_for_without_trusted_proxies(
    server: Server, client: httpx.Client
) -> None:
    before = server.event_count()
    spoofed = {**JSON_CT, "X-Api-Key": TOKEN_S, "X-Forwarded-For": "10.1.2.3"}
    assert_error(post(client, server, "/hooks/allowed", BODY, spoofed), 403, "forbidden")
    assert server.event_count() == before


def test_allowlist_honours_forwarded_for_from_a_trusted_proxy(
    proxied: Server, client: httpx.Client
) -> None:
    before = proxied.event_count()
    headers = {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN}
    assert_error(post(client, proxied, "/hooks/allowed", BODY, headers), 403, "forbidden")
    ok = post(client, proxied, "/hooks/allowed", BODY, {**headers, "X-Forwarded-For": "10.1.2.3"})
    assert ok.status_code == 202, ok.text
    assert stored(proxied, ok.json()["id"])["meta"]["client"] == "10.1.2.3"
    # The client wrote "10.1.2.3"; the proxy appended the real address 198.51.100.9.
    chain = {**headers, "X-Forwarded-For": "10.1.2.3, 198.51.100.9"}
    assert_error(post(client, proxied, "/hooks/allowed", BODY, chain), 403, "forbidden")
    assert proxied.event_count() == before + 1


# --------------------------------------------------------------------------- 5. headers, slow


def test_oversized_headers_are_431(proxied: Server, client: httpx.Client) -> None:
    before = proxied.event_count()
    headers = {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN, "X-Padding": "p" * 10_000}
    r = post(client, proxied, "/events", BODY, headers)
    assert_error(r, 431, "headers_too_large")
    # Many small headers add up the same way.
    many = {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN}
    many |= {f"X-Pad-{i}": "p" * 90 for i in range(60)}
    assert_error(post(client, proxied, "/events", BODY, many), 431, "headers_too_large")
    assert proxied.event_count() == before
    # Just under the limit is fine.
    small = {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN, "X-Padding": "p" * 2000}
    assert post(client, proxied, "/events", BODY, small).status_code == 202


def test_endless_header_is_cut_off_at_the_limit(proxied: Server) -> None:
    """The parser stops at max_header_bytes: it does not buffer a header that never ends."""
    limit = 4_000_000
    sent = 0
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=5) as sock:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        sock.settimeout(2)
        try:
            while sent < limit:
                sock.sendall(b"a" * 65536)
                sent += 65536
                time.sleep(0.001)  # let the server's loop run: socket buffers are large
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        try:
            status, _, body = read_response(sock, timeout=3)
        except (ConnectionResetError, AssertionError):
            status = None  # hung up without an answer: also a refusal
        if status is not None:
            assert status == 431, body
            assert json.loads(body)["error"] == "headers_too_large"
    assert sent < 1_000_000, f"the server buffered {sent} header bytes (limit 4096)"


def test_slow_body_is_408(proxied: Server) -> None:
    before = proxied.event_count()
    head = request_head(
        "/events", {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN, "Content-Length": "100"}
    )
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=5) as sock:
        sock.sendall(head + b'{"event": ')  # 10 of 100 bytes, then nothing
        started = time.monotonic()
        status, headers, body = read_response(sock, timeout=6)
        elapsed = time.monotonic() - started
        assert status == 408, body
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"] == "request_timeout"
        assert 0.5 < elapsed < 4, elapsed
        assert closed_by_peer(sock, 3)
    assert proxied.event_count() == before


def test_client_hanging_up_mid_body_is_a_refusal_not_a_crash(
    proxied: Server, client: httpx.Client
) -> None:
    before = proxied.event_count()
    metrics_before = client.get(f"{proxied.url}/metrics").text
    head = request_head(
        "/events", {**JSON_CT, "X-Webhook-Token": LIMITS_TOKEN, "Content-Length": "100"}
    )
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=5) as sock:
        sock.sendall(head + b'{"event": ')
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = client.get(f"{proxied.url}/metrics").text
        if rejected_count(metrics, "default", "client_disconnected") > rejected_count(
            metrics_before, "default", "client_disconnected"
        ):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the disconnect was not counted as a refusal")
    assert "request.crashed" not in proxied.log()
    assert "Traceback" not in proxied.log()
    assert proxied.event_count() == before


# --------------------------------------------------------------------------- 6. no leaks


def test_secrets_never_leak_and_auth_failures_are_logged_and_counted(
    server: Server, client: httpx.Client
) -> None:
    metrics_before = client.get(f"{server.url}/metrics").text
    texts: list[str] = []

    def keep(r: httpx.Response) -> httpx.Response:
        texts.append(r.text + "\n" + repr(dict(r.headers)))
        return r

    # Good and bad requests for every scheme, including a wrong token that is a prefix.
    ids = []
    for name in SCHEMES:
        headers, body = valid_request(name)
        r = keep(post(client, server, f"/hooks/{name}", body, headers))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        headers, body = _forged(name, "wrong_secret")
        assert keep(post(client, server, f"/hooks/{name}", body, headers)).status_code == 401
    prefix = {**JSON_CT, "X-Api-Key": TOKEN_S[:-3]}
    assert keep(post(client, server, "/hooks/token", BODY, prefix)).status_code == 401
    # Other sources' secrets in the wrong headers, and a secret in the query string.
    wrong_place = {**JSON_CT, "X-Api-Key": GH_S, "Authorization": f"Bearer {HMAC_S}"}
    assert keep(post(client, server, "/hooks/token", BODY, wrong_place)).status_code == 401
    r = client.post(
        f"{server.url}/hooks/token", params={"token": BEARER_S}, content=BODY, headers=JSON_CT
    )
    assert keep(r).status_code == 401

    keep(client.get(f"{server.url}/health"))
    keep(client.get(f"{server.url}/api/events", params={"limit": 500}))
    for event_id in ids:
        keep(client.get(f"{server.url}/api/events/{event_id}"))
    metrics_after = keep(client.get(f"{server.url}/metrics")).text

    for i, text in enumerate(texts):
        assert_no_secret(text, f"response #{i}")
    log = server.log()
    assert_no_secret(log, "the server log")
    for row in server.db_rows("SELECT id, data, meta FROM events"):
        stored_text = bytes(row["data"]).decode() + bytes(row["meta"]).decode()
        assert_no_secret(stored_text, f"stored event {row['id']}")
        headers = json.loads(row["meta"]).get("headers", {})
        assert set(headers) <= set(KEPT_HEADERS), headers

    failures = [
        line
        for line in (json.loads(x) for x in log.splitlines() if x.startswith("{"))
        if line.get("event") == "auth.failed"
    ]
    assert failures, log[-2000:]
    for line in failures:
        assert line["source"] and line["client"] == "127.0.0.1" and line["reason"], line
    assert {line["source"] for line in failures} >= set(SCHEMES)
    for name in SCHEMES:
        # token also got the prefix, the wrong-place and the query-string attempts
        want = 4 if name == "token" else 1
        got = rejected_count(metrics_after, name, "unauthorized") - rejected_count(
            metrics_before, name, "unauthorized"
        )
        assert got == want, (name, got)


# --------------------------------------------------------------------------- 7. config check


def _check(tmp_path: Path, sources: dict[str, Any], **top: Any) -> tuple[int, str]:
    cfg = {
        "server": {"host": "127.0.0.1", "port": 8000},
        "store": {"url": f"sqlite:///{tmp_path / 'nethook.db'}"},
        "sources": sources,
        "rules": [],
        **top,
    }
    path = tmp_path / f"check-{uuid.uuid4().hex[:8]}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [*NETHOOK, "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    # Rich may wrap long lines; compare with whitespace collapsed.
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


GOOD_AUTH = {"type": "token", "secret": "a-long-enough-secret-0123456789"}
CONFIG_ERRORS = {
    "no_auth": ({"nosecurity": {}}, "nosecurity.auth"),
    "unknown_type": (
        {"magic": {"auth": {"type": "magic", "secret": "x" * 32}}},
        "sources.magic.auth.type",
    ),
    "hmac_without_secret": ({"signed": {"auth": {"type": "hmac"}}}, "sources.signed.auth"),
    "missing_secret_file": (
        {"filed": {"auth": {"type": "token", "secret_file": "does-not-exist.txt"}}},
        "sources.filed.auth",
    ),
    "invalid_cidr": (
        {"cidr": {"allow": ["10.0.0.300/8"], "auth": GOOD_AUTH}},
        "sources.cidr.allow",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_check_refuses_unsafe_configs(tmp_path: Path, case: str) -> None:
    sources, key = CONFIG_ERRORS[case]
    code, out = _check(tmp_path, sources)
    assert code == 2, out
    assert key in out, out
    if case == "missing_secret_file":
        assert "secret_file" in out and "does-not-exist.txt" in out, out
    if case == "invalid_cidr":
        assert "10.0.0.300/8" in out, out
    assert "OK:" not in out


CONFIG_WARNINGS = {
    "auth_none": ({"open": {"auth": {"type": "none"}}}, {}, "sources.open.auth: type none"),
    "short_secret": (
        {"short": {"auth": {"type": "token", "secret": "0123456789"}}},
        {},
        "sources.short.auth: a secret is shorter than 16 bytes",
    ),
    "plain_http_beyond_loopback": (
        {"default": {"auth": GOOD_AUTH}},
        {"server": {"host": "0.0.0.0", "port": 8000}},
        "server: plain HTTP on 0.0.0.0",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_WARNINGS))
def test_config_check_warns_but_accepts(tmp_path: Path, case: str) -> None:
    sources, top, warning = CONFIG_WARNINGS[case]
    code, out = _check(tmp_path, sources, **top)
    assert code == 0, out
    assert "warning:" in out and warning in out, out
    assert "OK:" in out


def test_config_check_clean_config_has_no_warning(tmp_path: Path) -> None:
    (tmp_path / "two.secrets").write_text(f"{FILE_NEW}\n{FILE_OLD}\n")
    sources = {
        "default": {"auth": GOOD_AUTH},
        "filed": {"auth": {"type": "token", "secret_file": str(tmp_path / "two.secrets")}},
    }
    code, out = _check(tmp_path, sources)
    assert code == 0, out
    assert "warning" not in out, out
    assert "OK:" in out and "2 sources" in out, out
    assert FILE_NEW not in out and FILE_OLD not in out


def test_a_credential_header_sent_twice_is_refused(server_for_repeat: Server) -> None:
    """Which of two tokens counts would be ambiguous: refuse instead of picking one."""
    before = server_for_repeat.event_count()
    raw = (
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Webhook-Token: nope\r\nX-Webhook-Token: " + TOKEN.encode() + b"\r\n"
        b'Content-Length: 15\r\n\r\n{"event":"dup"}'
    )
    with socket.create_connection(("127.0.0.1", server_for_repeat.port), timeout=5) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert b"given more than once" in answer
    assert server_for_repeat.event_count() == before


@pytest.fixture
def server_for_repeat(make_server: Any) -> Server:
    return make_server()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- admin brute force

ADMIN_TOKEN = "admin-token-5e1f0c9a7b3d24e8"
ADMIN_PASSWORD = "admin-pass-90ab12cd34ef"


def test_wrong_admin_credentials_are_braked_per_address(make_server: Any) -> None:
    """Three wrong tries a minute here: the fourth is 429 before any compare, for the API
    and the login form alike, even with the right credentials; the log says who, not what."""
    srv = make_server(
        admin={
            "token": ADMIN_TOKEN,
            "username": "ops",
            "password": ADMIN_PASSWORD,
            "failed_logins_per_minute": 3,
        }
    )
    api = f"{srv.url}/api/events"
    good = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Right credentials spend nothing.
    for _ in range(5):
        assert httpx.get(api, headers=good, timeout=5).status_code == 200
    wrong = [
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": "Basic " + base64.b64encode(b"ops:guess-1").decode()},
    ]
    assert httpx.get(api, headers=wrong[0], timeout=5).status_code == 401
    assert httpx.get(api, headers=wrong[1], timeout=5).status_code == 401
    login = httpx.post(
        f"{srv.url}/ui/login",
        data={"username": "ops", "password": "guess-2"},
        timeout=5,
        follow_redirects=False,
    )
    assert login.status_code == 401
    locked = httpx.get(api, headers=good, timeout=5)
    assert locked.status_code == 429
    assert locked.json()["error"] == "too_many_attempts"
    assert 1 <= int(locked.headers["Retry-After"]) <= 20
    form = httpx.post(
        f"{srv.url}/ui/login",
        data={"username": "ops", "password": ADMIN_PASSWORD},
        timeout=5,
        follow_redirects=False,
    )
    assert form.status_code == 429
    assert "Too many failed attempts" in form.text
    assert "set-cookie" not in form.headers
    # Webhook ingest is a different door: not affected.
    r = httpx.post(
        f"{srv.url}/events",
        json={"event": "x"},
        headers={"X-Webhook-Token": TOKEN},
        timeout=5,
    )
    assert r.status_code == 202
    log = srv.log()
    assert log.count("admin.auth_failed") == 3
    for secret in ("not-the-token", "guess-1", "guess-2", ADMIN_PASSWORD, ADMIN_TOKEN):
        assert secret not in log
