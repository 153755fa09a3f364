"""Dashboard routes: the event list at ``/``, event pages, dead letters, login.

Pages are server-rendered (Jinja2); htmx swaps fragments (filters, "older", counters) and
``static/app.js`` feeds the live stream into the table. Every page works without
JavaScript, minus the live updates. Everything but the login page and static files needs
the admin credentials (see :mod:`nethook.web.auth`); replay and logout also need the CSRF
token.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from .. import __version__
from ..api import (
    _artifact_path,  # the same containment check as the /api download
    admin_client,
    login_failed,
    refuse_if_locked,
)
from ..exceptions import RequestRejected
from . import auth, views
from .queries import load_stats, query_events
from .stream import stream_events

if TYPE_CHECKING:
    from ..events import Artifact
    from ..service import Service

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
PAGE_SIZE = 50
DEAD_PAGE_SIZE = 200
MAX_BULK = 500
_FORM_CAP = 64 * 1024
_INLINE_DIFF_CAP = 256 * 1024
_STATS_TTL = 2.0

# script-src 'self' only: no inline script anywhere, htmx runs with eval disabled.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Vary": "HX-Request, Cookie, Authorization",
}

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
env.filters.update(
    utc=views.utc, size=views.human_size, duration=views.duration, pretty=views.pretty
)
env.globals.update(version=__version__, statuses=views.STATUSES)

router = APIRouter(include_in_schema=False)
router.add_api_route("/api/events/stream", stream_events, methods=["GET"])


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template as an HTML response with the dashboard's security headers."""
    context.setdefault("principal", None)
    context.setdefault("csrf", "")
    context.setdefault("nav", "")
    html = env.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status, headers=_SECURITY_HEADERS)


def _page_auth(request: Request) -> auth.Principal | Response:
    """The principal, or the response for a visitor who must log in first."""
    principal = auth.authenticate(request)
    if principal is not None:
        return principal
    if request.headers.get("hx-request"):
        # A fragment request after the session expired: send the whole page to login.
        return Response(status_code=401, headers={"HX-Redirect": auth.login_url(request)})
    return RedirectResponse(auth.login_url(request), 303)


def _ctx(request: Request, principal: auth.Principal, nav: str) -> dict[str, Any]:
    return {
        "principal": principal,
        "csrf": auth.csrf_token(request, principal),
        "nav": nav,
        "logout": principal.kind == "session",
    }


