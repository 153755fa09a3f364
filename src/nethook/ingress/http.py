"""HTTP ingress: ``POST /events``, ``POST /hooks/{source}`` and per-source custom paths.

The order of checks is the point: cheap refusals first and nothing read that need not be.
source (404) -> header-only auth (401) -> content type (415) -> Content-Length (413) ->
body streamed under the cap (413) -> signature on the raw bytes (401) -> JSON (400) ->
adapter (400) -> durable append (503 if the store cannot) -> 202.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from .. import metrics
from ..events import AppendResult, EventStatus
from ..exceptions import AuthError, PermanentError, RequestRejected, StoreUnavailable
from ..security.limits import client_address, in_networks, retry_after_header
from ..security.verifiers import NOT_PARSED
from .adapters import Incoming, PayloadError, adapt, header_delivery_id

if TYPE_CHECKING:
    from ..app import Service
    from ..runtime import Source

log = structlog.get_logger("nethook.ingress")
router = APIRouter(tags=["ingest"])

# Headers worth keeping with an event. An allowlist, so that no secret-bearing header
# (Authorization, a token header, a signature) is ever stored.
KEPT_HEADERS = (
    "user-agent",
    "content-type",
    "x-forwarded-for",
    "x-request-id",
    "idempotency-key",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "webhook-id",
    "webhook-timestamp",
    "x-event-type",
)

_INGEST_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["event"],
                    "properties": {
                        "event": {"type": "string", "example": "joke_request"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "source": {"type": "string"},
                        "data": {"type": "object"},
                        "id": {"type": "string", "description": "delivery id for dedupe"},
                    },
                }
            }
        },
    },
    "responses": {
        "202": {"description": "stored durably and queued: {id, status}"},
        "200": {"description": "duplicate delivery: {id, duplicate: true}"},
        "400": {"description": "malformed JSON or envelope"},
        "401": {"description": "authentication failed"},
        "404": {"description": "unknown source"},
        "413": {"description": "body larger than the source's cap"},
        "415": {"description": "not application/json"},
        "503": {"description": "store unavailable; retry after Retry-After"},
    },
}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


async def read_capped(
    request: Request, cap: int, timeout: float | None = None, declared: str | None = None
) -> bytes:
    """Read the body while counting; stop at the first byte past ``cap`` (chunked too).

    A declared Content-Length over the cap is refused before a byte is read. ``timeout``
    bounds the whole read, so a client trickling its body cannot hold a slot forever.
    """
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestRejected(400, "bad_request", "invalid Content-Length") from None
        if size > cap:
            raise RequestRejected(
                413, "payload_too_large", f"body of {size} bytes exceeds the {cap}-byte limit"
            )
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > cap:
                    raise RequestRejected(
                        413, "payload_too_large", f"body exceeds the {cap}-byte limit"
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestRejected(
            408, "request_timeout", f"body not received within {timeout:g}s"
        ) from None
    except ClientDisconnect:
        # The sender hung up (or its framing was invalid) mid-body: a refusal, not a crash.
        raise RequestRejected(
            400, "client_disconnected", "the connection closed before the body was complete"
        ) from None
    request.scope[_BODY_READ] = True
    return b"".join(chunks)


_BODY_READ = "nethook.body_read"


def _close_if_body_unread(request: Request, exc: RequestRejected) -> None:
    """Refusing before the end of the body: answer, then hang up instead of draining it.

    uvicorn's httptools protocol otherwise keeps the connection alive and reads (and drops)
    whatever body is still coming, without limit: a refused sender could stream forever.
    """
    if request.scope.get(_BODY_READ):
        return
    headers = request.headers
    if "transfer-encoding" in headers or headers.get("content-length", "0").strip() != "0":
        exc.headers.setdefault("Connection", "close")


async def ingest(request: Request, source_name: str) -> Response:
    service: Service = request.app.state.service
    rt = service.runtime
    src = rt.sources.get(source_name)
    if src is None:
        metrics.rejected("-", "unknown_source")
        raise RequestRejected(404, "unknown_source", f"no source named {source_name!r}")
    started = time.perf_counter()
    metrics.received(src.name)
    try:
        response = await _ingest(request, service, src)
    except RequestRejected as exc:
        metrics.rejected(src.name, exc.code)
        _close_if_body_unread(request, exc)
        raise
    metrics.ingest_seconds(time.perf_counter() - started)
    return response


async def _ingest(request: Request, service: Service, src: Source) -> Response:
    raw_headers = request.scope["headers"]
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
    if len(headers) != len(raw_headers):
        _refuse_repeated_credentials(raw_headers)
    now = time.time()
    peer = request.client.host if request.client else None
    client = client_address(peer, headers.get("x-forwarded-for"), service.runtime.trusted_proxies)
    if src.allow and not in_networks(client, src.allow):
        log.warning("ingest.forbidden", source=src.name, client=client)
        raise RequestRejected(403, "forbidden", "this address may not post to this source")
    if src.limiter is not None:
        delay = await src.limiter.acquire(client)
        if delay:
            raise RequestRejected(
                429,
                "rate_limited",
                "too many requests; slow down",
                {"Retry-After": retry_after_header(delay)},
            )
    if not src.verifier.needs_body:
        _verify(src, headers, b"", now, client)
    # A source with a fixed event type (a lab route such as /joke) may be posted to with
    # no body at all, as `curl -X POST` does.
    bodiless = (
        src.config.event_type is not None
        and "content-type" not in headers
        and headers.get("content-length", "0") == "0"
        and "transfer-encoding" not in headers
    )
    if not bodiless and not _is_json(headers.get("content-type", "")):
        raise RequestRejected(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    # A bad ?wait= is refused now, not after the event is stored (a 400 for a stored event
    # would make the sender retry what was in fact accepted).
    wait = _wait_seconds(src, request)
    body = await read_capped(
        request,
        src.max_payload,
        service.config.server.request_timeout,
        headers.get("content-length"),
    )
    verified = _verify(src, headers, body, now, client) if src.verifier.needs_body else None
    if verified is not None and verified.payload is not NOT_PARSED:
        payload = verified.payload
    else:
        payload = {} if bodiless and not body else _parse_json(body)
    if _too_deep(body, payload):
        raise RequestRejected(
            400, "invalid_payload", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )
    meta: dict[str, Any] = {"client": client, "path": request.scope["path"]}
    kept = {h: _redact(headers[h], src.secrets) for h in KEPT_HEADERS if h in headers}
    if kept:
        meta["headers"] = kept
    try:
        # Inside the try: an over-long or blank delivery-id header is the sender's error (400).
        inc = Incoming(
            source=src.name,
            payload=payload,
            headers=headers,
            meta=meta,
            delivery_id=(verified.delivery_id if verified else None) or header_delivery_id(headers),
            event_type=verified.event_type if verified else None,
            default_type=src.config.event_type,
        )
        drafts = adapt(src.format, inc)
    except PayloadError as exc:
        raise RequestRejected(400, "invalid_payload", str(exc)) from None
    if not drafts:
        return json_response(200, {"ids": [], "status": "ignored"})
    try:
        if len(drafts) == 1:
            results = [await service.store.append(drafts[0])]
        else:
            results = await service.store.append_many(drafts)
    except StoreUnavailable as exc:
        log.error("ingest.store_unavailable", source=src.name, error=str(exc))
        raise RequestRejected(
            503, "store_unavailable", "the event store is unavailable; retry", {"Retry-After": "5"}
        ) from None
    fresh = sum(not r.duplicate for r in results)
    if fresh:
        metrics.accepted(src.name, fresh)
    if fresh < len(results):
        metrics.EVENTS_DUPLICATE.labels(src.name).inc(len(results) - fresh)
    return await _reply(service, src, results, wait)


# orjson parses up to 1024 levels but serialises at most 254, and the API wraps stored data
# a few levels deeper still: a deeper document could be parsed but never stored or shown.
MAX_JSON_DEPTH = 128


def _too_deep(body: bytes, payload: Any) -> bool:
    """Does ``payload`` nest containers more than :data:`MAX_JSON_DEPTH` levels deep?"""
    # Fast path (C-speed counts): a document needs that many brackets to be that deep.
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    if not isinstance(payload, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


_CREDENTIAL_HINTS = (
    "authorization",
    "token",
    "signature",
    "secret",
    "webhook-id",
    "webhook-timestamp",
    "cookie",
)


def _redact(value: str, secrets: tuple[str, ...]) -> str:
    """A kept header that carries a secret (a sender put it in the wrong header) is masked."""
    return "[redacted]" if any(secret in value for secret in secrets) else value


def _refuse_repeated_credentials(raw: list[tuple[bytes, bytes]]) -> None:
    """A credential header sent twice is ambiguous (which one counts?): refuse it."""
    seen: set[bytes] = set()
    for name, _ in raw:
        if name in seen and any(h in name.decode("latin-1") for h in _CREDENTIAL_HINTS):
            raise RequestRejected(
                400, "bad_request", f"header {name.decode('latin-1')} given more than once"
            )
        seen.add(name)


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestRejected(400, "malformed_json", "empty body: send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(400, "malformed_json", f"invalid JSON: {exc}") from None


def _verify(src: Source, headers: dict[str, str], body: bytes, now: float, client: str) -> Any:
    try:
        return src.verifier.verify(headers, body, now)
    except AuthError as exc:
        # Source, address and reason; never the presented credential.
        log.warning("auth.failed", source=src.name, client=client, reason=exc.reason)
        raise RequestRejected(401, "unauthorized", "authentication failed") from None


def _wait_seconds(src: Source, request: Request) -> float | None:
    # Most requests have no query string: skip building QueryParams for them.
    raw = request.query_params.get("wait") if request.scope.get("query_string") else None
    if raw is not None:
        try:
            wait = float(raw)
        except ValueError:
            raise RequestRejected(400, "bad_request", "wait must be a number of seconds") from None
        if not 0 <= wait <= 300:
            raise RequestRejected(400, "bad_request", "wait must be between 0 and 300 seconds")
        return wait or None
    if src.config.respond == "result":
        return src.config.wait
    return None


async def _reply(
    service: Service, src: Source, results: list[AppendResult], wait: float | None
) -> Response:
    fresh = [r for r in results if not r.duplicate]
    if not fresh:
        first = results[0]
        body: dict[str, Any] = {"id": first.id, "duplicate": True, "status": str(first.status)}
        if len(results) > 1:
            body["ids"] = [r.id for r in results]
        return _custom_reply(src, 200, body) if src.reply else json_response(200, body)
    if wait and service.dispatcher is not None and len(fresh) == 1:
        outcome = await service.wait_outcome(fresh[0].id, wait)
        if outcome is not None and outcome.status is not EventStatus.QUEUED:
            body = {
                "id": outcome.event_id,
                "status": str(outcome.status),
                "results": outcome.results,
                "error": outcome.error,
            }
            return _custom_reply(src, 200, body) if src.reply else json_response(200, body)
    body = {"id": fresh[0].id, "status": "queued"}
    if len(results) > 1:
        body["ids"] = [r.id for r in results]
        body["duplicates"] = sum(r.duplicate for r in results)
    return _custom_reply(src, 202, body) if src.reply else json_response(202, body)


def _custom_reply(src: Source, default_status: int, outcome: dict[str, Any]) -> Response:
    """A source's own answer: status, headers, and a body template over the outcome."""
    reply = src.reply
    assert reply is not None
    status = reply.status or default_status
    if reply.body is None:
        return json_response(status, outcome, dict(reply.headers))
    try:
        text = reply.body.render({**outcome, "outcome": outcome})
    except PermanentError as exc:
        log.error("reply.render_failed", source=src.name, error=str(exc))
        return json_response(default_status, outcome)
    if not isinstance(text, str):
        text = orjson.dumps(text, default=str).decode()
    headers = dict(reply.headers)
    media = headers.pop("Content-Type", None) or headers.pop("content-type", None)
    if media is None:
        try:
            orjson.loads(text)
            media = "application/json"
        except orjson.JSONDecodeError:
            media = "text/plain; charset=utf-8"
    return Response(text, status_code=status, headers=headers, media_type=media)


