"""Hostile input against one real ``nethook serve`` (issue part 2/7).

Generated requests (hypothesis): binary, oversized, deeply nested, NaN/Infinity and
duplicate-key bodies; weird content types; missing, garbage and huge auth headers; raw
non-ASCII header bytes; random paths under ``/hooks/`` and ``/events``; random methods.

Whatever arrives: never a 5xx, every refusal is JSON ``{"error", "detail"}``, and nothing is
stored unless the request carried a valid credential that this module put there on purpose:
the stored events are exactly the ones whose 202 the authenticated senders saw.
"""

from __future__ import annotations

import json
import socket
import string
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Server, base_config, free_port
from nethook.config import AuthConfig
from nethook.security.signing import sign

pytestmark = pytest.mark.integration

CAP = 4096
MAX_HEADER_BYTES = 8192
TOKEN = "hostile-token-3f8a1c6e9b2d7045"
HMAC_KEY = "hostile-hmac-key-7d2e5a0c4b19"
GH_KEY = "hostile-github-key-1a6f3c8e0d52"
MERAKI_KEY = "hostile-meraki-key-9c4e2a7f1b03"
SECRETS = (TOKEN, HMAC_KEY, GH_KEY, MERAKI_KEY)
HMAC_AUTH = AuthConfig(type="hmac", prefix="sha256=", secret=HMAC_KEY)
GH_AUTH = AuthConfig(type="github", secret=GH_KEY)
SOURCES = ("default", "signed", "gh", "meraki", "basic")
MIN_REQUESTS = 1000

