"""Outbound signing: the headers a legitimate sender would attach for each auth scheme.

The mirror image of :mod:`nethook.security.verifiers`, used by ``nethook send``, outbound
notifications and tests. For every scheme, ``build_verifier(auth).verify(headers, body,
now)`` accepts what :func:`sign` returns (with the header names lower-cased).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
import time
import uuid

from ..config import AuthConfig
from ..exceptions import ConfigError
from .verifiers import (
    DEFAULT_AUTHORIZATION_HEADER,
    DEFAULT_HMAC_HEADER,
    DEFAULT_TOKEN_HEADER,
    GITHUB_SIGNATURE_HEADER,
    decode_standard_webhooks_secret,
    load_secrets,
)

__all__ = ["sign"]


def _encode(raw: bytes, encoding: str) -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode("ascii")


def sign(
    auth: AuthConfig,
    body: bytes,
    now: float | None = None,
    *,
    delivery_id: str | None = None,
    event_type: str | None = None,
) -> dict[str, str]:
    """Return the auth headers for sending ``body`` to a source configured with ``auth``.

    The first configured secret is used (during a rotation, put the new one first).
    ``now`` (unix seconds, default the current time) stamps timestamped schemes.
    ``delivery_id`` and ``event_type`` fill GitHub's ``X-GitHub-Delivery`` (a uuid4 if not
    given) and ``X-GitHub-Event``; ``delivery_id`` is the Standard Webhooks ``webhook-id``
    (``msg_<random>`` if not given). Other schemes ignore them.

    Raises :class:`ValueError` for ``meraki``: its secret travels inside the JSON body as
    ``sharedSecret``, so there is no header to compute; put the secret in the body instead.
    Raises :class:`ConfigError` when the config lacks a secret (or a basic-auth username).
    """
    kind = auth.type
    if kind == "none":
        return {}
    if kind == "meraki":
        raise ValueError(
            "meraki sends its shared secret inside the JSON body ('sharedSecret'), "
            "not in a header: add it to the body instead of signing"
        )
    stamp = int(time.time() if now is None else now)
    secret = load_secrets(auth)[0]

    if kind == "token":
        return {auth.header or DEFAULT_TOKEN_HEADER: secret}
    if kind == "bearer":
        return {auth.header or DEFAULT_AUTHORIZATION_HEADER: f"Bearer {secret}"}
    if kind == "basic":
        if not auth.username:
            raise ConfigError("auth.username: basic auth needs a username")
        pair = f"{auth.username}:{secret}".encode()
        value = base64.b64encode(pair).decode("ascii")
        return {auth.header or DEFAULT_AUTHORIZATION_HEADER: f"Basic {value}"}
    if kind == "hmac":
        headers: dict[str, str] = {}
        signed = body
        if auth.timestamp_header:
            headers[auth.timestamp_header] = str(stamp)
            signed = f"{stamp}.".encode("ascii") + body
        digest = hmac.new(secret.encode("utf-8"), signed, auth.algorithm).digest()
        headers[auth.header or DEFAULT_HMAC_HEADER] = auth.prefix + _encode(digest, auth.encoding)
        return headers
    if kind == "github":
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        headers = {
            GITHUB_SIGNATURE_HEADER: "sha256=" + digest.hex(),
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        }
        if event_type is not None:
            headers["X-GitHub-Event"] = event_type
        return headers
    if kind == "standard-webhooks":
        msg_id = delivery_id or f"msg_{_random.token_urlsafe(18)}"
        signed = f"{msg_id}.{stamp}.".encode() + body
        key = decode_standard_webhooks_secret(secret)
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + _encode(digest, "base64"),
        }
    raise ConfigError(f"auth.type: cannot sign for unknown auth type {kind!r}")
