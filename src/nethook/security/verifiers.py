"""Inbound webhook authentication: one fail-closed :class:`Verifier` per ``auth.type``.

Verifiers are pure: lower-cased headers, the raw body bytes and the current time go in, a
:class:`Verified` or an :class:`~nethook.exceptions.AuthError` comes out. Signatures are
computed over the raw body exactly as received (never re-serialised JSON), and every
comparison involving a secret goes through :func:`hmac.compare_digest`. Secrets are read and
encoded once, in :func:`build_verifier`; a verifier never holds a ``str`` secret.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from ..config import AuthConfig
from ..exceptions import AuthError, ConfigError

DEFAULT_TOKEN_HEADER: Final = "X-Webhook-Token"
DEFAULT_AUTHORIZATION_HEADER: Final = "Authorization"
DEFAULT_HMAC_HEADER: Final = "X-Signature"
GITHUB_SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
STANDARD_WEBHOOKS_SECRET_PREFIX: Final = "whsec_"

# Any legitimate auth header is far shorter; refusing long ones early bounds the work an
# unauthenticated client can make us do (base64 decoding, splitting signature lists).
MAX_HEADER_CHARS: Final = 8192
# Unix seconds until the year 33658: enough digits, and int() never sees a huge string.
_MAX_TIMESTAMP_DIGITS: Final = 12
_HEX = re.compile(r"[0-9A-Fa-f]+")
# The webhook-id goes into the signed content; printable ASCII keeps its bytes unambiguous.
_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")


class _Sentinel(enum.Enum):
    NOT_PARSED = "NOT_PARSED"

    def __repr__(self) -> str:
        return self.value


NOT_PARSED: Final = _Sentinel.NOT_PARSED
"""``Verified.payload`` when the verifier did not parse the body (ingress parses it)."""


@dataclass(frozen=True, slots=True)
class Verified:
    """What a successful verification learned about the request.

    ``payload`` is :data:`NOT_PARSED` unless the verifier had to parse the JSON body itself
    (``meraki``: the parsed object with ``sharedSecret`` removed); ingress then uses it
    instead of parsing again.
    """

    delivery_id: str | None = None
    event_type: str | None = None
    payload: Any = NOT_PARSED


class Verifier(ABC):
    """Checks one request against one source's auth config."""

    needs_body: ClassVar[bool] = True
    """False for header-only schemes: ingress may verify before reading the body."""

    @abstractmethod
    def __init__(self, auth: AuthConfig) -> None:
        """Take what the scheme needs from ``auth``; :class:`ConfigError` if it is unusable."""

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        """Return :class:`Verified` or raise :class:`AuthError` with a log-safe reason.

        ``headers`` has lower-case keys; ``now`` is unix seconds.
        """


# --------------------------------------------------------------------------- helpers