async def _form(request: Request) -> dict[str, list[str]]:
    """A url-encoded form body, capped (no multipart dependency for three small forms)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_CAP:
            raise RequestRejected(413, "payload_too_large", "form too large")
    try:
        return parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=MAX_BULK + 10)
    except ValueError as exc:  # more fields than any of these forms has
        raise RequestRejected(400, "bad_request", str(exc)) from None


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


# --------------------------------------------------------------------------- login


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    if auth.authenticate(request) is not None and auth.configured(_service(request).config.admin):
        return RedirectResponse(auth.safe_next(request.query_params.get("next")), 303)
    return _login_form(request)


def _login_form(request: Request, error: str = "", status: int = 200) -> Response:
    admin = _service(request).config.admin
    return render(
        request,
        "login.html",
        status,
        next=auth.safe_next(request.query_params.get("next")),
        error=error,
        configured=auth.configured(admin),
        token_login=admin.token is not None,
    )


@router.post("/ui/login")
async def login(request: Request) -> Response:
    admin = _service(request).config.admin
    form = await _form(request)
    if not auth.configured(admin):
        return _login_form(request, "No admin credentials are configured.", 400)
    client = admin_client(request)
    try:
        refuse_if_locked(request, client)
    except RequestRejected as exc:
        page = _login_form(request, "Too many failed attempts from your address; wait.", 429)
        page.headers.update(exc.headers)
        return page
    if not auth.check_login(admin, _one(form, "username"), _one(form, "password")):
        login_failed(request, client, "form")
        return _login_form(request, "Wrong user name or password.", 401)
    target = auth.safe_next(_one(form, "next") or request.query_params.get("next"))
    response = RedirectResponse(target, 303)
    response.set_cookie(
        auth.COOKIE,
        auth.make_session(auth.secret_key(admin)),
        max_age=auth.SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    form = await _form(request)
    if (bad := _csrf_refusal(request, principal, form)) is not None:
        return bad
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _csrf_refusal(
    request: Request, principal: auth.Principal, form: dict[str, list[str]]
) -> Response | None:
    try:
        auth.check_csrf(request, principal, _one(form, auth.CSRF_FIELD) or None)
    except RequestRejected as exc:
        return render(request, "error.html", 403, title="Refused", detail=exc.detail)
    return None


# --------------------------------------------------------------------------- event list


async def _stats(request: Request) -> views.Stats:
    # Several open dashboards refresh the counters (an hour's aggregate in the store): one
    # read at a time serves them all, and its result for a moment after.
    state = request.app.state
    cached: tuple[float, views.Stats] | None = getattr(state, "nethook_web_stats", None)
    if cached is not None and time.monotonic() - cached[0] < _STATS_TTL:
        return cached[1]
    running: asyncio.Task[views.Stats] | None = getattr(state, "nethook_web_stats_task", None)
    if running is None or running.done():
        running = asyncio.ensure_future(load_stats(_service(request).store))
        state.nethook_web_stats_task = running
    # Shielded: a dashboard closing mid-read must not cancel the read the others wait for.
    stats = await asyncio.shield(running)
    state.nethook_web_stats = (time.monotonic(), stats)
    return stats


@router.get("/")
async def dashboard(request: Request) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    filters = views.Filters.from_query(request.query_params)
    before = _cursor(request)
    events, cursor = await query_events(
        _service(request).store, filters, before=before, limit=PAGE_SIZE
    )
    listing: dict[str, Any] = {
        "filters": filters,
        "rows": [views.row(e) for e in events],
        "cursor": cursor,
        "first_page": before is None,
        # Where the live stream starts: it sends what arrived after this page was read.
        "newest": max((e.seq for e in events), default=0),
    }
    if request.headers.get("hx-request"):
        return render(request, "_events.html", **listing)
    stats = await _stats(request)
    sources = sorted(set(_service(request).runtime.sources) | {s.source for s in stats.sources})
    return render(
        request,
        "dashboard.html",
        **_ctx(request, principal, "events"),
        **listing,
        stats=stats,
        chart=views.chart_svg(stats),
        sources=sources,
    )


@router.get("/ui/rows")
async def older_rows(request: Request) -> Response:
    """The next page of rows (the "older" button), below the ``before`` cursor."""
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    filters = views.Filters.from_query(request.query_params)
    events, cursor = await query_events(
        _service(request).store, filters, before=_cursor(request), limit=PAGE_SIZE
    )
    rows = [views.row(e) for e in events]
    return render(
        request, "_rows.html", rows=rows, cursor=cursor, filters=filters, first_page=False
    )


def _cursor(request: Request) -> int | None:
    before = request.query_params.get("before", "")
    return int(before) if before.isdigit() else None


@router.get("/ui/stats")
async def stats_fragment(request: Request) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    stats = await _stats(request)
    return render(request, "_stats.html", stats=stats, chart=views.chart_svg(stats))


# --------------------------------------------------------------------------- one event


@router.get("/ui/events/{event_id}")
async def event_page(request: Request, event_id: str) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    service = _service(request)
    event = await service.store.get_event(event_id)
    ctx = _ctx(request, principal, "events")
    if event is None:
        return render(request, "error.html", 404, **ctx, title="Not found", detail=event_id)
    runs = await service.store.list_runs(event_id)
    artifacts = await service.store.list_artifacts(event_id)
    meta = dict(event.meta)
    headers = views.redact_headers(meta.pop("headers", None))
    return render(
        request,
        "event.html",
        **ctx,
        event=event,
        device=views.device_of(event),
        headers=headers,
        meta=meta,
        runs=[_run_view(r) for r in runs],
        artifacts=[await _artifact_view(service, a) for a in artifacts],
    )


def _run_view(run: Any) -> dict[str, Any]:
    return {
        "run": run,
        "output": None if run.output is None else views.pretty(run.output),
        "diffs": list(views.find_diffs(run.output)),
    }


async def _artifact_view(service: Service, art: Artifact) -> dict[str, Any]:
    diff: list[views.DiffLine] = []
    if views.is_diff_artifact(art.name, art.content_type) and art.size <= _INLINE_DIFF_CAP:
        path = await asyncio.to_thread(_artifact_path, service.config.store.data_dir, art.path)
        if path is not None:
            text = await asyncio.to_thread(path.read_text, "utf-8", "replace")
            diff = views.diff_lines(text)
    return {"art": art, "diff": diff}


@router.post("/ui/events/{event_id}/replay")
async def replay(request: Request, event_id: str) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    if (bad := _csrf_refusal(request, principal, await _form(request))) is not None:
        return bad
    result = await _service(request).store.replay(event_id)
    if result is None:
        ctx = _ctx(request, principal, "events")
        return render(request, "error.html", 404, **ctx, title="Not found", detail=event_id)
    return RedirectResponse(f"/ui/events/{result.id}", 303)


@router.get("/ui/artifacts/{artifact_id}")
async def artifact(request: Request, artifact_id: int) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    service = _service(request)
    art = await service.store.get_artifact(artifact_id)
    path = None
    if art is not None:
        path = await asyncio.to_thread(_artifact_path, service.config.store.data_dir, art.path)
    if art is None or path is None:
        ctx = _ctx(request, principal, "events")
        return render(request, "error.html", 404, **ctx, title="Not found", detail="artifact")
    # Served as a download, never rendered: an artifact is whatever a remote API returned.
    return FileResponse(
        path,
        media_type=art.content_type,
        filename=art.name,
        content_disposition_type="attachment",
        headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
    )


# --------------------------------------------------------------------------- dead letters


@router.get("/ui/dead")
async def dead_letters(request: Request) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    events, cursor = await query_events(
        _service(request).store,
        views.Filters(status="dead"),
        before=_cursor(request),
        limit=DEAD_PAGE_SIZE,
    )
    replayed = request.query_params.get("replayed", "")
    return render(
        request,
        "dead.html",
        **_ctx(request, principal, "dead"),
        rows=[views.row(e) for e in events],
        cursor=cursor,
        replayed=int(replayed) if replayed.isdigit() else None,
    )


@router.post("/ui/dead/replay")
async def bulk_replay(request: Request) -> Response:
    principal = _page_auth(request)
    if isinstance(principal, Response):
        return principal
    form = await _form(request)
    if (bad := _csrf_refusal(request, principal, form)) is not None:
        return bad
    ids = list(dict.fromkeys(form.get("ids", [])))[:MAX_BULK]
    store = _service(request).store
    done = 0
    for event_id in ids:
        # Dead letters only: the form lists them, and a forged id must not replay others.
        original = await store.get_event(event_id)
        if original is not None and original.status == "dead" and await store.replay(event_id):
            done += 1
    return RedirectResponse(f"/ui/dead?replayed={done}", 303)
