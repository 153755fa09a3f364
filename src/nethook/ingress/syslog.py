"""Syslog listeners: UDP and TCP (RFC 6587 newline and octet-counted framing), IPv4 and IPv6.

A source ``{type: syslog, listen: "udp://0.0.0.0:5514, tcp://[::]:5514", allow: [CIDR...]}``
gets one listener per address. The socket side does as little as possible (allowlist check,
append raw bytes to a queue) so that a burst is read off the socket before the kernel buffer
overflows; a drain task parses the queued lines (:mod:`.syslog_parser`) and stores them with
``store.append_many`` in batches, so the store sees a few large group commits instead of
thousands of small ones. Counts: every message read is *received*, then either *stored* or
*dropped* with a reason (:mod:`nethook.metrics`).

Syslog has no acknowledgement and no delivery id: each message is a new event, delivered
at most once. TCP senders get back-pressure (reading pauses while the queue is full); UDP
senders cannot, so the queue is large and a full queue drops (and counts) new messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from .. import metrics
from ..config import SourceConfig
from ..events import EventDraft
from ..exceptions import ConfigError, StoreUnavailable
from ..security.limits import Network, in_networks, parse_networks
from . import syslog_parser
from .syslog_transport import (
    ListenAddress,
    TCPConnection,
    UDPReader,
    kernel_drops,
    open_socket,
    parse_listen,
    plain_address,
)

if TYPE_CHECKING:
    from ..service import Service

log = structlog.get_logger("nethook.syslog")

DEFAULT_MAX_MESSAGE = 65_536  # bytes; a UDP datagram cannot be larger anyway
MAX_QUEUE = 200_000  # messages held in memory while the store catches up
# Messages per append_many: big enough for few commits, small enough that parsing one
# batch does not keep the loop from the UDP socket for long (~7 us per message).
BATCH = 1000
STORE_RETRY_MAX = 5.0  # seconds between attempts while the store is unavailable
DRAIN_ON_STOP = 10.0  # seconds to store what is queued when the service stops
DEVICE_CACHE_SECONDS = 30.0


# --------------------------------------------------------------------------- inventory


def resolve_device(inventory: Any, address: str | None, host: str | None) -> str | None:
    """The inventory name of the device that sent a message: by source address, then hostname.

    Address first: a direct sender's address is authoritative, and a relay's address is not
    in the inventory, so its messages fall through to the hostname they carry. Shapes
    understood, in order:

    * an object with ``by_address(address)`` and/or ``find(key)`` (part 4/7's
      :class:`~nethook.devices.inventory.Inventory`), or ``resolve``/``lookup(key)``,
      returning a device (``.name``), a mapping with ``"name"``, a name, or None;
    * a mapping: the template view ``{"devices": {name: {"host", "addresses"}}}`` or plain
      ``{name: device}``, matched by name, ``host`` or ``addresses``.

    None when nothing matches (the caller then uses the hostname).
    """
    if inventory is None:
        return None
    for key, is_address in ((address, True), (host, False)):
        if not key:
            continue
        found = _lookup(inventory, key, is_address)
        if found is not None:
            return _device_name(found, key)
    return None


def _lookup(inventory: Any, key: str, is_address: bool) -> Any:
    if isinstance(inventory, Mapping):
        devices = inventory.get("devices")
        return _lookup_mapping(devices if isinstance(devices, Mapping) else inventory, key)
    names = (
        ("by_address", "find", "resolve", "lookup") if is_address else ("find", "resolve", "lookup")
    )
    for attr in names:
        fn = getattr(inventory, attr, None)
        if callable(fn):
            # "Not found" may be None or a LookupError, depending on the implementation.
            with contextlib.suppress(LookupError, ValueError):
                found = fn(key)
                if found is not None:
                    return found
    return None


def _lookup_mapping(devices: Mapping[str, Any], key: str) -> Any:
    if key in devices:
        return key
    wanted = plain_address(key).lower()
    for name, device in devices.items():
        hosts = [_field(device, "host"), *(_field(device, "addresses") or ())]
        if any(isinstance(h, str) and plain_address(h).lower() == wanted for h in hosts):
            return _field(device, "name") or name
    return None


def _field(device: Any, name: str) -> Any:
    if isinstance(device, Mapping):
        return device.get(name)
    return getattr(device, name, None)


def _device_name(found: Any, key: str) -> str:
    if isinstance(found, str):
        return found
    name = _field(found, "name")
    return name if isinstance(name, str) and name else key


# --------------------------------------------------------------------------- counts


@dataclass(slots=True)
class SyslogStats:
    """Counts for one source since start: ``received == stored + sum(dropped) + queued``."""

    received: int = 0
    stored: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    kernel_dropped: int = 0

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


# --------------------------------------------------------------------------- listener


class SyslogListener:
    """One ``type: syslog`` source: its sockets, its queue and the task draining it."""

    def __init__(self, name: str, config: SourceConfig, service: Service) -> None:
        self.name = name
        self.service = service
        self.addresses = parse_listen(config.listen, f"sources.{name}.listen")
        self.allow: tuple[Network, ...] = parse_networks(config.allow, f"sources.{name}.allow")
        self.event_type = config.event_type or "syslog"
        self.max_message = min(config.max_payload_size or DEFAULT_MAX_MESSAGE, 1 << 24)
        self.stats = SyslogStats()
        self.queue: deque[tuple[bytes, str, str, float]] = deque()
        self.connections: set[TCPConnection] = set()
        self.bound: list[ListenAddress] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._servers: list[asyncio.Server] = []
        self._udp: list[socket.socket] = []
        self._allowed: dict[str, bool] = {}
        self._runtime: Any = service.runtime
        self._devices: dict[tuple[str, str | None], str | None] = {}
        self._devices_at = 0.0
        self._inventory: Any = None
        self._received_by: dict[str, int] = {}  # per transport, for the metric's label
        self._published: dict[tuple[str, str], int] = {}
        self._kernel_base = 0
        self._kernel_at = 0.0

    # ---- socket side: keep it cheap

    def allowed(self, address: str) -> bool:
        if self.service.runtime is not self._runtime:
            self._reconfigure()
        if not self.allow:
            return True
        ok = self._allowed.get(address)
        if ok is None:
            if len(self._allowed) > 10_000:
                self._allowed.clear()
            ok = self._allowed[address] = in_networks(address, self.allow)
        return ok

    def full(self) -> bool:
        return len(self.queue) >= MAX_QUEUE

    def drop(self, reason: str, n: int = 1) -> None:
        """The transport refused something that arrived (a connection, an over-long frame)."""
        self.stats.received += n
        self._count("tcp", n)  # only the TCP transport refuses before a message exists
        self.stats.drop(reason, n)

    def connected(self, conn: TCPConnection, alive: bool) -> None:
        if alive:
            self.connections.add(conn)
        else:
            self.connections.discard(conn)

    def receive(self, data: bytes, address: str, transport: str) -> None:
        """Account for one message and queue it (or drop it, counted)."""
        self.stats.received += 1
        self._count(transport)
        if transport == "udp" and not self.allowed(address):
            self.stats.drop("forbidden")
            return
        if len(data) > self.max_message:
            self.stats.drop("too_large")
            return
        if len(self.queue) >= MAX_QUEUE:
            self.stats.drop("queue_full")
            return
        self.queue.append((data, address, transport, time.time()))
        if not self._wake.is_set():
            self._wake.set()

    def _count(self, transport: str, n: int = 1) -> None:
        self._received_by[transport] = self._received_by.get(transport, 0) + n

    def _reconfigure(self) -> None:
        """After a reload: the new allowlist and event type apply; addresses need a restart."""
        self._runtime = self.service.runtime
        sc = (self.service.config.sources or {}).get(self.name)
        if sc is None or sc.type != "syslog":
            return
        try:
            self.allow = parse_networks(sc.allow, f"sources.{self.name}.allow")
        except ConfigError as exc:
            log.error("syslog.reload_refused", source=self.name, errors=exc.errors)
            return
        self.event_type = sc.event_type or "syslog"
        self._allowed.clear()

    # ---- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for addr in self.addresses:
                sock = open_socket(addr)
                port = sock.getsockname()[1]
                if addr.transport == "udp":
                    self._udp.append(sock)
                    loop.add_reader(sock.fileno(), UDPReader(self, sock).on_readable)
                else:
                    server = await loop.create_server(
                        lambda: TCPConnection(self), sock=sock, backlog=512
                    )
                    self._servers.append(server)
                self.bound.append(ListenAddress(addr.transport, addr.host, port))
        except OSError as exc:
            await self._close_sockets()
            raise ConfigError(
                f"sources.{self.name}.listen: cannot listen on {addr}: {exc.strerror or exc}"
            ) from None
        self._kernel_base = self._kernel_drops()
        self._task = asyncio.create_task(self._drain(), name=f"syslog-{self.name}")
        log.info("syslog.listening", source=self.name, listen=[str(a) for a in self.bound])

    async def stop(self) -> None:
        await self._close_sockets()
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), DRAIN_ON_STOP)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self.queue:
            self.stats.drop("shutdown", len(self.queue))
            self.queue.clear()
        self._publish(force=True)
        log.info(
            "syslog.stopped",
            source=self.name,
            received=self.stats.received,
            stored=self.stats.stored,
            dropped=self.stats.dropped,
        )

    async def _close_sockets(self) -> None:
        self._publish(force=True)  # kernel drop counts can only be read while sockets are open
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        loop = asyncio.get_running_loop()
        for sock in self._udp:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
                # What is already in the socket buffer was received: queue it, then close.
                UDPReader(self, sock).on_readable()
            sock.close()
        self._udp.clear()

    # ---- drain side: parse and store in batches

    async def _drain(self) -> None:
        while True:
            # Wake for work, or each second to refresh the published counts.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            while self.queue:
                n = min(len(self.queue), BATCH)
                batch = [self.queue.popleft() for _ in range(n)]
                try:
                    drafts = [self._draft(*item) for item in batch]
                except Exception:
                    # The parser never raises by design; if that breaks, lose one batch
                    # (counted), not the listener.
                    log.exception("syslog.batch_failed", source=self.name, messages=n)
                    self.stats.drop("error", n)
                    continue
                await self._store(drafts)
                if not self.full():
                    for conn in list(self.connections):
                        conn.resume()
                self._publish()
                # Let the socket side and HTTP requests run between batches.
                await asyncio.sleep(0)
            self._publish()
            if self._closing:
                return

    def _draft(self, data: bytes, address: str, transport: str, received: float) -> EventDraft:
        msg = syslog_parser.parse(data)
        addr = plain_address(address)
        return EventDraft(
            source=self.name,
            type=self.event_type,
            data=syslog_parser.event_data(
                msg, address=addr, device=self._device(addr, msg.host, received)
            ),
            # The device's clock is often unset ('*') and RFC 3164 has no year or zone:
            # the event's time is when nethook received it; the device's is in data.
            meta={"client": addr, "transport": transport},
        )

    def _device(self, address: str, host: str | None, now: float) -> str | None:
        inventory = _inventory(self.service.extras)
        if inventory is not self._inventory or now - self._devices_at > DEVICE_CACHE_SECONDS:
            self._inventory, self._devices, self._devices_at = inventory, {}, now
        if inventory is None:
            return None
        key = (address, host)
        if key not in self._devices:
            try:
                self._devices[key] = resolve_device(inventory, address, host)
            except Exception:
                # A faulty inventory must not stop syslog intake; the event keeps its host.
                log.exception("syslog.inventory_failed", source=self.name)
                self._devices[key] = None
        return self._devices[key]

    async def _store(self, drafts: list[EventDraft]) -> None:
        delay = 0.05
        while True:
            try:
                results = await self.service.store.append_many(drafts)
            except StoreUnavailable as exc:
                if self._closing:
                    self.stats.drop("store_error", len(drafts))
                    log.error("syslog.store_unavailable", source=self.name, error=str(exc))
                    return
                log.warning("syslog.store_retry", source=self.name, error=str(exc), wait=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX)
                continue
            except Exception:
                self.stats.drop("store_error", len(drafts))
                log.exception("syslog.store_failed", source=self.name, messages=len(drafts))
                return
            fresh = sum(not r.duplicate for r in results)
            self.stats.stored += fresh
            return

    # ---- counts to Prometheus (per batch, not per message: the socket side stays cheap)

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._udp and (force or now - self._kernel_at >= 1.0):
            self._kernel_at = now
            self.stats.kernel_dropped = max(0, self._kernel_drops() - self._kernel_base)
        current = {("received", t): n for t, n in self._received_by.items()}
        current[("stored", "")] = self.stats.stored
        for reason, n in self.stats.dropped.items():
            current[("dropped", reason)] = n
        if self.stats.kernel_dropped:
            current[("dropped", "kernel")] = self.stats.kernel_dropped
        for key, total in current.items():
            delta = total - self._published.get(key, 0)
            if delta <= 0:
                continue
            kind, label = key
            if kind == "received":
                metrics.SYSLOG_RECEIVED.labels(self.name, label).inc(delta)
            elif kind == "stored":
                metrics.SYSLOG_STORED.labels(self.name).inc(delta)
                metrics.accepted(self.name, delta)
            else:
                metrics.SYSLOG_DROPPED.labels(self.name, label).inc(delta)
            self._published[key] = total

    def _kernel_drops(self) -> int:
        """Datagrams the kernel dropped on our UDP sockets (Linux /proc; 0 elsewhere)."""
        return sum(kernel_drops(sock) for sock in self._udp)


def _inventory(extras: Mapping[str, Any]) -> Any:
    """The richest inventory the service publishes: the device pool's Inventory object
    (lookups by any spelling of an address), else ``extras["inventory"]`` (the view)."""
    pool_inventory = getattr(extras.get("sessions"), "inventory", None)
    if pool_inventory is not None:
        return pool_inventory
    return extras.get("inventory")


# --------------------------------------------------------------------------- component


class SyslogComponent:
    """Every ``type: syslog`` source of the config, started and stopped with the service."""

    def __init__(self, listeners: list[SyslogListener]) -> None:
        self.listeners = listeners

    @classmethod
    def from_service(cls, service: Service) -> SyslogComponent | None:
        """None when this process does not serve ingress or no source is ``type: syslog``."""
        if not service.ingress:
            return None
        sources = service.config.sources or {}
        listeners = []
        errors: list[str] = []
        for name, sc in sources.items():
            if sc.type != "syslog":
                continue
            try:
                listeners.append(SyslogListener(name, sc, service))
            except ConfigError as exc:
                errors.extend(exc.errors)
        if errors:
            raise ConfigError(errors)
        return cls(listeners) if listeners else None

    async def start(self, service: Service) -> None:
        started: list[SyslogListener] = []
        try:
            for listener in self.listeners:
                await listener.start()
                started.append(listener)
        except BaseException:
            for listener in started:
                await listener.stop()
            raise
        service.extras["syslog"] = self

    async def stop(self) -> None:
        for listener in self.listeners:
            await listener.stop()

    def stats(self) -> dict[str, SyslogStats]:
        """Counts per source (also exported as Prometheus counters)."""
        return {listener.name: listener.stats for listener in self.listeners}
