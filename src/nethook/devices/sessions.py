"""The device session pool: SSH sessions kept warm per device, used from asyncio.

Sessions speak a :class:`~nethook.devices.transport.Transport`: Netmiko CLI (``ssh``, the
default) or NETCONF (``netconf``, ncclient). Both kinds share the caps and rules below.

Connecting to a network device costs around a second (TCP, SSH key exchange, login,
``terminal length 0``); a command on an open session costs tens of milliseconds. So
sessions stay open between events, with these rules:

- **threads**: Netmiko is blocking. Every Netmiko call runs on the pool's own thread
  executor (sized to the session cap), so the event loop never blocks and device work
  cannot starve the default executor that other parts use.
- **one action per session**: a session is leased to one caller at a time; a device has at
  most ``per_device`` sessions (its vty lines) and the pool at most ``max_sessions`` open
  connections; when the global cap is reached, the least recently used idle session of
  another device is closed to make room, else the caller waits.
- **health**: before reuse, the SSH transport must be active; a session idle for longer
  than ``health_check_after`` also has to answer a prompt. A session that dies under a
  command is replaced and the command run again once (reads are idempotent); callers that
  change config opt out of that retry.
- **idle close**: a reaper closes sessions idle for ``idle_timeout``; SSH keepalives every
  ``keepalive`` seconds keep NAT and firewalls from dropping the ones in use.
- **errors**: connect timeouts and refusals are :class:`TransientError` (retried with
  backoff by the dispatcher). An authentication failure is a :class:`PermanentError`, and
  the pool refuses further logins to that device with the same credentials for
  ``auth_failure_hold`` seconds: retries must not lock the account.
- **cancellation**: an action that times out while its Netmiko call still runs has its
  session closed under it (for Netmiko that also unblocks the thread; an ncclient RPC
  waits out its own timeout); it is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import structlog

from .. import metrics
from ..config import DevicesConfig
from ..exceptions import PermanentError, TransientError
from .inventory import Device, Inventory
from .netmiko_transport import NETMIKO
from .slots import SharedSlots
from .transport import AuthFailed, Connector, SessionDead, Transport

log = structlog.get_logger("nethook.devices")

T = TypeVar("T")


# --------------------------------------------------------------------------- the pool


@dataclass(eq=False)
class Session:
    """One open connection to one device."""

    device: Device
    conn: Any
    opened: float
    last_used: float
    #: The transport this session speaks (``ssh`` for Netmiko CLI, ``netconf``).
    transport: Transport = NETMIKO
    uses: int = 0
    broken: bool = False
    #: This session's lease in the shared per-device slots (several nodes), if any.
    slot: str | None = None


@dataclass
class PoolStats:
    """Counters for tests, benchmarks and the operator."""

    connects: int = 0
    reuses: int = 0
    reconnects: int = 0
    closed_idle: int = 0
    evicted: int = 0
    health_failures: int = 0
    auth_refusals: int = 0
    per_device: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


class SessionPool:
    """Warm device sessions (Netmiko CLI, NETCONF), leased one action at a time. See the
    module docstring."""

    def __init__(
        self,
        inventory: Inventory,
        config: DevicesConfig,
        connector: Connector | None = None,
        clock: Callable[[], float] = time.monotonic,
        slots: SharedSlots | None = None,
    ) -> None:
        self.inventory = inventory
        self.config = config
        # A connector replaces Netmiko's (tests, other CLI libraries); NETCONF is built in.
        ssh = NETMIKO if connector is None else replace(NETMIKO, connect=connector)
        self.transports: dict[str, Transport] = {ssh.name: ssh}
        self.clock = clock
        self.stats = PoolStats()
        # Threads: one per possible session, plus room for closes and probes.
        self.executor = ThreadPoolExecutor(
            max_workers=config.max_sessions + 4, thread_name_prefix="nethook-ssh"
        )
        self._slots = asyncio.Semaphore(config.max_sessions)
        self._device_sems: dict[str, asyncio.Semaphore] = {}
        #: Idle sessions per (device name, transport name).
        self._idle: dict[tuple[str, str], list[Session]] = {}
        self._open: set[Session] = set()
        self._auth_failed: dict[str, tuple[str, float, str]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._closing: set[Future[None]] = set()
        self.slots = slots
        self._slot_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name="nethook-ssh-reaper")

    async def close(self) -> None:
        """Close every session and stop the threads (waits for the closes)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for s in list(self._open):
            self._discard(s)
        # Log out of every device (including sessions discarded earlier whose close is
        # still queued) before the threads go: a vty line must not stay taken.
        pending = [asyncio.wrap_future(f) for f in list(self._closing)]
        if pending:
            await asyncio.wait(pending, timeout=self.config.connect_timeout)
        if self._slot_tasks:
            await asyncio.wait(list(self._slot_tasks), timeout=5)
        self.executor.shutdown(wait=False)

    def swap_inventory(self, inventory: Inventory) -> dict[str, list[str]]:
        """Use ``inventory`` from now on (a reload); returns the device names added,
        removed and changed.

        A session serves only the device definition it was opened for: idle sessions of a
        removed or changed device (host, port, platform, credentials...) close now; leased
        ones, and any opened later for an old definition by an action that resolved its
        target before the swap, close when they come back (see :meth:`_checkin`).
        """
        old = self.inventory
        self.inventory = inventory
        names_old, names_new = set(old.names()), set(inventory.names())
        changed = sorted(n for n in names_old & names_new if old.get(n) != inventory.get(n))
        for sessions in list(self._idle.values()):
            for session in list(sessions):
                if not self._current(session):
                    self._discard(session)
        return {
            "added": sorted(names_new - names_old),
            "removed": sorted(names_old - names_new),
            "changed": changed,
        }

    def _current(self, session: Session) -> bool:
        """Is the session's device still defined as it was when the session opened?"""
        return self.inventory.get(session.device.name) == session.device

    def open_count(self) -> int:
        return len(self._open)

    def idle_count(self, device: str | None = None, transport: str = "ssh") -> int:
        if device is not None:
            return len(self._idle.get((device, transport), []))
        return sum(len(v) for v in self._idle.values())

    def transport(self, name: str) -> Transport:
        """The transport called ``name`` (``ssh`` or ``netconf``)."""
        found = self.transports.get(name)
        if found is None and name == "netconf":
            from .netconf_transport import NETCONF

            found = self.transports[name] = NETCONF
        if found is None:
            raise PermanentError(f"no session transport {name!r}")
        return found

    # ------------------------------------------------------------------ public API

    async def run(
        self,
        device: Device,
        fn: Callable[[Any], T],
        *,
        retry_dead: bool = True,
        transport: str = "ssh",
    ) -> T:
        """Run ``fn(connection)`` in a pool thread on a leased session of ``device``.

        ``transport`` picks the kind of session (``ssh``: a Netmiko connection;
        ``netconf``: an ncclient Manager); both count against the same caps. ``fn`` may
        raise our own errors (they pass through, the session stays usable). A dead
        connection is replaced and ``fn`` run once more when the session was a reused one
        and ``retry_dead`` is set; otherwise it is a :class:`TransientError`.
        """
        kind = self.transport(transport)
        sem = self._device_sems.setdefault(device.name, asyncio.Semaphore(self.config.per_device))
        async with sem:
            session, reused = await self._checkout(device, kind)
            try:
                try:
                    return await self._call(session, fn)
                except SessionDead as exc:
                    self._discard(session)
                    if not (retry_dead and reused):
                        raise TransientError(f"{device.name}: session lost: {exc}") from exc
                    self.stats.reconnects += 1
                    log.info("ssh.reconnect", device=device.name, reason=str(exc))
                    session = await self._connect(device, kind)
                    try:
                        return await self._call(session, fn)
                    except SessionDead as exc2:
                        self._discard(session)
                        raise TransientError(f"{device.name}: session lost: {exc2}") from exc2
            finally:
                if session in self._open:
                    self._checkin(session)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the pool's executor."""
        return await asyncio.wrap_future(self.executor.submit(fn, *args))

    # ------------------------------------------------------------------ internals

    async def _checkout(self, device: Device, kind: Transport) -> tuple[Session, bool]:
        idle = self._idle.get((device.name, kind.name), [])
        while True:
            # The most recently used is the most likely alive. Only a session opened for
            # this very definition: across a reload, a caller holding the old one must not
            # get a session to the new host (or the other way round).
            session = next((s for s in reversed(idle) if s.device == device), None)
            if session is None:
                break
            idle.remove(session)
            try:
                healthy = await self._healthy(session)
            except BaseException:  # cancelled mid-probe: the session is neither idle nor leased
                self._discard(session)
                raise
            if healthy:
                self.stats.reuses += 1
                return session, True
            self.stats.health_failures += 1
            log.info("ssh.unhealthy", device=device.name, transport=kind.name)
            self._discard(session)
        return await self._connect(device, kind), False

    async def _healthy(self, session: Session) -> bool:
        kind = session.transport
        if session.broken or not kind.active(session.conn):
            return False
        if self.clock() - session.last_used < self.config.health_check_after:
            return True
        try:
            return await asyncio.wait_for(
                self.in_thread(kind.probe, session.conn), self.config.connect_timeout
            )
        except TimeoutError:
            session.broken = True
            return False

    async def _connect(self, device: Device, kind: Transport) -> Session:
        # Credentials may come from a file: read off the event loop.
        creds = await self.in_thread(device.credentials)
        # One account, whatever the protocol: a refused login holds CLI and NETCONF logins
        # with the same credentials alike (alternating them must not lock the account).
        fingerprint = hashlib.sha256(
            f"{creds.username}\0{creds.password}\0{device.host}".encode()
        ).hexdigest()
        held = self._auth_failed.get(device.name)
        if held is not None:
            fp, until, message = held
            if fp == fingerprint and self.clock() < until:
                self.stats.auth_refusals += 1
                raise AuthFailed(
                    f"{message}; not retrying with the same credentials for "
                    f"{until - self.clock():.0f}s more"
                )
            del self._auth_failed[device.name]
        self._make_room_on(device)
        token = None
        if self.slots is not None:
            # The device's vty lines are shared by every node: lease one in the store first.
            token = self.slots.new_token()
            await self.slots.acquire(device.name, token, self.config.connect_timeout)
        try:
            await self._acquire_slot()
        except BaseException:
            self._release_shared(device.name, token)
            raise
        future = self.executor.submit(kind.connect, device, creds, self.config)
        try:
            conn = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The login goes on in its thread; if it succeeds, log straight out again
            # rather than leave a vty line taken by a session nobody holds.
            self._slots.release()
            self._release_shared(device.name, token)
            future.add_done_callback(partial(_close_if_connected, kind))
            raise
        except AuthFailed as exc:
            self._slots.release()
            self._release_shared(device.name, token)
            metrics.DEVICE_CONNECTS.labels("auth_failed").inc()
            self._auth_failed[device.name] = (
                fingerprint,
                self.clock() + self.config.auth_failure_hold,
                str(exc),
            )
            log.warning("security.device_auth_failed", device=device.name, host=device.host)
            raise
        except BaseException:
            self._slots.release()
            self._release_shared(device.name, token)
            metrics.DEVICE_CONNECTS.labels("error").inc()
            raise
        now = self.clock()
        session = Session(device, conn, opened=now, last_used=now, transport=kind, slot=token)
        self._open.add(session)
        metrics.DEVICE_CONNECTS.labels("ok").inc()
        metrics.DEVICE_SESSIONS_OPEN.inc()
        self.stats.connects += 1
        self.stats.per_device[device.name] = self.stats.per_device.get(device.name, 0) + 1
        log.info("ssh.connected", device=device.name, transport=kind.name, open=len(self._open))
        return session

    def _make_room_on(self, device: Device) -> None:
        """Keep this node within the device's ``per_device`` lines across transports: an
        idle session of the other kind (CLI vs NETCONF) gives its line to a new one."""
        here = [s for s in self._open if s.device.name == device.name]
        idle = [s for s in here if s in self._idle.get(_key(s), ())]
        while len(here) >= self.config.per_device and idle:
            victim = min(idle, key=lambda s: s.last_used)
            idle.remove(victim)
            here.remove(victim)
            self.stats.evicted += 1
            self._discard(victim)

    async def _acquire_slot(self) -> None:
        while self._slots.locked():
            victim = self._least_recent_idle()
            if victim is None:
                break
            self.stats.evicted += 1
            self._discard(victim)
        await self._slots.acquire()

    def _least_recent_idle(self) -> Session | None:
        candidates = [s for sessions in self._idle.values() for s in sessions]
        return min(candidates, key=lambda s: s.last_used, default=None)

    async def _call(self, session: Session, fn: Callable[[Any], T]) -> T:
        future = self.executor.submit(fn, session.conn)
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The thread may still be using the connection: never reuse it. Closing it
            # (in _checkin -> _discard) also makes the blocked Netmiko call return.
            session.broken = True
            raise
        except (PermanentError, TransientError):
            session.last_used = self.clock()
            raise
        except BaseException as exc:
            session.broken = True
            kind = session.transport
            # A timeout on a connection that turns out to be down is a dead session (it gets
            # the one retry on a fresh one), not a slow device.
            if kind.is_dead(exc) or (kind.is_timeout(exc) and not kind.active(session.conn)):
                raise SessionDead(f"{type(exc).__name__}: {exc}") from exc
            if kind.is_timeout(exc):
                # Output may still arrive later and confuse the next command: the session
                # was marked broken above and is closed on checkin.
                raise TransientError(
                    f"{session.device.name}: no answer in time ({kind.name}): {exc}"
                ) from exc
            raise
        session.uses += 1
        session.last_used = self.clock()
        return result

    def _checkin(self, session: Session) -> None:
        if (
            session.broken
            or self._closed
            or not self._current(session)
            or not session.transport.active(session.conn)
        ):
            self._discard(session)
            return
        self._idle.setdefault(_key(session), []).append(session)

    def _forget(self, session: Session) -> bool:
        idle = self._idle.get(_key(session))
        if idle and session in idle:
            idle.remove(session)
        if session in self._open:
            self._open.discard(session)
            self._slots.release()
            self._release_shared(session.device.name, session.slot)
            session.slot = None
            metrics.DEVICE_SESSIONS_OPEN.dec()
            return True
        return False

    def _discard(self, session: Session) -> None:
        """Close a session in the background and free its slot now."""
        session.broken = True
        if self._forget(session):
            with contextlib.suppress(RuntimeError):  # executor already shut down
                future = self.executor.submit(session.transport.disconnect, session.conn)
                self._closing.add(future)
                future.add_done_callback(self._closing.discard)

    def _release_shared(self, device: str, token: str | None) -> None:
        """Give a shared slot back (in the background: callers may be synchronous)."""
        if self.slots is None or token is None:
            return
        task = asyncio.get_running_loop().create_task(self.slots.release(device, token))
        self._slot_tasks.add(task)
        task.add_done_callback(self._slot_tasks.discard)

    async def _reap(self) -> None:
        interval = max(0.5, min(self.config.idle_timeout / 2, 30.0))
        if self.slots is not None:
            interval = min(interval, self.slots.ttl / 3)
        while True:
            await asyncio.sleep(interval)
            if self.slots is not None:
                held = [(s.device.name, s.slot) for s in self._open if s.slot is not None]
                with contextlib.suppress(Exception):  # a store hiccup: try again next round
                    await self.slots.renew(held)
            now = self.clock()
            for sessions in list(self._idle.values()):
                for s in list(sessions):
                    if now - s.last_used >= self.config.idle_timeout:
                        self.stats.closed_idle += 1
                        log.info("ssh.idle_close", device=s.device.name)
                        self._discard(s)


def _key(session: Session) -> tuple[str, str]:
    return session.device.name, session.transport.name


def _close_if_connected(kind: Transport, future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        kind.disconnect(future.result())
