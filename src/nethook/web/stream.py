"""``GET /api/events/stream``: new events and status changes as server-sent events.

One :class:`StreamHub` per process polls the store (about twice a second, only while
someone is watching) and fans out to every open stream. Polling the store, not listening
inside the process, is what makes the stream see events accepted by other processes and
finished by other workers (``nethook worker``, other nodes on PostgreSQL).

Messages: ``event: new`` (with ``id: <seq>``, so a reconnecting browser sends
``Last-Event-ID`` and catches up) and ``event: update`` (status, attempts or error changed),
each with one small JSON row; a comment line every 15 s keeps proxies from closing an idle
stream. A stream ends when the client goes away or the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import orjson
import structlog
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ..events import Event
from ..exceptions import StoreUnavailable
from ..ingress.http import json_response
from ..store.base import EventFilter, Store
from .auth import authenticate
from .queries import query_events
from .views import LIVE, Filters, row

log = structlog.get_logger("nethook.web.stream")

Kind = Literal["new", "update"]
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
_QUEUE_MAX = 1000  # a client this far behind is cut off; it reconnects and catches up
_FRESH_PAGE = 25  # new events read per page while polling
_FRESH_CAP = 500  # new events published per poll at most
_LIVE_CAP = 200  # queued/running rows read per poll
_RECHECK_CAP = 100  # events re-read one by one per poll when they leave the live lists
_TRACK_CAP = 5000  # in-flight events the hub remembers
_CLOSED = None


@dataclass(eq=False)
class Subscriber:
    """One open stream: its filters and its outbox."""

    filters: Filters
    queue: asyncio.Queue[tuple[Kind, Event] | None] = field(
        default_factory=lambda: asyncio.Queue(_QUEUE_MAX)
    )

    def offer(self, kind: Kind, event: Event) -> bool:
        """Queue a message if the filters want it; False when the client fell too far behind.

        Updates ignore the status filter: a change may move an event into or out of a
        status-filtered view, and the page decides which.
        """
        if not self.filters.matches(event, status=kind == "new"):
            return True
        try:
            self.queue.put_nowait((kind, event))
        except asyncio.QueueFull:
            return False
        return True


def _signature(event: Event) -> tuple[str, int, str | None]:
    return (str(event.status), event.attempts, event.error)


class StreamHub:
    """Polls the store for new events and for changes of in-flight ones; fans out."""

    def __init__(self, store: Store, interval: float = POLL_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self.subscribers: set[Subscriber] = set()
        self.last_seq = 0
        #: In-flight (queued/running) events seen, id -> (status, attempts, error).
        self.inflight: dict[str, tuple[str, int, str | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def subscribe(self, filters: Filters) -> Subscriber:
        """Register a stream. The hub's starting point is fixed before this returns, so a
        catch-up read made afterwards leaves no gap."""
        async with self._lock:
            if self._task is None or self._task.done():
                await self._prime()
                self._task = asyncio.create_task(self._run(), name="nethook-stream-hub")
            sub = Subscriber(filters)
            self.subscribers.add(sub)
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _prime(self) -> None:
        newest = await self.store.list_events(EventFilter(limit=1))
        self.last_seq = newest[0].seq if newest else 0
        self.inflight = {e.id: _signature(e) for e in await self._live()}

    async def _fresh(self) -> list[Event]:
        """Events newer than the last seen, oldest first. A quiet second reads one small
        page; a burst reads back page by page, up to ``_FRESH_CAP`` (the rest are skipped:
        a browser cannot show thousands of rows a second anyway)."""
        fresh: list[Event] = []
        cursor: int | None = None
        while len(fresh) < _FRESH_CAP:
            page = await self.store.list_events(EventFilter(before_seq=cursor, limit=_FRESH_PAGE))
            new = [e for e in page if e.seq > self.last_seq]
            fresh += new
            if len(new) < len(page) or len(page) < _FRESH_PAGE:
                break
            cursor = page[-1].seq
        if fresh:
            self.last_seq = max(self.last_seq, fresh[0].seq)
        return sorted(fresh, key=lambda e: e.seq)

    async def _live(self) -> list[Event]:
        queued = await self.store.list_events(EventFilter(status="queued", limit=_LIVE_CAP))
        running = await self.store.list_events(EventFilter(status="running", limit=_LIVE_CAP))
        return queued + running

    async def _run(self) -> None:
        # Runs while anyone listens; the next subscriber starts a fresh one.
        while self.subscribers:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except StoreUnavailable as exc:
                log.warning("stream.poll_failed", error=str(exc))
            except Exception:
                log.exception("stream.poll_crashed")

    async def poll(self) -> None:
        """One round: publish events newer than the last seen, then changed in-flight ones."""
        fresh = await self._fresh()
        for event in fresh:
            self._publish("new", event)
            if event.status in LIVE:
                self.inflight[event.id] = _signature(event)
        if not self.inflight:
            return
        live = {e.id: e for e in await self._live()}
        left = []
        for event_id, seen in list(self.inflight.items()):
            current = live.get(event_id)
            if current is None:
                left.append(event_id)
            elif _signature(current) != seen:
                self.inflight[event_id] = _signature(current)
                self._publish("update", current)
        # Events that left the queued/running lists finished (or sit beyond the cap of a
        # large backlog): read them one by one, a bounded number per round.
        for event_id in left[:_RECHECK_CAP]:
            current = await self.store.get_event(event_id)
            if current is None:
                self.inflight.pop(event_id, None)
                continue
            if _signature(current) != self.inflight.get(event_id):
                self._publish("update", current)
            if current.status in LIVE:
                self.inflight[event_id] = _signature(current)
            else:
                self.inflight.pop(event_id, None)
        while len(self.inflight) > _TRACK_CAP:
            self.inflight.pop(next(iter(self.inflight)))

    def _publish(self, kind: Kind, event: Event) -> None:
        for sub in list(self.subscribers):
            if not sub.offer(kind, event):
                self.subscribers.discard(sub)
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(_CLOSED)
                log.info("stream.client_too_slow")


def hub_for(request: Request) -> StreamHub:
    """The app's hub, made on first use (no lifespan wiring needed: it idles when unused)."""
    state = request.app.state
    hub: StreamHub | None = getattr(state, "nethook_stream_hub", None)
    if hub is None:
        hub = StreamHub(state.service.store)
        state.nethook_stream_hub = hub
    return hub


