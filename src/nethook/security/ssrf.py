"""The SSRF guard for outbound requests whose URL a rule (or an event) can choose.

A ``notify`` URL is a template: a payload field can end up deciding where nethook connects.
Without a guard, an event could make nethook POST to the cloud metadata service
(169.254.169.254), to an admin port on loopback or to anything on the management network.
So every address a target host resolves to must be globally routable, unless the config
says private targets are expected (``notify.allow_private`` or a per-action
``allow_private: true``, e.g. a Webex relay inside the company network).

DNS rebinding: checking a name, then letting the HTTP client resolve it again, leaves a
window in which a hostile DNS server answers "public" to the check and "127.0.0.1" to the
connection. :class:`GuardedTransport` closes it: the check runs inside the connection
step (an httpcore network backend), and the socket is opened to the very address that was
vetted. TLS still verifies the certificate against the URL's host name (httpcore passes
the origin host as ``server_hostname``), so connecting by address changes nothing there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from ..exceptions import PermanentError, TransientError

__all__ = [
    "GuardedTransport",
    "SSRFRefused",
    "check_address",
    "check_url",
    "guarded_client",
    "resolve_checked",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052) embeds an IPv4 address in the low 32 bits; 64:ff9b::a00:1 reaches 10.0.0.1
# on a network with a NAT64 gateway, so the embedded address is what must be checked.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class SSRFRefused(PermanentError):
    """An outbound target is not allowed (private address, bad scheme...). Not retried."""


def _embedded_v4(ip: IPAddress) -> tuple[ipaddress.IPv4Address | None, bool]:
    """The IPv4 address inside an IPv6 one, and whether it alone decides.

    IPv4-mapped (``::ffff:127.0.0.1`` is 127.0.0.1 to a dual-stack socket) and NAT64
    addresses *are* their IPv4 address: it alone decides (Python 3.11 calls both ranges
    "reserved", which would wrongly refuse ``::ffff:8.8.8.8``). 6to4 and Teredo carry one
    too: refuse when it is private, otherwise judge the IPv6 address as it is.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return None, False
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, True
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), True
    if ip.sixtofour is not None:
        return ip.sixtofour, False
    if ip.teredo is not None:
        return ip.teredo[1], False
    return None, False


def check_address(ip: IPAddress | str) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``...), or None if it is.

    The named categories come first so the message says what the address is; anything
    else that is not globally routable (carrier-grade NAT 100.64/10, 192.0.0.0/24...) is
    refused as "not globally routable".
    """
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    inner, decides = _embedded_v4(addr)
    if inner is not None:
        why = check_address(inner)
        if why is not None:
            return f"{why} (embedded IPv4 {inner})"
        if decides:
            return None
    for attr, label in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(addr, attr):
            return label
    if not addr.is_global:
        return "not globally routable"
    return None


def check_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL; SSRFRefused for any other scheme."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SSRFRefused(f"invalid url: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        # The URL itself stays out of messages: webhook URLs carry secrets in their path.
        raise SSRFRefused(f"refusing url: scheme {scheme or '(none)'!r} is not http or https")
    if not parts.hostname:
        raise SSRFRefused("refusing url: it has no host")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


async def resolve_checked(host: str, port: int, allow_private: bool = False) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing non-public ones.

    Every address must pass, not just the first: a name that answers both a public and a
    private address would otherwise reach the private one whenever the client falls back.
    Resolution failures are transient (DNS may recover); refusals are permanent.
    """
    literal = host.strip("[]")
    ips = await _addresses(literal, port)
    if not allow_private:
        for ip in ips:
            why = check_address(ip)
            if why is not None:
                shown = host if _is_literal(literal, ip) else f"{host} ({ip})"
                raise SSRFRefused(
                    f"refusing to connect to {shown}: {why} address; set "
                    "notify.allow_private (or allow_private: true on the action) "
                    "if this target is meant to be inside your network"
                )
    return [str(ip) for ip in ips]


def _is_literal(host: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host) == ip
    except ValueError:
        return False


async def _addresses(host: str, port: int) -> list[IPAddress]:
    """An IP literal as itself; a name resolved with the loop's (threaded) getaddrinfo."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    # Drop IPv6 zone ids ("fe80::1%eth0") so the category checks see the bare address.
    ips = _unique(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
    if not ips:
        raise TransientError(f"cannot resolve {host!r}: no addresses")
    return ips


def _unique(ips: Iterable[IPAddress]) -> list[IPAddress]:
    seen: dict[IPAddress, None] = {}
    for ip in ips:
        seen.setdefault(ip, None)
    return list(seen)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the check in ``connect_tcp``: resolve, vet, connect
    to the vetted address (no second lookup, so no rebinding window)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(host, port, self.allow_private)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # try the next vetted address, as a resolver-driven client would
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise SSRFRefused("unix sockets are not allowed for outbound notifications")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through the SSRF guard."""

    def __init__(self, allow_private: bool = False, verify: ssl.SSLContext | bool = True) -> None:
        # trust_env=False: an HTTP(S)_PROXY from the environment would make the proxy, not
        # us, resolve the target, and the guard would vet the proxy's address instead.
        super().__init__(verify=verify, trust_env=False)
        # httpx does not expose httpcore's ``network_backend``; rebuild its pool with the
        # same SSL context and our backend. The isinstance check makes an httpx upgrade
        # that changes this internal fail loudly (tests cover it) instead of unguarded.
        pool = self._pool
        if not isinstance(pool, httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx internals changed: cannot install the SSRF guard")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=10,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(allow_private),
        )


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    # Building a verifying SSL context loads the CA bundle (milliseconds); do it once per
    # process and share it (an SSLContext is not tied to an event loop).
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context()
    return _SSL_CONTEXT


def guarded_client(
    allow_private: bool = False, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """A short-lived client for one delivery: guarded, no redirects, no proxy from env.

    ``verify``: True (the system CA bundle), False, or an SSLContext (a private CA).

    Redirects stay off: a 30x to an internal address would be a second, unchecked target
    (the guard would catch the connection, but a redirect is not a delivery either).
    """
    ctx: ssl.SSLContext | bool = _ssl_context() if verify is True else verify
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private, verify=ctx),
        follow_redirects=False,
        trust_env=False,
    )
