"""Syslog transports: listen addresses, sockets, UDP reading and TCP framing (RFC 6587).

The socket side of :mod:`.syslog`. It knows bytes and peers, not events: every message it
reads goes to a :class:`Sink` (the listener), which counts, filters and queues it.
:class:`Framer` is pure (bytes in, frames out) so the framing rules are unit-tested
without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import structlog

from ..exceptions import ConfigError

log = structlog.get_logger("nethook.syslog")

UDP_RCVBUF = 8 * 1024 * 1024  # asked for; the kernel caps it at net.core.rmem_max
MAX_LENGTH_DIGITS = 10  # an octet count longer than this is not a length


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """``udp://0.0.0.0:5514`` or ``tcp://[::]:5514``."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_listen(value: str | None, where: str) -> list[ListenAddress]:
    """Parse a source's ``listen:`` (one URL, or several separated by commas or spaces)."""
    if not value or not value.strip():
        raise ConfigError(f"{where}: a syslog source needs listen: udp://HOST:PORT or tcp://...")
    out: list[ListenAddress] = []
    for item in value.replace(",", " ").split():
        parts = urlsplit(item)
        if parts.scheme not in ("udp", "tcp") or parts.path not in ("", "/"):
            raise ConfigError(f"{where}: {item!r}: expected udp://HOST:PORT or tcp://HOST:PORT")
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None or parts.hostname is None:
            raise ConfigError(f"{where}: {item!r}: needs a host and a port (0-65535)")
        out.append(ListenAddress(parts.scheme, parts.hostname, port))
    return out


def plain_address(value: str) -> str:
    """``::ffff:10.0.0.1`` (an IPv4 sender on a dual-stack socket) -> ``10.0.0.1``."""
    try:
        addr = ipaddress.ip_address(value.split("%", 1)[0].strip("[]"))
    except ValueError:
        return value
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def open_socket(addr: ListenAddress) -> socket.socket:
    """A bound, non-blocking socket; ``[::]`` is dual-stack (asyncio would set IPV6_V6ONLY)."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    kind = socket.SOCK_DGRAM if addr.transport == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            # "[::]" also receives IPv4 (as ::ffff:a.b.c.d), whatever the host's default.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if kind == socket.SOCK_STREAM:
            # Restart without waiting for TIME_WAIT. Not for UDP: there it would let a
            # second process bind the same port and silently take part of the traffic.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            # A burst must fit in the socket buffer while the loop is busy with a batch.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        sock.bind((addr.host, addr.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def kernel_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped on a UDP socket (buffer full): Linux ``/proc``, else 0."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        name = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
        with open(name, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if len(cols) > 12 and cols[9] == inode:
                    return int(cols[12])
    except (OSError, ValueError, StopIteration):
        pass
    return 0


# --------------------------------------------------------------------------- the sink


class Sink(Protocol):
    """What the transports hand messages to (the listener)."""

    name: str
    max_message: int

    def receive(self, data: bytes, address: str, transport: str) -> None: ...

    def allowed(self, address: str) -> bool: ...

    def full(self) -> bool: ...

    def drop(self, reason: str, n: int = 1) -> None: ...

    def connected(self, conn: TCPConnection, alive: bool) -> None: ...


# --------------------------------------------------------------------------- UDP


class UDPReader:
    """One message per datagram (RFC 5426), read straight off a non-blocking socket.

    A reader callback that empties the socket buffer on every wake-up, rather than a
    DatagramProtocol: uvloop reads at most a few dozen datagrams per loop iteration, so
    during a burst the kernel buffer would overflow while the loop is busy with a batch.
    """

    MAX_PER_WAKE = 20_000  # then yield to the loop, even if more is waiting

    def __init__(self, sink: Sink, sock: socket.socket) -> None:
        self.sink = sink
        self.sock = sock

    def on_readable(self) -> None:
        recv, receive = self.sock.recvfrom, self.sink.receive
        for _ in range(self.MAX_PER_WAKE):
            try:
                data, addr = recv(65_535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors surfacing on the socket
                log.warning("syslog.udp_error", source=self.sink.name, error=str(exc))
                return
            receive(data, addr[0], "udp")


# --------------------------------------------------------------------------- TCP


class Framer:
    """RFC 6587 framing, detected per frame: ``LEN SP MSG`` (octet counting) or ``MSG LF``.

    Senders do not announce their framing, and RFC 6587 section 3.4 notes that the first
    character tells them apart: a digit starts an octet count (a syslog message starts with
    ``<``). A line of digits not followed by a space (Cisco text without a PRI, such as
    ``1431: ...``) is newline-framed. ``too_large`` counts frames over ``limit``; a length
    over ``limit`` sets ``broken`` (the stream cannot be resynchronised: close it).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.skipping = False  # inside an over-long newline-framed line: discard to its LF
        self.too_large = 0
        self.broken = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete frames (blank lines are skipped)."""
        if self.broken:
            return []
        buf = self.buf
        buf += data
        out: list[bytes] = []
        pos, n, limit = 0, len(buf), self.limit
        while pos < n:
            if self.skipping:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    pos = n
                    break
                self.skipping, pos = False, nl + 1
                continue
            digits = pos
            while digits < n and digits - pos < MAX_LENGTH_DIGITS and 48 <= buf[digits] <= 57:
                digits += 1
            if digits == n:
                if digits - pos < MAX_LENGTH_DIGITS:
                    break  # only digits so far: a length or the start of a line; wait
            elif digits > pos and buf[digits] == 32:
                length = int(buf[pos:digits])
                if length > limit:
                    self.too_large += 1
                    self.broken = True
                    buf.clear()
                    return out
                end = digits + 1 + length
                if end > n:
                    break
                out.append(bytes(buf[digits + 1 : end]))
                pos = end
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if n - pos > limit:
                    self.too_large += 1
                    self.skipping, pos = True, n
                break
            if nl - pos > limit:
                self.too_large += 1
            elif buf[pos:nl].strip():
                out.append(bytes(buf[pos:nl]))
            pos = nl + 1
        del buf[:pos]
        return out

    def flush(self) -> bytes | None:
        """At end of stream: what is left, as a last message (a non-transparent sender may
        end its last message with the connection instead of a LF)."""
        rest = None if self.skipping or self.broken else bytes(self.buf).strip()
        self.buf.clear()
        return rest or None


class TCPConnection(asyncio.Protocol):
    """One TCP sender: allowlist at accept, frames to the sink, back-pressure when full."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.framer = Framer(sink.max_message)
        self.peer = "-"
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "-"
        if not self.sink.allowed(self.peer):
            self.sink.drop("forbidden")
            log.warning("syslog.forbidden", source=self.sink.name, client=self.peer)
            self.transport.abort()
            return
        self.sink.connected(self, True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.connected(self, False)
        rest = self.framer.flush()
        if rest is not None:
            self.sink.receive(rest, self.peer, "tcp")

    def data_received(self, data: bytes) -> None:
        framer = self.framer
        before = framer.too_large
        for frame in framer.feed(data):
            self.sink.receive(frame, self.peer, "tcp")
        if framer.too_large > before:
            self.sink.drop("too_large", framer.too_large - before)
        if framer.broken:
            log.warning("syslog.frame_too_large", source=self.sink.name, client=self.peer)
            self.close()
        elif self.sink.full():
            self.pause()

    def pause(self) -> None:
        if self.transport is not None and self.transport.is_reading():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