@router.post("/events", openapi_extra=_INGEST_DOC, summary="Post an event (the generic envelope)")
async def post_event(request: Request) -> Response:
    return await ingest(request, "default")


@router.post("/hooks/{source}", openapi_extra=_INGEST_DOC, summary="Post to a configured source")
async def post_hook(source: str, request: Request) -> Response:
    return await ingest(request, source)


def _flat_routes(routes: list[Any]) -> Iterator[Any]:
    # Recent FastAPI keeps an included router as one entry pointing at the original.
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat_routes(inner.routes)
        else:
            yield route


def route_path(scope: Any) -> str:
    """The path routes match: without the ``root_path`` a proxy mounted the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    path = route_path(request.scope)
    for route in _flat_routes(request.app.router.routes):
        if (
            isinstance(route, Route)
            and route.path != "/{path:path}"
            and route.methods
            and route.path_regex.match(path)
        ):
            methods |= route.methods
    return sorted(methods)


async def custom_path(request: Request) -> Response:
    """Route for a source's own ``path:`` (looked up per request, so reloads apply)."""
    service: Service = request.app.state.service
    path = route_path(request.scope)
    name = service.runtime.paths.get(path.rstrip("/") or "/")
    if name is None:
        # This catch-all also sees wrong methods on real routes (GET /events): say 405 there.
        allowed = _allowed_methods(request)
        if allowed:
            raise RequestRejected(
                405,
                "method_not_allowed",
                f"{path} accepts {', '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            )
        raise RequestRejected(404, "not_found", f"no route {path}")
    if request.method != "POST":
        raise RequestRejected(
            405, "method_not_allowed", f"{path} accepts POST only", {"Allow": "POST"}
        )
    return await ingest(request, name)