def load_secrets(auth: AuthConfig) -> list[str]:
    """Every configured secret, in order; :class:`ConfigError` if there is none."""
    try:
        found = auth.all_secrets()
    except OSError as exc:
        raise ConfigError(
            f"auth.secret_file: cannot read {auth.secret_file}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"auth.secret_file: {auth.secret_file} is not UTF-8 text") from None
    if not found:
        raise ConfigError(
            f"auth: type {auth.type!r} needs a secret (secret, token, secrets or secret_file)"
        )
    return found


def decode_standard_webhooks_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret, as the ``standardwebhooks`` package derives it.

    The prefix is optional, missing padding is tolerated and the decode is lenient, exactly
    like the package, so sender and receiver derive the same key from the same string.
    """
    text = secret.removeprefix(STANDARD_WEBHOOKS_SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "==")
    except ValueError:  # binascii.Error, or non-ASCII text
        raise ConfigError(
            "auth.secret: a standard-webhooks secret must be base64, optionally prefixed whsec_"
        ) from None
    if not key:
        raise ConfigError("auth.secret: the standard-webhooks secret decodes to an empty key")
    return key


def _header(headers: Mapping[str, str], name: str) -> str:
    """The stripped value of a required header (``name`` is lower-case)."""
    value = headers.get(name)
    if value is None or not value.strip(" \t"):
        raise AuthError(f"missing header {name}")
    if len(value) > MAX_HEADER_CHARS:
        raise AuthError(f"header {name} too long")
    return value.strip(" \t")


def _optional_header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    return value.strip(" \t")[:MAX_HEADER_CHARS] or None


def _wire_forms(value: str) -> tuple[bytes, ...]:
    """The bytes a header value may stand for.

    ASGI servers decode header bytes as latin-1, so latin-1 recovers what was on the wire;
    a str built in Python (tests, the CLI) means UTF-8. Both are the same for ASCII.
    """
    utf8 = value.encode("utf-8", "surrogatepass")
    try:
        latin = value.encode("latin-1")
    except UnicodeEncodeError:
        return (utf8,)
    return (utf8,) if latin == utf8 else (utf8, latin)


def _digest(value: bytes) -> bytes:
    # Comparing fixed-size digests instead of the raw values keeps compare_digest from
    # revealing the secret's length through its early length check.
    return hashlib.sha256(value).digest()


def _any_equal(presented: Iterable[bytes], expected: Iterable[bytes]) -> bool:
    """Constant-time "is any presented value one of the expected ones"."""
    wanted = tuple(expected)
    ok = False
    for candidate in presented:
        for value in wanted:
            # No early exit: the time taken must not tell which secret matched.
            ok |= hmac.compare_digest(candidate, value)
    return ok


def _check_timestamp(text: str, name: str, now: float, tolerance: float) -> None:
    """Accept integer unix seconds within ``tolerance`` of ``now``, in either direction."""
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_TIMESTAMP_DIGITS):
        raise AuthError(f"malformed header {name}")
    # Future timestamps are refused too: a sender with a fast clock could otherwise mint
    # signatures that stay replayable for as long as its clock is ahead.
    if abs(now - int(text)) > tolerance:
        raise AuthError("timestamp outside tolerance")


def _split_authorization(value: str, scheme: str, name: str) -> str:
    """The credentials of ``<scheme> <credentials>``; the scheme word is case-insensitive."""
    parts = value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != scheme:
        raise AuthError(f"malformed header {name}")
    return parts[1].strip()


# --------------------------------------------------------------------------- header-only


class NoneVerifier(Verifier):
    """``type: none`` accepts every request (an explicit opt-out)."""

    needs_body = False

    def __init__(self, auth: AuthConfig) -> None:
        pass  # nothing to read: not even a secret_file

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        return Verified()


class TokenVerifier(Verifier):
    """A header (default ``X-Webhook-Token``) whose value is one of the secrets."""

    needs_body = False
    default_header: ClassVar[str] = DEFAULT_TOKEN_HEADER

    def __init__(self, auth: AuthConfig) -> None:
        self.header = (auth.header or self.default_header).lower()
        self._digests = tuple(_digest(s.encode("utf-8")) for s in load_secrets(auth))

    def _token(self, headers: Mapping[str, str]) -> str:
        return _header(headers, self.header)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        token = self._token(headers)
        if not _any_equal(map(_digest, _wire_forms(token)), self._digests):
            raise AuthError("invalid token")
        return Verified()


class BearerVerifier(TokenVerifier):
    """``Authorization: Bearer <token>`` where the token is one of the secrets."""

    default_header = DEFAULT_AUTHORIZATION_HEADER

    def _token(self, headers: Mapping[str, str]) -> str:
        return _split_authorization(_header(headers, self.header), "bearer", self.header)


class BasicVerifier(Verifier):
    """``Authorization: Basic base64(user:password)``; the password is any of the secrets."""

    needs_body = False

    def __init__(self, auth: AuthConfig) -> None:
        if not auth.username:
            raise ConfigError("auth.username: basic auth needs a username")
        if ":" in auth.username:
            raise ConfigError("auth.username: a basic auth username cannot contain ':'")
        self.header = (auth.header or DEFAULT_AUTHORIZATION_HEADER).lower()
        self._user = _digest(auth.username.encode("utf-8"))
        self._passwords = tuple(_digest(s.encode("utf-8")) for s in load_secrets(auth))

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        encoded = _split_authorization(_header(headers, self.header), "basic", self.header)
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise AuthError(f"malformed header {self.header}") from None
        user, colon, password = decoded.partition(b":")
        if not colon:
            raise AuthError(f"malformed header {self.header}")
        # Both halves are always compared so timing does not reveal a valid username.
        user_ok = hmac.compare_digest(_digest(user), self._user)
        password_ok = _any_equal([_digest(password)], self._passwords)
        if not (user_ok and password_ok):
            raise AuthError("invalid credentials")
        return Verified()


# --------------------------------------------------------------------------- signatures


class HmacVerifier(Verifier):
    """A generic HMAC signature header over the raw body, optionally with a signed timestamp.

    With ``timestamp_header`` the signed bytes are ``b"<timestamp>." + body`` and the
    timestamp must be within ``tolerance`` seconds of ``now``.
    """

    def __init__(self, auth: AuthConfig) -> None:
        self.header = (auth.header or DEFAULT_HMAC_HEADER).lower()
        self.algorithm = auth.algorithm
        self.encoding = auth.encoding
        self.prefix = auth.prefix.lower()
        self.timestamp_header = auth.timestamp_header.lower() if auth.timestamp_header else None
        self.tolerance = auth.tolerance
        self._size = hashlib.new(auth.algorithm).digest_size
        self._keys = tuple(s.encode("utf-8") for s in load_secrets(auth))

    def _presented(self, value: str) -> bytes:
        """Decode the header into raw signature bytes of the algorithm's size."""
        # Prefixes such as "sha256=" are matched case-insensitively, like the hex digits.
        if value[: len(self.prefix)].lower() != self.prefix:
            raise AuthError(f"malformed header {self.header}")
        text = value[len(self.prefix) :]
        if self.encoding == "hex":
            if not (text.isascii() and _HEX.fullmatch(text)) or len(text) % 2:
                raise AuthError(f"malformed header {self.header}")
            raw = bytes.fromhex(text)
        else:
            try:
                raw = base64.b64decode(text, validate=True)
            except ValueError:
                raise AuthError(f"malformed header {self.header}") from None
        if len(raw) != self._size:
            raise AuthError(f"signature length does not match {self.algorithm}")
        return raw

    def _check(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        presented = self._presented(_header(headers, self.header))
        signed = body
        if self.timestamp_header is not None:
            stamp = _header(headers, self.timestamp_header)
            _check_timestamp(stamp, self.timestamp_header, now, self.tolerance)
            signed = stamp.encode("ascii") + b"." + body
        expected = (hmac.new(key, signed, self.algorithm).digest() for key in self._keys)
        if not _any_equal([presented], expected):
            raise AuthError("signature mismatch")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        self._check(headers, body, now)
        return Verified()


class GitHubVerifier(HmacVerifier):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

    The legacy SHA-1 ``X-Hub-Signature`` is deliberately not accepted.
    """

    def __init__(self, auth: AuthConfig) -> None:
        # GitHub's format is fixed; header/algorithm/prefix settings in the config do not apply.
        fixed: dict[str, Any] = {"header": GITHUB_SIGNATURE_HEADER, "algorithm": "sha256"}
        fixed |= {"encoding": "hex", "prefix": "sha256=", "timestamp_header": None}
        super().__init__(auth.model_copy(update=fixed))

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        self._check(headers, body, now)
        return Verified(
            delivery_id=_optional_header(headers, "x-github-delivery"),
            event_type=_optional_header(headers, "x-github-event"),
        )


class StandardWebhooksVerifier(Verifier):
    """The Standard Webhooks spec: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

    Signed content is ``b"<id>.<timestamp>." + body`` (HMAC-SHA256, base64). The signature
    header lists space-separated ``<version>,<signature>`` entries; any matching ``v1`` entry
    passes and other versions are ignored. The event type lives in the body's ``type``.
    """

    def __init__(self, auth: AuthConfig) -> None:
        self._keys = tuple(decode_standard_webhooks_secret(s) for s in load_secrets(auth))
        self.tolerance = auth.tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        msg_id = _header(headers, "webhook-id")
        if not _WEBHOOK_ID.fullmatch(msg_id):
            raise AuthError("malformed header webhook-id")
        stamp = _header(headers, "webhook-timestamp")
        _check_timestamp(stamp, "webhook-timestamp", now, self.tolerance)
        presented = []
        for entry in _header(headers, "webhook-signature").split():
            version, comma, signature = entry.partition(",")
            if not comma or version != "v1":
                continue
            try:
                raw = base64.b64decode(signature, validate=True)
            except ValueError:
                continue
            if len(raw) == hashlib.sha256().digest_size:
                presented.append(raw)
        if not presented:
            raise AuthError("no usable v1 signature in webhook-signature")
        signed = f"{msg_id}.{stamp}.".encode("ascii") + body
        expected = (hmac.new(key, signed, hashlib.sha256).digest() for key in self._keys)
        if not _any_equal(presented, expected):
            raise AuthError("signature mismatch")
        return Verified(delivery_id=msg_id)


class MerakiVerifier(Verifier):
    """Cisco Meraki: the JSON body carries ``sharedSecret``, compared against the secrets.

    The parsed body (without ``sharedSecret``, so it is never stored) is returned as
    ``Verified.payload``.
    """

    def __init__(self, auth: AuthConfig) -> None:
        self._digests = tuple(_digest(s.encode("utf-8")) for s in load_secrets(auth))

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AuthError("body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise AuthError("body is not a JSON object")
        presented = payload.pop("sharedSecret", None)
        if not isinstance(presented, str) or not presented:
            raise AuthError("missing sharedSecret")
        if not _any_equal([_digest(presented.encode("utf-8", "surrogatepass"))], self._digests):
            raise AuthError("invalid sharedSecret")
        return Verified(payload=payload)


VERIFIERS: dict[str, type[Verifier]] = {
    "none": NoneVerifier,
    "token": TokenVerifier,
    "bearer": BearerVerifier,
    "basic": BasicVerifier,
    "hmac": HmacVerifier,
    "github": GitHubVerifier,
    "standard-webhooks": StandardWebhooksVerifier,
    "meraki": MerakiVerifier,
}
"""Verifier class per ``AuthConfig.type``."""


def build_verifier(auth: AuthConfig) -> Verifier:
    """The verifier for ``auth``; fail-closed with :class:`ConfigError` when it cannot enforce it.

    Secrets (including ``secret_file``) are read here, once.
    """
    cls = VERIFIERS.get(auth.type)
    if cls is None:
        raise ConfigError(
            f"auth.type: unknown auth type {auth.type!r} (known: {', '.join(VERIFIERS)})"
        )
    return cls(auth)
