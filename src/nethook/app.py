"""``create_app(config)``: the FastAPI application, its error handlers and lifespan wiring."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from . import __version__
from .config import Config
from .exceptions import RequestRejected, StoreUnavailable
from .ingress import http as ingress_http
from .runtime import Runtime
from .service import Service
from .store import Store, open_store

log = structlog.get_logger("nethook.app")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "bad_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class HeaderLimit:
    """Refuse requests whose headers exceed ``max_bytes`` in total (431), before any route.

    The HTTP parser already caps what it buffers; this makes the limit the configured one
    and answers with a JSON error instead of dropping the connection.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and await refuse_large_headers(scope, send, self.max_bytes):
            return
        await self.app(scope, receive, send)


async def refuse_large_headers(scope: Any, send: Any, max_bytes: int) -> bool:
    """Answer 431 and return True when the request's headers exceed ``max_bytes``."""
    size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
    if size <= max_bytes:
        return False
    body = orjson.dumps(
        error_body("headers_too_large", f"request headers exceed {max_bytes} bytes")
    )
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return True


class App(FastAPI):
    """FastAPI with an ingest lane: ``POST /events`` and ``POST /hooks/{source}`` go
    straight to the ingest handler.

    Those two routes are nearly all of a busy server's traffic, and the generic stack in
    front of them (error, telemetry, body-limit and exception middleware, router matching
    over every API and dashboard route) cost about a third of each request's CPU. The lane
    keeps what that stack gave them: the header limit, JSON errors for every refusal, and
    a logged 500 with no detail for anything unexpected. Everything else, including other
    methods on these paths, goes through FastAPI as before.
    """

    max_header_bytes: int = 16384

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            source: str | None = None
            if path == "/events":
                source = "default"
            elif path.startswith("/hooks/"):
                name = path[7:]
                if name and "/" not in name:
                    source = name
            if source is not None:
                await self._ingest(scope, receive, send, source)
                return
        await super().__call__(scope, receive, send)

    async def _ingest(self, scope: Any, receive: Any, send: Any, source: str) -> None:
        if await refuse_large_headers(scope, send, self.max_header_bytes):
            return
        scope["app"] = self
        request = Request(scope, receive)
        try:
            response = await ingress_http.ingest(request, source)
        except RequestRejected as exc:
            response = rejected_response(exc)
        except StoreUnavailable as exc:
            response = store_unavailable_response(exc)
        except Exception:
            log.exception("request.crashed", path=scope["path"])
            response = ingress_http.json_response(500, error_body("internal", "internal error"))
        await response(scope, receive, send)


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def rejected_response(exc: RequestRejected) -> Response:
    return ingress_http.json_response(exc.status, error_body(exc.code, exc.detail), exc.headers)


def store_unavailable_response(exc: StoreUnavailable) -> Response:
    log.error("store.unavailable", error=str(exc))
    return ingress_http.json_response(
        503,
        error_body("store_unavailable", "the event store is unavailable; retry"),
        {"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{error, detail}``; nothing internal reaches the sender."""

    @app.exception_handler(RequestRejected)
    async def _rejected(_req: Request, exc: RequestRejected) -> Response:
        return rejected_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return ingress_http.json_response(
            exc.status_code, error_body(code, detail), dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return ingress_http.json_response(400, error_body("bad_request", problems))

    @app.exception_handler(StoreUnavailable)
    async def _store(_req: Request, exc: StoreUnavailable) -> Response:
        return store_unavailable_response(exc)

    @app.exception_handler(Exception)
    async def _crash(req: Request, exc: Exception) -> Response:
        log.exception("request.crashed", path=req.url.path)
        return ingress_http.json_response(500, error_body("internal", "internal error"))


def create_app(
    config: Config, *, workers: int = 1, store: Store | None = None, config_path: Path | None = None
) -> App:
    """Build the app for ``config``. ``workers=0`` serves ingress only (no dispatcher).

    With ``config_path``, SIGHUP and ``POST /api/reload`` re-read that file.
    """
    runtime = Runtime.build(config)
    service = Service(runtime, store or open_store(config.store), workers)
    service.config_path = config_path

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: service.reload_from_file(log_errors=True)
                )
        log.info(
            "service.started",
            sources=sorted(runtime.sources),
            rules=len(runtime.rulebook.rules),
            workers=workers,
        )
        try:
            yield
        finally:
            await service.stop()

    app = App(
        title="nethook",
        version=__version__,
        description="Event-driven network automation: post events, nethook stores them "
        "durably, matches rules and runs actions.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.max_header_bytes = config.server.max_header_bytes
    install_error_handlers(app)
    app.add_middleware(HeaderLimit, max_bytes=config.server.max_header_bytes)

    @app.get("/health", tags=["ops"], summary="Store reachable, queue depth")
    async def health() -> Response:
        try:
            await service.store.ping()
            depth = await service.store.queue_depth()
        except StoreUnavailable as exc:
            return ingress_http.json_response(
                503,
                {"status": "unavailable", "store": "unreachable", "detail": str(exc)},
                {"Retry-After": "5"},
            )
        body: dict[str, Any] = {
            "status": "ok",
            "store": "ok",
            "queue_depth": depth,
            "version": __version__,
            "workers": service.dispatcher is not None,
        }
        return ingress_http.json_response(200, body)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from . import metrics

        with contextlib.suppress(StoreUnavailable):
            metrics.QUEUE_DEPTH.set(await service.store.queue_depth())
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.include_router(ingress_http.router)
    from .api import router as api_router
    from .web import STATIC_DIR
    from .web import router as web_router

    # The dashboard before /api: its /api/events/stream must not match /api/events/{id}.
    app.include_router(web_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(api_router)
    # Last: a source's own ``path:`` (e.g. /joke), resolved per request so reloads apply.
    app.add_api_route(
        "/{path:path}",
        ingress_http.custom_path,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    return app
