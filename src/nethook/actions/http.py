"""``http``: call an outside HTTP API; the response body is kept as an artifact."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from ..exceptions import PermanentError, TransientError
from .base import Action, ActionContext, ActionResult, ArtifactData, Options

# Statuses that say "try again later" rather than "you asked for something wrong".
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_OUTPUT_TEXT = 64 * 1024


class HttpOptions(Options):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = {}
    params: dict[str, str | int | float | bool] = {}
    json_body: Any = Field(None, alias="json")
    body: str | None = None
    timeout: float = Field(10.0, gt=0, le=300)
    verify_tls: bool = True
    expect: list[int] | None = None

    @model_validator(mode="after")
    def _one_body(self) -> HttpOptions:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either 'json' or 'body', not both")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


def response_output(resp: httpx.Response) -> dict[str, Any]:
    """A response as step output: status, content type, and the JSON or (truncated) text."""
    ctype = resp.headers.get("content-type", "")
    out: dict[str, Any] = {"status": resp.status_code, "content_type": ctype}
    if "json" in ctype:
        try:
            out["json"] = resp.json()
            return out
        except ValueError:
            pass
    text = resp.text
    out["text"] = text[:_MAX_OUTPUT_TEXT]
    if len(text) > _MAX_OUTPUT_TEXT:
        out["truncated"] = True
    return out


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, converting transport failures into our error classes."""
    try:
        return await client.request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientError(f"{method} {url}: timed out after {timeout}s") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise PermanentError(f"invalid url {url!r}: {exc}") from exc


def check_status(resp: httpx.Response, expect: list[int] | None = None) -> None:
    """Raise Transient for retryable statuses, Permanent for other unexpected ones."""
    ok = resp.status_code in expect if expect else resp.is_success
    if ok:
        return
    msg = f"{resp.request.method} {resp.request.url}: HTTP {resp.status_code}"
    if resp.status_code in RETRYABLE_STATUSES:
        raise TransientError(msg, retry_after=parse_retry_after(resp.headers.get("retry-after")))
    raise PermanentError(msg)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpAction(Action):
    name = "http"
    Options = HttpOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        kwargs: dict[str, Any] = {"headers": opts.headers, "params": opts.params or None}
        if opts.json_body is not None:
            kwargs["json"] = opts.json_body
        elif opts.body is not None:
            kwargs["content"] = opts.body.encode()
        if opts.verify_tls:
            resp = await send(ctx.http, opts.method, opts.url, timeout=opts.timeout, **kwargs)
        else:
            async with httpx.AsyncClient(verify=False) as client:
                resp = await send(client, opts.method, opts.url, timeout=opts.timeout, **kwargs)
        artifact = ArtifactData(
            name="response",
            content=resp.content,
            content_type=resp.headers.get("content-type", "application/octet-stream"),
        )
        check_status(resp, opts.expect)
        return ActionResult(ok=True, output=response_output(resp), artifacts=(artifact,))
