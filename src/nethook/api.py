"""``/api``: event history, one event with its runs and artifacts, replay.

Guarded by the admin credentials from the config (``admin.token`` as a Bearer token, or
``admin.username``/``admin.password`` as Basic auth), never by a webhook secret. With no
admin credentials configured, only clients on loopback may use it.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from .exceptions import RequestRejected
from .ingress.http import json_response
from .security.limits import FailedLogins, client_address, retry_after_header
from .store.base import EventFilter

if TYPE_CHECKING:
    from .app import Service

log = structlog.get_logger("nethook.api")


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_client(request: Request) -> str:
    """The client address admin auth failures are counted against."""
    peer = request.client.host if request.client else None
    trusted = _service(request).runtime.trusted_proxies
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted)


def failed_logins(request: Request) -> FailedLogins:
    """The service's brake on wrong admin credentials (rebuilt when a reload changes it)."""
    service = _service(request)
    per_minute = service.config.admin.failed_logins_per_minute
    guard = service.failed_logins
    if guard is None or guard.per_minute != per_minute:
        guard = service.failed_logins = FailedLogins(per_minute)
    return guard


def refuse_if_locked(request: Request, client: str) -> None:
    """429 before any credential is compared, once ``client`` has used up its failures."""
    wait = failed_logins(request).retry_after(client)
    if wait:
        raise RequestRejected(
            429,
            "too_many_attempts",
            "too many failed admin logins from this address; retry later",
            {"Retry-After": retry_after_header(wait)},
        )


def login_failed(request: Request, client: str, how: str) -> None:
    failed_logins(request).failed(client)
    # The address and the method, never what was presented.
    log.warning("admin.auth_failed", client=client, method=how)


def require_admin(request: Request) -> None:
    """Admin token (Bearer) or Basic credentials; loopback-only when none are configured."""
    admin = _service(request).config.admin
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    configured = admin.token is not None or admin.password is not None
    presented = configured and scheme.lower() in ("bearer", "basic")
    client = admin_client(request) if presented else ""
    if presented:
        refuse_if_locked(request, client)
    if (
        admin.token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(value.strip().encode(), admin.token.get_secret_value().encode())
    ):
        return
    if admin.username is not None and admin.password is not None and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        ok_user = hmac.compare_digest(user.encode(), admin.username.encode())
        ok_pass = hmac.compare_digest(password.encode(), admin.password.get_secret_value().encode())
        if ok_user and ok_pass:
            return
    if not configured and _is_loopback(request.client.host if request.client else None):
        return
    if presented:
        login_failed(request, client, scheme.lower())
    raise RequestRejected(
        401,
        "unauthorized",
        "admin credentials required"
        if configured
        else "the API is loopback-only until admin credentials are configured",
        {"WWW-Authenticate": 'Bearer realm="nethook"'},
    )


router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_admin)])


@router.get("/events", summary="Event history, newest first")
async def list_events(
    request: Request,
    status: Annotated[str | None, Query(max_length=32)] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
    source: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[
        int | None, Query(ge=0, description="cursor: seq of the last item seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    store = _service(request).store
    events = await store.list_events(
        EventFilter(status=status, type=type, source=source, text=q, before_seq=before, limit=limit)
    )
    items = [e.as_dict() for e in events]
    body: dict[str, Any] = {"items": items, "count": len(items)}
    if len(items) == limit:
        body["next"] = events[-1].seq
    return json_response(200, body)


@router.get("/events/{event_id}", summary="One event with every action run and artifact")
async def get_event(request: Request, event_id: str) -> Response:
    store = _service(request).store
    event = await store.get_event(event_id)
    if event is None:
        raise RequestRejected(404, "not_found", f"no event {event_id!r}")
    runs = await store.list_runs(event_id)
    arts = await store.list_artifacts(event_id)
    return json_response(
        200,
        {
            "event": event.as_dict(),
            "runs": [r.as_dict() for r in runs],
            "artifacts": [{**a.as_dict(), "url": f"/api/artifacts/{a.id}"} for a in arts],
        },
    )


@router.post("/events/{event_id}/replay", summary="Queue a fresh copy of an event")
async def replay_event(request: Request, event_id: str) -> Response:
    result = await _service(request).store.replay(event_id)
    if result is None:
        raise RequestRejected(404, "not_found", f"no event {event_id!r}")
    return json_response(202, {"id": result.id, "status": "queued", "replay_of": event_id})


@router.get("/artifacts/{artifact_id}", summary="Download an artifact file")
async def get_artifact(request: Request, artifact_id: int) -> Response:
    service = _service(request)
    art = await service.store.get_artifact(artifact_id)
    if art is None:
        raise RequestRejected(404, "not_found", f"no artifact {artifact_id}")
    path = await asyncio.to_thread(_artifact_path, service.config.store.data_dir, art.path)
    if path is None:
        raise RequestRejected(404, "not_found", "artifact file is missing")
    return FileResponse(path, media_type=art.content_type, filename=path.name)


def _artifact_path(data_dir: Path, stored: str) -> Path | None:
    """The artifact file, only if it is a file inside the data directory's artifacts folder."""
    root = (data_dir / "artifacts").resolve()
    path = Path(stored).resolve()
    return path if root in path.parents and path.is_file() else None


@router.post("/reload", summary="Re-read the config file and swap rules atomically")
async def reload_config(request: Request) -> Response:
    from .exceptions import ConfigError

    service = _service(request)
    try:
        runtime = service.reload_from_file()
    except ConfigError as exc:
        return json_response(
            409 if service.config_path is None else 400,
            {
                "error": "reload_refused",
                "detail": "the running configuration was kept",
                "errors": exc.errors,
            },
        )
    return json_response(
        200,
        {
            "status": "reloaded",
            "sources": sorted(runtime.sources),
            "rules": len(runtime.rulebook.rules),
        },
    )