def _server_exiting() -> bool:
    """True once uvicorn has been asked to stop.

    uvicorn waits for every open response before it shuts down, and a stream never ends by
    itself, so streams must notice the shutdown. uvicorn installs its ``Server.handle_exit``
    as the SIGTERM handler; its ``should_exit`` flag is the only signal an app can see.
    """
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return bool(getattr(server, "should_exit", False))


def message(kind: Kind, event: Event) -> bytes:
    """One SSE message; ``new`` ones carry the seq as the event id for resuming."""
    head = f"id: {event.seq}\n" if kind == "new" else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(row(event)) + b"\n\n"


async def _events(
    request: Request, hub: StreamHub, sub: Subscriber, catch_up: list[Event]
) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 2000\n\n"
        for event in catch_up:
            yield message("new", event)
        quiet_since = time.monotonic()
        while not _server_exiting():
            try:
                item = await asyncio.wait_for(sub.queue.get(), 1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            if item is _CLOSED:
                return
            yield message(*item)
            quiet_since = time.monotonic()
    finally:
        hub.unsubscribe(sub)


async def stream_events(request: Request) -> Response:
    """``GET /api/events/stream``: filters as in ``/api/events`` plus ``device``; ``after``
    (a seq) or ``Last-Event-ID`` replays what was missed, up to 200 events."""
    if authenticate(request) is None:
        return json_response(
            401,
            {"error": "unauthorized", "detail": "admin credentials required"},
            {"WWW-Authenticate": 'Bearer realm="nethook"'},
        )
    filters = Filters.from_query(request.query_params)
    resume = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    hub = hub_for(request)
    sub = await hub.subscribe(filters)
    catch_up: list[Event] = []
    if resume.isdigit():
        try:
            recent, _ = await query_events(hub.store, filters, limit=200)
        except BaseException:
            hub.unsubscribe(sub)
            raise
        catch_up = sorted((e for e in recent if e.seq > int(resume)), key=lambda e: e.seq)
    return StreamingResponse(
        _events(request, hub, sub, catch_up),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