SETTINGS = settings(
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Tally:
    """What every test saw: request count, and the ids the authenticated senders got."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted: set[str] = set()
        self.statuses: dict[int, int] = {}


TALLY = Tally()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("hostile")
    port = free_port()
    cfg = base_config(
        workdir,
        port,
        server={"host": "127.0.0.1", "port": port, "max_header_bytes": MAX_HEADER_BYTES},
        security={
            "max_payload_size": CAP,
            "rate_limit": {"requests_per_minute": 1_000_000, "burst": 100_000},
        },
        sources={
            "default": {"format": "envelope", "auth": {"type": "token", "secret": TOKEN}},
            "signed": {
                "format": "raw",
                "auth": {"type": "hmac", "prefix": "sha256=", "secret": HMAC_KEY},
            },
            "gh": {"auth": {"type": "github", "secret": GH_KEY}},
            "meraki": {"auth": {"type": "meraki", "secret": MERAKI_KEY}},
            "basic": {"auth": {"type": "basic", "username": "ops", "secret": TOKEN}},
        },
        rules=[],
    )
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


# --------------------------------------------------------------------------- strategies


def _json_values(int_bits: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**int_bits), 2**int_bits - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
        max_leaves=25,
    )


json_values = _json_values(70)  # past 64 bits: orjson refuses those (a 400, never a 500)
json_safe = _json_values(63)  # what every JSON parser here accepts


def _dup_keys(key: str, a: Any, b: Any) -> bytes:
    k = json.dumps(key)
    return f'{{"event": "dup", {k}: {json.dumps(a)}, {k}: {json.dumps(b)}}}'.encode()


def _repeat(n: int, seed: bytes) -> bytes:
    return (seed * (n // len(seed) + 1))[:n]


bodies = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.builds(
        lambda t, d: json.dumps({"event": t, "data": d}).encode(), st.text(max_size=30), json_values
    ),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(1, 3000).map(lambda n: b"[" * n),
    st.sampled_from(
        [
            b'{"event": NaN}',
            b'{"event": "x", "data": Infinity}',
            b'{"event": "x", "data": -Infinity}',
            b"[NaN, Infinity]",
            b'{"event": "x", "data": 1e99999}',
            b'{"event": "x", "data": 123456789012345678901234567890}',
            b'{"event": "\\ud800"}',
            b'{"event": "x"}\x00',
            b"\xef\xbb\xbf{}",
            b"",
            b"null",
        ]
    ),
    st.builds(_dup_keys, st.text(max_size=10), json_values, json_values),
    # Huge-ish: around and up to twice the cap.
    st.builds(_repeat, st.integers(CAP - 64, 2 * CAP), st.binary(min_size=1, max_size=32)),
    st.builds(
        lambda n: json.dumps({"event": "big", "data": "x" * n}).encode(),
        st.integers(CAP - 64, 2 * CAP),
    ),
)

_VCHAR_CT = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    'application/json;charset="utf-8"; boundary=xyz; q=0.5',
    "APPLICATION/JSON",
    "application/vnd.nethook.event+json; version=2",
    "application/json\t;\tcharset=latin-1",
    "application/jsonx",
    "application/",
    "application/+json",
    "text/plain",
    "text/json",
    "multipart/form-data; boundary=----x",
    "application/x-www-form-urlencoded",
    "*/*",
    ";",
    "application/json" + "; p=v" * 200,
]
content_types = st.one_of(
    st.sampled_from(CONTENT_TYPES),
    st.lists(st.sampled_from(list(_VCHAR_CT)), min_size=1, max_size=60).map(
        lambda b: b"application/json; x=" + bytes(b)
    ),
    st.none(),
)

# Bytes h11 lets through in a header value: visible ASCII and obs-text (0x80-0xff),
# with inner spaces and tabs; no leading or trailing whitespace.
_VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
header_values = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "=+/-_.:,", max_size=80),
    st.lists(st.sampled_from([*_VCHAR, 0x20, 0x09]), min_size=1, max_size=120)
    .map(bytes)
    .map(lambda b: b.strip(b" \t") or b"x"),
    st.integers(100, 7000).map(lambda n: "v" * n),  # huge; some past the header limit
    st.sampled_from(
        [
            "Bearer",
            "Basic !!!",
            "Basic " + "A" * 400,
            "sha256=" + "0" * 64,
            "sha256=" + "z" * 64,
            "v1,AAAA v2,BBBB v1,not-base64",
            "v1," + "A" * 44,
            "99999999999999999999",
            "-1",
            "0x10",
            "1e10",
            TOKEN[:-1],
            TOKEN + " x",
            "x " + TOKEN[1:],
            TOKEN.upper(),
            "10.0.0.1, garbage, ::1, [::1]:80",
        ]
    ),
)
AUTH_HEADERS = [
    "X-Webhook-Token",
    "Authorization",
    "X-Signature",
    "X-Hub-Signature-256",
    "X-GitHub-Delivery",
    "X-GitHub-Event",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Forwarded-For",
    "Idempotency-Key",
    "X-Request-Id",
    "X-Event-Type",
    "User-Agent",
    "Accept",
]
_TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
_RESERVED = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te"}
header_names = st.one_of(
    st.sampled_from(AUTH_HEADERS),
    st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=30).filter(
        lambda n: n.lower() not in _RESERVED
    ),
)
header_sets = st.dictionaries(header_names, header_values, max_size=8)

_SEGMENT = st.one_of(
    st.sampled_from([*SOURCES, "", ".", "..", "%2e%2e", "nope", "DEFAULT", "default/", "a" * 300]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).map(
        lambda s: urllib.parse.quote(s, safe="")
    ),
)
paths = st.one_of(
    st.just("/events"),
    _SEGMENT.map(lambda s: f"/hooks/{s}"),
    _SEGMENT.map(lambda s: f"/events/{s}"),
    st.builds(lambda a, b: f"/hooks/{a}/{b}", _SEGMENT, _SEGMENT),
    st.builds(lambda p, q: f"{p}?wait={q}", st.sampled_from(["/events", "/hooks/gh"]), _SEGMENT),
)
methods = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])


# --------------------------------------------------------------------------- checks


def _send(
    client: httpx.Client,
    server: Server,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, Any],
) -> httpx.Response:
    r = client.request(method, f"{server.url}{path}", content=body, headers=headers)
    TALLY.requests += 1
    TALLY.statuses[r.status_code] = TALLY.statuses.get(r.status_code, 0) + 1
    assert r.status_code < 500, (r.status_code, method, path, r.text[:300])
    if not r.is_success and method != "HEAD":
        assert r.headers.get("content-type", "").startswith("application/json"), (
            r.status_code,
            r.headers,
            r.text[:200],
        )
        payload = r.json()
        assert isinstance(payload, dict), payload
        assert isinstance(payload.get("error"), str) and payload["error"], payload
        assert isinstance(payload.get("detail"), str), payload
    for secret in SECRETS:
        assert secret not in r.text
    return r


def _record_authenticated(r: httpx.Response) -> None:
    """A 2xx to a correctly authenticated request: 202 new, 200 with the results of a new
    event (``?wait=``), or 200 duplicate of an id seen before."""
    if r.status_code == 202:
        TALLY.accepted.add(r.json()["id"])
    elif r.status_code == 200:
        body = r.json()
        if body.get("duplicate") is True:
            assert body["id"] in TALLY.accepted, body
        else:
            assert body["status"] in ("succeeded", "running", "dead"), body
            assert body["id"] not in TALLY.accepted, body
            TALLY.accepted.add(body["id"])
    else:
        assert not r.is_success, r.status_code


def _with_content_type(headers: dict[str, Any], ctype: str | bytes | None) -> dict[str, Any]:
    out = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if ctype is not None:
        out["Content-Type"] = ctype
    return out


# --------------------------------------------------------------------------- unauthenticated


@settings(SETTINGS, max_examples=600)
@given(method=methods, path=paths, body=bodies, headers=header_sets, ctype=content_types)
def test_unauthenticated_requests_never_5xx_and_store_nothing(
    server: Server,
    client: httpx.Client,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, Any],
    ctype: str | bytes | None,
) -> None:
    if method != "POST" and httpx.URL(f"{server.url}{path}").path in ("/", "/ui", "/ui/"):
        # "/hooks/.." normalises to "/": the dashboard, which a loopback client may read
        # when no admin credentials are configured (as /api). Not an ingest route.
        return
    r = _send(client, server, method, path, body, _with_content_type(headers, ctype))
    # No valid credential was sent, so nothing may have been accepted.
    assert not r.is_success, (r.status_code, method, path, r.text[:300])


@settings(SETTINGS, max_examples=400)
@given(source=st.sampled_from(SOURCES), body=bodies, headers=header_sets, ctype=content_types)
def test_garbage_credentials_on_real_sources_are_refused(
    server: Server,
    client: httpx.Client,
    source: str,
    body: bytes,
    headers: dict[str, Any],
    ctype: str | bytes | None,
) -> None:
    r = _send(client, server, "POST", f"/hooks/{source}", body, _with_content_type(headers, ctype))
    assert r.status_code in (400, 401, 404, 413, 415, 431), (r.status_code, r.text[:300])


@settings(SETTINGS, max_examples=150)
@given(body=bodies, ctype=content_types, tamper=st.integers(0, 2**16))
def test_signature_over_other_bytes_is_refused(
    server: Server, client: httpx.Client, body: bytes, ctype: str | bytes | None, tamper: int
) -> None:
    # A valid signature for a body that differs in one byte (or is one byte longer).
    signed = body if body else b"{}"
    i = tamper % len(signed)
    sent = signed[:i] + bytes([signed[i] ^ (1 + tamper % 255)]) + signed[i + 1 :]
    headers = _with_content_type(sign(HMAC_AUTH, signed), ctype)
    r = _send(client, server, "POST", "/hooks/signed", sent, headers)
    assert not r.is_success, r.text


# --------------------------------------------------------------------------- authenticated


envelopes = st.builds(
    lambda t, d: json.dumps({"event": t, "data": d}).encode(),
    st.text(min_size=1, max_size=30).filter(str.strip),
    json_safe,
)
waits = st.one_of(
    st.none(),
    st.sampled_from(["0", "0.01", "abc", "-1", "301", "nan", "inf", "1e999", ""]),
)


@settings(SETTINGS, max_examples=250)
@given(
    body=st.one_of(bodies, envelopes),
    ctype=content_types,
    extra=header_sets,
    wait=waits,
)
def test_authenticated_token_requests(
    server: Server,
    client: httpx.Client,
    body: bytes,
    ctype: str | bytes | None,
    extra: dict[str, Any],
    wait: str | None,
) -> None:
    headers = {k: v for k, v in extra.items() if k.lower() != "x-webhook-token"}
    headers["X-Webhook-Token"] = TOKEN
    path = "/events" if wait is None else f"/events?wait={wait}"
    r = _send(client, server, "POST", path, body, _with_content_type(headers, ctype))
    _record_authenticated(r)


@settings(SETTINGS, max_examples=250)
@given(body=bodies, ctype=st.sampled_from(CONTENT_TYPES[:6]))
def test_authenticated_signed_requests(
    server: Server, client: httpx.Client, body: bytes, ctype: str
) -> None:
    r = _send(
        client,
        server,
        "POST",
        "/hooks/signed",
        body,
        {"Content-Type": ctype, **sign(HMAC_AUTH, body)},
    )
    _record_authenticated(r)
    if r.is_success:
        json.loads(body)  # only JSON is ever accepted
        assert len(body) <= CAP


# Sender-chosen header text (GitHub's delivery id and event name): any byte h11 lets through.
_header_text = st.lists(st.sampled_from(list(_VCHAR)), max_size=30).map(bytes)


@settings(SETTINGS, max_examples=120)
@given(data=json_values, event=_header_text, delivery=st.one_of(_header_text, st.just(b"x" * 201)))
def test_authenticated_github_requests(
    server: Server, client: httpx.Client, data: Any, event: bytes, delivery: bytes
) -> None:
    body = json.dumps({"payload": data}).encode()
    headers: dict[str, Any] = {"Content-Type": "application/json", **sign(GH_AUTH, body)}
    headers["X-GitHub-Delivery"] = delivery
    headers["X-GitHub-Event"] = event
    r = _send(client, server, "POST", "/hooks/gh", body, headers)
    _record_authenticated(r)


@settings(SETTINGS, max_examples=100)
@given(data=st.dictionaries(st.text(max_size=10), json_safe, max_size=5), secret=st.booleans())
def test_meraki_secret_in_the_body(
    server: Server, client: httpx.Client, data: dict[str, Any], secret: bool
) -> None:
    body = dict(data)
    body["sharedSecret"] = MERAKI_KEY if secret else MERAKI_KEY[::-1]
    r = _send(
        client,
        server,
        "POST",
        "/hooks/meraki",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    if secret and len(json.dumps(body).encode()) <= CAP:
        assert r.status_code == 202, r.text
    if not secret:
        assert r.status_code == 401, r.text
    _record_authenticated(r)


# --------------------------------------------------------------------------- fixed cases


@pytest.mark.parametrize("wait", ["abc", "-1", "301", "nan", "inf", "1e999", ""])
def test_bad_wait_is_refused_before_the_event_is_stored(
    server: Server, client: httpx.Client, wait: str
) -> None:
    before = server.event_count()
    body = json.dumps({"event": "wait_probe", "data": {}}).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Token": TOKEN}
    r = _send(client, server, "POST", f"/events?wait={wait}", body, headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert server.event_count() == before


def _nested(depth: int) -> bytes:
    return b'{"event": "deep", "data": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [127, 200, 254, 255, 600, 1023])
def test_deeply_nested_json_is_a_400_not_a_crash(
    server: Server, client: httpx.Client, depth: int
) -> None:
    before = server.event_count()
    headers = {"Content-Type": "application/json", "X-Webhook-Token": TOKEN}
    r = _send(client, server, "POST", "/events", _nested(depth), headers)
    if depth < 128:  # the document is one level deeper than its data
        assert r.status_code == 202, r.text
        _record_authenticated(r)
        shown = client.get(f"{server.url}/api/events/{r.json()['id']}")
        assert shown.status_code == 200, shown.text
        return
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_payload", "malformed_json")
    assert server.event_count() == before


_HEAD = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
_AUTH = b"X-Webhook-Token: " + TOKEN.encode() + b"\r\n"
_ENV = b'{"event": "smuggled", "data": {}}'
MALFORMED_HTTP = {
    "cl_and_te": _HEAD
    + _AUTH
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n" % len(_ENV)
    + _ENV
    + b"\r\n0\r\n\r\n",
    "control_char_in_value": _HEAD + b"X-Webhook-Token: ab\x01c\r\nContent-Length: 2\r\n\r\n{}",
    "bad_chunk_size": _HEAD + _AUTH + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    "negative_length": _HEAD + _AUTH + b"Content-Length: -1\r\n\r\n{}",
    "huge_length": _HEAD + _AUTH + b"Content-Length: 99999999999999999999999999\r\n\r\n{}",
    "two_lengths": _HEAD + _AUTH + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "bad_version": b"POST /events HTTP/9.9\r\nHost: x\r\n\r\n",
    "space_in_name": _HEAD + b"X Token: a\r\nContent-Length: 2\r\n\r\n{}",
    "obs_fold": _HEAD
    + b"X-Webhook-Token: a\r\n "
    + TOKEN.encode()
    + b"\r\nContent-Length: 2\r\n\r\n{}",
    "nul_in_path": b"POST /ev\x00ents HTTP/1.1\r\nHost: x\r\n\r\n",
    "binary_path": b"POST /hooks/\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "tls_hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 50,
    "bare_lf": b"POST /events HTTP/1.1\nHost: x\n" + _AUTH.strip() + b"\nContent-Length: 2\n\n{}",
}


def _raw(server: Server, data: bytes) -> bytes:
    TALLY.requests += 1
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


@pytest.mark.parametrize("case", list(MALFORMED_HTTP))
def test_malformed_http_is_refused_by_the_parser(server: Server, case: str) -> None:
    before = server.event_count()
    received = _raw(server, MALFORMED_HTTP[case])
    # An answer, and the connection closed after it (the loop above ended).
    assert received.startswith(b"HTTP/1.1 4"), received[:200]
    assert b"connection: close" in received.lower()
    assert server.event_count() == before


def test_parser_errors_are_json(server: Server) -> None:
    received = _raw(server, MALFORMED_HTTP["control_char_in_value"])
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    assert set(json.loads(body)) == {"error", "detail"}


# --------------------------------------------------------------------------- schemathesis

# Operations an unauthenticated client may be generated against; /api is left out (from
# loopback it is the admin API, whose replay endpoint stores events by design).
SCHEMA_PATHS = ("/events", "/hooks/{source}", "/health")


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_against_the_openapi_schema(
    server: Server, client: httpx.Client, mode: str
) -> None:
    """Nice-to-have: requests derived from /openapi.json (valid and invalid shapes)."""
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    chosen = [op for op in operations if op.path in SCHEMA_PATHS]
    assert {op.path for op in chosen} == set(SCHEMA_PATHS), [op.path for op in operations]
    generation = schemathesis.GenerationMode(mode)
    for operation in chosen:
        if mode == "negative" and operation.path == "/health":
            continue  # no parameters: nothing can be made invalid
        _fuzz_operation(server, operation, generation)


def _fuzz_operation(server: Server, operation: Any, generation: Any) -> None:
    @settings(SETTINGS, max_examples=40)
    @given(case=operation.as_strategy(generation_mode=generation))
    def run(case: Any) -> None:
        TALLY.requests += 1
        r = case.call(base_url=server.url, timeout=10)
        TALLY.statuses[r.status_code] = TALLY.statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (case.as_curl_command(), r.status_code, r.text[:300])
        if operation.path == "/health":
            return
        # No generated request carries a credential: nothing is ever accepted.
        assert r.status_code >= 400, (case.as_curl_command(), r.status_code, r.text)
        ctype = {k.lower(): v for k, v in r.headers.items()}.get("content-type", [""])
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/json"), (ctype, r.text)
        payload = r.json()
        assert isinstance(payload["error"], str) and isinstance(payload["detail"], str)

    run()


# --------------------------------------------------------------------------- totals


def test_only_authenticated_requests_were_stored(server: Server) -> None:
    """Runs last in this module: the store holds exactly the events whose 202 we saw."""
    if TALLY.requests == 0:
        pytest.skip("checks what the other tests of this module sent: run the whole module")
    assert TALLY.requests >= MIN_REQUESTS, TALLY.requests
    assert TALLY.accepted, "no authenticated request was accepted: the test proves nothing"
    rows = server.db_rows("SELECT id, source, type, meta FROM events")
    stored = {r["id"] for r in rows}
    extra = [dict(r) for r in rows if r["id"] not in TALLY.accepted][:5]
    assert stored == TALLY.accepted, (len(stored), len(TALLY.accepted), extra)
    assert server.event_count() == len(TALLY.accepted)
    # Nothing that was stored carries a credential.
    for row in server.db_rows("SELECT data, meta FROM events"):
        blob = bytes(row["data"]) + bytes(row["meta"])
        for secret in SECRETS:
            assert secret.encode() not in blob
    log = server.log()
    assert "Traceback" not in log and "request.crashed" not in log, log[-3000:]
    for secret in SECRETS:
        assert secret not in log
    # Both sides were exercised: refusals of several kinds, and acceptances.
    print(f"hostile: {TALLY.requests} requests, statuses {sorted(TALLY.statuses.items())}")
    assert {400, 401, 404, 405, 413, 415, 431}.issubset(TALLY.statuses), TALLY.statuses
