"""Who may see the dashboard: admin credentials, a signed session cookie, CSRF tokens.

The dashboard accepts what ``/api`` accepts (``admin.token`` as Bearer, ``admin.username``/
``admin.password`` as Basic, loopback when neither is configured) plus a session cookie set
by the login form. The cookie is ``v1.<expiry>.<mac>``: an HMAC over its expiry, keyed from
the admin secret through scrypt, so a session survives restarts and works on every node that
shares the config, changing the password ends every session, and a stolen cookie is no cheap
oracle for guessing the password offline. It is HttpOnly and SameSite=Strict.

Every state-changing dashboard request (replay, bulk replay, logout) must also carry a CSRF
token: an HMAC over what authenticated the request (the cookie, the Basic user...), sent as
a form field or an ``X-CSRF-Token`` header. Browsers attach cookies and cached Basic
credentials to cross-site requests, so the credential alone proves nothing about intent.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from fastapi import Request

from ..api import require_admin
from ..exceptions import RequestRejected

if TYPE_CHECKING:
    from ..config import AdminConfig
    from ..service import Service

COOKIE = "nethook_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 12 * 3600

# With no admin credentials the dashboard is loopback-only and has no sessions; CSRF tokens
# still need a key, and one per process is enough (a restart reloads the page anyway).
_PROCESS_KEY = os.urandom(32)

Kind = Literal["session", "basic", "bearer", "loopback"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated dashboard user: how they authenticated, and what their CSRF
    token is bound to (the cookie value, the Basic user name...)."""

    kind: Kind
    binding: str


def configured(admin: AdminConfig) -> bool:
    """True when admin credentials exist (the same test ``require_admin`` makes)."""
    return admin.token is not None or admin.password is not None


@functools.lru_cache(maxsize=4)
def _derive(material: bytes) -> bytes:
    # scrypt (16 MiB, ~50 ms, once per process and secret): a captured cookie must not make
    # guessing a weak admin password cheap.
    return hashlib.scrypt(material, salt=b"nethook-dashboard-session-v1", n=2**14, r=8, p=1)


def secret_key(admin: AdminConfig) -> bytes:
    """The key for session cookies and CSRF tokens under these admin credentials."""
    if not configured(admin):
        return _PROCESS_KEY
    parts = [
        admin.token.get_secret_value() if admin.token else "",
        admin.username or "",
        admin.password.get_secret_value() if admin.password else "",
    ]
    return _derive("\0".join(parts).encode())


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def make_session(key: bytes, now: float | None = None, ttl: int = SESSION_SECONDS) -> str:
    """A session cookie value valid for ``ttl`` seconds."""
    expiry = str(int((time.time() if now is None else now) + ttl))
    return f"v1.{expiry}.{_mac(key, 'session', expiry)}"


def check_session(key: bytes, value: str, now: float | None = None) -> bool:
    """True for an unexpired cookie value signed with ``key``."""
    version, _, rest = value.partition(".")
    expiry, _, mac = rest.partition(".")
    if version != "v1" or not expiry.isdigit() or len(mac) != 64:
        return False
    if not hmac.compare_digest(mac, _mac(key, "session", expiry)):
        return False
    return int(expiry) > (time.time() if now is None else now)


def check_login(admin: AdminConfig, username: str, password: str) -> bool:
    """The login form: ``admin.username``/``admin.password``, or the admin token as the
    password (any user name) when a token is configured. Constant-time compares."""
    ok = False
    if admin.username is not None and admin.password is not None:
        user_ok = hmac.compare_digest(username.encode(), admin.username.encode())
        pass_ok = hmac.compare_digest(password.encode(), admin.password.get_secret_value().encode())
        ok = user_ok and pass_ok
    if admin.token is not None:
        ok = hmac.compare_digest(password.encode(), admin.token.get_secret_value().encode()) or ok
    return ok


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def authenticate(request: Request) -> Principal | None:
    """The request's principal, or None when it must log in."""
    admin = _service(request).config.admin
    cookie = request.cookies.get(COOKIE)
    if cookie and configured(admin) and check_session(secret_key(admin), cookie):
        return Principal("session", cookie)
    try:
        require_admin(request)
    except RequestRejected:
        return None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if configured(admin) and scheme.lower() == "basic":
        return Principal("basic", value.strip())
    if configured(admin):
        return Principal("bearer", "bearer")
    return Principal("loopback", "loopback")


def csrf_token(request: Request, principal: Principal) -> str:
    """The CSRF token for pages served to ``principal``."""
    key = secret_key(_service(request).config.admin)
    return _mac(key, "csrf", principal.kind, principal.binding)


def check_csrf(request: Request, principal: Principal, submitted: str | None) -> None:
    """403 unless ``submitted`` (form field) or the ``X-CSRF-Token`` header is right."""
    given = submitted or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), csrf_token(request, principal).encode()):
        raise RequestRejected(403, "csrf", "missing or wrong CSRF token; reload the page")


def safe_next(target: str | None) -> str:
    """A same-site path to go to after login (never an absolute or protocol-relative URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_url(request: Request) -> str:
    """Where an unauthenticated browser goes, remembering the page it asked for."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/ui/login" if target == "/" else f"/ui/login?next={quote(target, safe='')}"
