"""``restconf.get``: RFC 8040 ``GET /restconf/data/<path>`` on inventory devices.

Targets are those of the CLI actions (``device``, ``devices``, ``group``, ``tag``; see
:mod:`nethook.actions.device`): several devices are queried concurrently, one result each.

The request asks for ``application/yang-data+json`` with the device's credentials (HTTP
basic). TLS verification follows the device's ``verify_tls``: true (system CAs), false
(lab boxes with self-signed certificates), or a CA bundle path. The raw JSON is kept as
an artifact; the step output holds the parsed data (cut when large) and a summary.

A 401/403 (wrong credentials) and a 404 (no such path or module) are permanent; 5xx, 429
and transport errors are transient, as for every HTTP action.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import Field, field_validator

from ..devices.inventory import Device
from ..exceptions import PermanentError, TransientError
from .base import Action, ActionContext, ActionResult, ArtifactData
from .device import MAX_OUTPUT_TEXT, DeviceOutcome, TargetOptions, run_targets, slug
from .http import check_status, send

YANG_JSON = "application/yang-data+json"
# Characters RFC 8040 paths use as syntax (module:node, list=key1,key2): kept as they are.
_PATH_SAFE = "/:=,-._~"
_BAD_PATH = re.compile(r"(^|/)\.\.?(/|$)|[?#\\\s]")


class RestconfOptions(TargetOptions):
    #: The data resource below ``/restconf/data/``, e.g. ``ietf-interfaces:interfaces``.
    path: str = Field(..., min_length=1, max_length=1024)
    #: RFC 8040 query parameters: depth, fields, content, with-defaults.
    params: dict[str, str | int] = {}
    timeout: float = Field(15.0, gt=0, le=300)

    @field_validator("path")
    @classmethod
    def _stays_in_data(cls, v: str) -> str:
        # The path may come from event data: it must not leave /restconf/data or smuggle a
        # query. ".." segments, '?', '#', backslashes and whitespace are refused.
        v = v.strip().lstrip("/")
        if _BAD_PATH.search(v) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
            raise ValueError("must be a plain RESTCONF data path (no '..', '?', '#', spaces)")
        return v


def _verify(device: Device) -> bool | ssl.SSLContext:
    if isinstance(device.verify_tls, str):
        try:
            return ssl.create_default_context(cafile=device.verify_tls)
        except (OSError, ssl.SSLError) as exc:
            raise PermanentError(
                f"device {device.name}: verify_tls CA bundle {device.verify_tls!r}: {exc}"
            ) from exc
    return device.verify_tls


def _cert_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def summarize(data: Any) -> dict[str, Any]:
    """What came back, at a glance: top-level keys and the size of each list in them."""
    if not isinstance(data, dict):
        return {"type": type(data).__name__}
    out: dict[str, Any] = {"keys": list(data)}
    counts: dict[str, int] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                if isinstance(item, list):
                    counts[f"{key}/{sub}"] = len(item)
        elif isinstance(value, list):
            counts[key] = len(value)
    if counts:
        out["lists"] = counts
    return out


class RestconfGetAction(Action):
    """GET a data resource from one device, or from each of several (see
    :mod:`nethook.actions.device` for targets and the fan-out result)."""

    name = "restconf.get"
    Options = RestconfOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        async def work(dev: Device) -> DeviceOutcome:
            return await _get(ctx, dev, opts)

        return await run_targets(ctx, opts, work)


async def _get(ctx: ActionContext, dev: Device, opts: RestconfOptions) -> DeviceOutcome:
    creds = await asyncio.to_thread(dev.credentials)  # may read a secret file
    url = f"https://{dev.host}:{dev.restconf_port}/restconf/data/{quote(opts.path, _PATH_SAFE)}"
    verify = _verify(dev)
    kwargs: dict[str, Any] = {
        "headers": {"Accept": YANG_JSON},
        "params": opts.params or None,
        "auth": httpx.BasicAuth(creds.username, creds.password),
    }
    try:
        if verify is True:
            resp = await send(ctx.http, "GET", url, timeout=opts.timeout, **kwargs)
        else:
            async with httpx.AsyncClient(verify=verify) as client:
                resp = await send(client, "GET", url, timeout=opts.timeout, **kwargs)
    except TransientError as exc:
        bad_cert = _cert_error(exc)
        if bad_cert is None:
            raise
        # An untrusted certificate stays untrusted: retrying cannot help.
        raise PermanentError(
            f"{dev.name}: TLS certificate not trusted ({bad_cert.verify_message}); "
            "set the device's verify_tls to a CA bundle path (or false in a lab)"
        ) from exc
    if resp.status_code in (401, 403):
        raise PermanentError(
            f"{dev.name}: RESTCONF refused the credentials (HTTP {resp.status_code})"
        )
    if resp.status_code == 404:
        raise PermanentError(f"{dev.name}: RESTCONF has no data at {opts.path!r} (HTTP 404)")
    check_status(resp)
    artifact = ArtifactData(
        name=f"{dev.name}-{slug(opts.path)}.json",
        content=resp.content,
        content_type=resp.headers.get("content-type", YANG_JSON),
    )
    output: dict[str, Any] = {
        "device": dev.name,
        "url": url,
        "status": resp.status_code,
        "bytes": len(resp.content),
    }
    if resp.status_code == 204 or not resp.content:
        output["data"] = None
    else:
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"{dev.name}: RESTCONF answered non-JSON: {exc}") from exc
        output["summary"] = summarize(data)
        if len(resp.content) <= MAX_OUTPUT_TEXT:
            output["data"] = data
        else:
            output["truncated"] = True  # the artifact has it all
    return DeviceOutcome(output, [artifact])
