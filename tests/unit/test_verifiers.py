"""Webhook verifiers and signers: known answers, the standardwebhooks package, negatives, fuzz."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from nethook.config import AuthConfig
from nethook.exceptions import AuthError, ConfigError
from nethook.security.signing import sign
from nethook.security.verifiers import (
    NOT_PARSED,
    VERIFIERS,
    Verified,
    Verifier,
    build_verifier,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "signatures.json").read_text())

NOW = 1_700_000_000.0
NEW = "whsec_" + base64.b64encode(b"the-new-secret-0123456789abcdef!").decode()
OLD = "whsec_" + base64.b64encode(b"the-old-secret-0123456789abcdef!").decode()
OTHER = "whsec_" + base64.b64encode(b"an-attacker-guess-0123456789abcd").decode()
BODY = b'{"event": "interface_down", "data": {"device": "r1", "if": "Gi0/1"}}'

# Every header-carried scheme, with options that exercise prefix, encodings and timestamps.
SCHEMES: dict[str, dict[str, Any]] = {
    "token": {"type": "token"},
    "token-custom": {"type": "token", "header": "X-Api-Key"},
    "bearer": {"type": "bearer"},
    "basic": {"type": "basic", "username": "alice"},
    "hmac": {"type": "hmac", "prefix": "sha256="},
    "hmac-sha1-b64": {"type": "hmac", "algorithm": "sha1", "encoding": "base64", "header": "X-Sig"},
    "hmac-ts": {
        "type": "hmac",
        "algorithm": "sha512",
        "timestamp_header": "X-Timestamp",
        "tolerance": 60,
    },
    "github": {"type": "github"},
    "standard-webhooks": {"type": "standard-webhooks"},
}
BODY_SIGNED = ["hmac", "hmac-sha1-b64", "hmac-ts", "github", "standard-webhooks"]
TIMESTAMPED = {"hmac-ts": ("x-timestamp", 60), "standard-webhooks": ("webhook-timestamp", 300)}
# Informational headers: verification does not depend on them.
OPTIONAL = {"x-github-delivery", "x-github-event"}
NOT_SECRET = OPTIONAL | {"webhook-id", "webhook-timestamp", "x-timestamp"}


def make_auth(name: str, *secrets: str) -> AuthConfig:
    return AuthConfig.model_validate({**SCHEMES[name], "secrets": list(secrets)})


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def signed(name: str, secret: str = NEW, body: bytes = BODY, now: float = NOW) -> dict[str, str]:
    return lower(sign(make_auth(name, secret), body, now, event_type="push"))


def rotation(name: str) -> Verifier:
    return build_verifier(make_auth(name, NEW, OLD))


def reject(
    verifier: Verifier, headers: Mapping[str, str], body: bytes = BODY, now: float = NOW
) -> str:
    """Assert the request is refused and the reason leaks neither secrets nor credentials."""
    with pytest.raises(AuthError) as info:
        verifier.verify(headers, body, now)
    reason = info.value.reason
    assert reason and len(reason) < 200
    forbidden = {NEW, OLD, OTHER, NEW[6:], OLD[6:], OTHER[6:]}
    for key, value in headers.items():
        if key in NOT_SECRET or len(value) < 6:
            continue
        forbidden |= {value, value.split()[-1] if value.split() else value}
        forbidden |= {value.split(",")[-1], value.split("=", 1)[-1]}
    for item in forbidden:
        if len(item) >= 6:
            assert item not in reason
    return reason


# --------------------------------------------------------------------------- known answers


def test_github_vector() -> None:
    vec = VECTORS["github"]
    auth = AuthConfig(type="github", secret=vec["secret"])
    headers = {vec["header"].lower(): vec["signature"], "x-github-delivery": "d-1"}
    result = build_verifier(auth).verify(headers, vec["body"].encode(), time.time())
    assert result == Verified(delivery_id="d-1")
    assert sign(auth, vec["body"].encode())[vec["header"]] == vec["signature"]


def test_standard_webhooks_vector_pinned_clock_and_real_clock() -> None:
    vec = VECTORS["standard_webhooks"]
    verifier = build_verifier(AuthConfig(type="standard-webhooks", secret=vec["secret"]))
    headers = {k: vec[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    body = vec["body"].encode()
    result = verifier.verify(headers, body, float(vec["webhook-timestamp"]))
    assert result.delivery_id == vec["webhook-id"]
    assert result.event_type is None and result.payload is NOT_PARSED
    assert reject(verifier, headers, body, time.time()) == "timestamp outside tolerance"
    assert (
        sign(
            AuthConfig(type="standard-webhooks", secret=vec["secret"]),
            body,
            float(vec["webhook-timestamp"]),
            delivery_id=vec["webhook-id"],
        )
        == headers
    )


def test_standardwebhooks_package_signs_we_verify() -> None:
    msg_id, now = "msg_2Lh9KRb0pzN4LePd3XEA1d", time.time()
    sig = Webhook(NEW).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), BODY.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now)), "webhook-signature": sig}
    verifier = build_verifier(AuthConfig(type="standard-webhooks", secrets=[OLD, NEW]))
    assert verifier.verify(headers, BODY, now).delivery_id == msg_id


def test_we_sign_standardwebhooks_package_verifies() -> None:
    auth = AuthConfig(type="standard-webhooks", secret=NEW)
    headers = sign(auth, BODY, time.time())
    assert headers["webhook-id"].startswith("msg_")
    assert Webhook(NEW).verify(BODY, headers) == json.loads(BODY)
    # A secret without the whsec_ prefix is the same key, as in the package.
    assert Webhook(NEW[6:]).verify(
        BODY, sign(AuthConfig(type="standard-webhooks", secret=NEW[6:]), BODY)
    )


# --------------------------------------------------------------------------- every scheme


@pytest.mark.parametrize("name", SCHEMES)
def test_round_trip_and_rotation(name: str) -> None:
    verifier = rotation(name)
    for secret in (NEW, OLD):
        result = verifier.verify(signed(name, secret), BODY, NOW)
        assert result.payload is NOT_PARSED
    assert VERIFIERS[SCHEMES[name]["type"]] is type(verifier)


@pytest.mark.parametrize("name", SCHEMES)
def test_wrong_secret(name: str) -> None:
    reason = reject(rotation(name), signed(name, OTHER))
    assert reason in {"invalid token", "invalid credentials", "signature mismatch"}


@pytest.mark.parametrize("name", SCHEMES)
def test_missing_each_required_header(name: str) -> None:
    verifier, headers = rotation(name), signed(name)
    for key in set(headers) - OPTIONAL:
        rest = {k: v for k, v in headers.items() if k != key}
        assert reject(verifier, rest) == f"missing header {key}"
    reject(verifier, {})


@pytest.mark.parametrize("name", BODY_SIGNED)
def test_tampered_body(name: str) -> None:
    verifier, headers = rotation(name), signed(name)
    for i in (0, len(BODY) // 2, len(BODY) - 1):
        tampered = BODY[:i] + bytes([BODY[i] ^ 0x01]) + BODY[i + 1 :]
        assert reject(verifier, headers, tampered) == "signature mismatch"
    reject(verifier, headers, BODY + b" ")
    reject(verifier, headers, b"")


@pytest.mark.parametrize("name", SCHEMES)
def test_truncated_credential(name: str) -> None:
    verifier, headers = rotation(name), signed(name)
    for key in set(headers) - NOT_SECRET:
        for cut in (1, 2, 4):
            reject(verifier, {**headers, key: headers[key][:-cut]})


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize(
    "garbage", ["", "   ", "\u00e9t\u00e9 \u2603", "\x00\x01", "\udcff", "x" * 100_000, "v1,", ","]
)
def test_garbage_header_values(name: str, garbage: str) -> None:
    verifier, headers = rotation(name), signed(name)
    for key in set(headers) - OPTIONAL:
        reject(verifier, {**headers, key: garbage})


@pytest.mark.parametrize("name", list(TIMESTAMPED))
def test_timestamp_window(name: str) -> None:
    verifier = rotation(name)
    _, tolerance = TIMESTAMPED[name]
    for skew in (-tolerance + 1, 0, tolerance - 1):
        verifier.verify(signed(name, now=NOW + skew), BODY, NOW)
    for skew in (-tolerance - 2, tolerance + 2, -(10**6), 10**6):
        assert reject(verifier, signed(name, now=NOW + skew)) == "timestamp outside tolerance"


@pytest.mark.parametrize("name", list(TIMESTAMPED))
@pytest.mark.parametrize(
    "stamp", ["1700000000.0", "-1700000000", "+1700000000", "1e9", "\u0661" * 10]
)
def test_malformed_timestamp(name: str, stamp: str) -> None:
    header, _ = TIMESTAMPED[name]
    assert reject(rotation(name), {**signed(name), header: stamp}) == f"malformed header {header}"


def test_timestamp_is_signed() -> None:
    # Moving the timestamp within the window must still break the signature.
    for name, (header, _) in TIMESTAMPED.items():
        headers = signed(name)
        assert (
            reject(rotation(name), {**headers, header: str(int(NOW) + 1)}) == "signature mismatch"
        )


# --------------------------------------------------------------------------- scheme details


def test_hmac_wrong_algorithm() -> None:
    sha1 = hmac.new(NEW.encode(), BODY, hashlib.sha1).hexdigest()
    verifier = rotation("hmac")
    assert reject(verifier, {"x-signature": "sha256=" + sha1}).startswith("signature length")
    # Same length, different algorithm: configured sha256, a sha256-sized sha3 digest.
    sha3 = hmac.new(NEW.encode(), BODY, hashlib.sha3_256).hexdigest()
    assert reject(verifier, {"x-signature": "sha256=" + sha3}) == "signature mismatch"


def test_hmac_hex_and_prefix_case_insensitive() -> None:
    value = signed("hmac")["x-signature"]
    rotation("hmac").verify({"x-signature": value.upper()}, BODY, NOW)
    reject(rotation("hmac"), {"x-signature": value.removeprefix("sha256=")})


def test_github_details() -> None:
    headers = signed("github")
    assert set(headers) == {"x-hub-signature-256", "x-github-delivery", "x-github-event"}
    result = rotation("github").verify(headers, BODY, NOW)
    assert result.delivery_id == headers["x-github-delivery"] and result.event_type == "push"
    # The legacy SHA-1 header alone is not enough.
    sha1 = "sha1=" + hmac.new(NEW.encode(), BODY, hashlib.sha1).hexdigest()
    assert (
        reject(rotation("github"), {"x-hub-signature": sha1})
        == "missing header x-hub-signature-256"
    )
    given_id = sign(make_auth("github", NEW), BODY, delivery_id="abc")
    assert given_id["X-GitHub-Delivery"] == "abc" and "X-GitHub-Event" not in given_id


def test_standard_webhooks_signature_list() -> None:
    headers = signed("standard-webhooks")
    good = headers["webhook-signature"]
    bad = "v1," + base64.b64encode(b"\0" * 32).decode()
    verifier = rotation("standard-webhooks")
    for value in (f"v1a,abc {bad} junk v2,{good[3:]} {good}", f"{good} {bad}"):
        verifier.verify({**headers, "webhook-signature": value}, BODY, NOW)
    assert reject(verifier, {**headers, "webhook-signature": f"v1a,{good[3:]}"}).startswith(
        "no usable"
    )
    assert reject(verifier, {**headers, "webhook-id": "msg_other"}) == "signature mismatch"


def test_bearer_and_basic_parsing() -> None:
    token = signed("bearer")["authorization"].split()[1]
    rotation("bearer").verify({"authorization": f"bEaReR   {token} "}, b"", NOW)
    reject(rotation("bearer"), {"authorization": token})
    reject(rotation("bearer"), {"authorization": f"Basic {token}"})
    basic = rotation("basic")
    for value in (
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(f"bob:{NEW}".encode()).decode(),
        "Bearer x",
    ):
        reject(basic, {"authorization": value})
    colon_pw = build_verifier(AuthConfig(type="basic", username="u", secret="p:w"))
    colon_pw.verify({"authorization": "Basic " + base64.b64encode(b"u:p:w").decode()}, b"", NOW)


def test_non_ascii_token_from_asgi_latin1_header() -> None:
    verifier = build_verifier(AuthConfig(type="token", secret="p\u00e4ss-\u2603"))
    wire = "p\u00e4ss-\u2603".encode()
    verifier.verify({"x-webhook-token": wire.decode("latin-1")}, b"", NOW)
    verifier.verify({"x-webhook-token": "p\u00e4ss-\u2603"}, b"", NOW)


def test_meraki() -> None:
    verifier = build_verifier(AuthConfig(type="meraki", secrets=[NEW, OLD]))
    for secret in (NEW, OLD):
        body = json.dumps({"alertType": "APs went down", "sharedSecret": secret}).encode()
        assert verifier.verify({}, body, NOW).payload == {"alertType": "APs went down"}
    for body in (
        b"",
        b"not json",
        b"[1, 2]",
        b'"x"',
        b"{}",
        b'{"sharedSecret": 5}',
        b'{"sharedSecret": ""}',
        b"\xff\xfe",
        json.dumps({"sharedSecret": OTHER}).encode(),
    ):
        reject(verifier, {}, body)
    with pytest.raises(ValueError, match="body"):
        sign(AuthConfig(type="meraki", secret=NEW), b"{}")


def test_none_and_needs_body() -> None:
    assert build_verifier(AuthConfig(type="none")).verify({}, b"\xff", NOW) == Verified()
    assert sign(AuthConfig(type="none"), b"") == {}
    header_only = {k for k, cls in VERIFIERS.items() if not cls.needs_body}
    assert header_only == {"none", "token", "bearer", "basic"}


def test_secret_file_rotation_read_once(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text(f"{NEW}\n\n  {OLD}  \n")
    verifier = build_verifier(AuthConfig(type="github", secret_file=path))
    path.unlink()
    for secret in (NEW, OLD):
        verifier.verify(signed("github", secret), BODY, NOW)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"type": "token"}, "needs a secret"),
        ({"type": "hmac", "secrets": []}, "needs a secret"),
        ({"type": "github", "secret": ""}, "needs a secret"),
        ({"type": "standard-webhooks"}, "needs a secret"),
        ({"type": "meraki"}, "needs a secret"),
        ({"type": "basic", "secret": "pw"}, "auth.username"),
        ({"type": "basic", "secret": "pw", "username": "a:b"}, "auth.username"),
        ({"type": "standard-webhooks", "secret": "whsec_a"}, "base64"),
        ({"type": "standard-webhooks", "secret": "whsec_"}, "empty"),
        ({"type": "token", "secret_file": "/nonexistent/nethook-secrets"}, "secret_file"),
    ],
)
def test_build_verifier_fails_closed(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        build_verifier(AuthConfig.model_validate(raw))
    assert "whsec_a" not in str(info.value) and "pw" not in str(info.value)


def test_build_verifier_unknown_type() -> None:
    with pytest.raises(ConfigError, match="unknown auth type 'bogus'"):
        build_verifier(AuthConfig.model_construct(type="bogus"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fuzz

_NAMES = sorted({k for n in SCHEMES for k in signed(n)} | {"authorization", "x-hub-signature"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([*SCHEMES, "meraki"]),
    headers=st.dictionaries(
        st.one_of(st.sampled_from(_NAMES), st.text(max_size=8)),
        st.one_of(
            st.text(max_size=80),
            st.sampled_from(["sha256=", "v1,", "Bearer ", "Basic ", "1700000000", "Basic Og=="]),
        ),
        max_size=6,
    ),
    body=st.one_of(st.binary(max_size=200), st.just(BODY), st.just(b'{"sharedSecret": "x"}')),
    mutate_valid=st.booleans(),
)
def test_fuzz_only_auth_errors(
    name: str, headers: dict[str, str], body: bytes, mutate_valid: bool
) -> None:
    auth = (
        AuthConfig(type="meraki", secrets=[NEW, OLD])
        if name == "meraki"
        else make_auth(name, NEW, OLD)
    )
    verifier = build_verifier(auth)
    if mutate_valid and name != "meraki":
        headers = {**signed(name), **headers}
    try:
        result = verifier.verify(headers, body, NOW)
    except AuthError as exc:
        assert NEW not in exc.reason and OLD not in exc.reason
    else:
        assert isinstance(result, Verified)
