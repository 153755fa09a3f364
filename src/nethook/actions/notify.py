"""``notify``: outbound webhooks to Webex, Slack, Microsoft Teams or a generic URL.

Formatting is pure (``format_*`` and :func:`prepare`, unit-tested without a network); the
action only sends. Deliveries go through the SSRF guard (:mod:`nethook.security.ssrf`)
because a URL is a template and an event may influence it. Failures follow the usual
contract: 429/503 (and other retryable statuses) raise TransientError carrying the
target's ``Retry-After``, which the dispatcher waits out before the next attempt; other
4xx are permanent.

Example rule steps::

    - notify: {target: webex, url: "${WEBEX_HOOK}", markdown: "**{{ event.data.device }}** down"}
    - notify: {target: webex, room_id: "${ROOM}", token: "${WEBEX_TOKEN}", text: "..."}
    - notify: {target: slack, url: "${SLACK_HOOK}", text: "link down on {{ event.data.device }}"}
    - notify: {target: teams, url: "${TEAMS_HOOK}", title: "Link down", text: "...",
               facts: {device: "{{ event.data.device }}"}}
    - notify: {url: "https://hooks.example.com/in", body: {device: "{{ event.data.device }}"}}
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import Field, SecretStr, model_validator

from ..config import AuthConfig, NotifyConfig
from ..exceptions import ConfigError, PermanentError, TransientError
from ..security.signing import sign
from ..security.ssrf import check_url, guarded_client
from .base import Action, ActionContext, ActionResult, Options
from .http import check_status, response_output, send

Target = Literal["webex", "slack", "teams", "generic"]

WEBEX_MESSAGES_URL = "https://webexapis.com/v1/messages"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
# 1.4 is the highest Adaptive Card version every Teams client (desktop, web, mobile) renders.
ADAPTIVE_CARD_VERSION = "1.4"
USER_AGENT = "nethook-notify/1"

# Which options each target understands; anything else given is an error, since a
# misplaced option (``blocks`` on a Teams target) would otherwise be dropped silently.
_TARGET_FIELDS: dict[str, frozenset[str]] = {
    "webex": frozenset({"url", "text", "markdown", "room_id", "token"}),
    "slack": frozenset({"url", "text", "blocks"}),
    "teams": frozenset({"url", "text", "title", "facts"}),
    "generic": frozenset({"url", "text", "body", "headers", "secret", "sign"}),
}
_COMMON_FIELDS = frozenset({"target", "allow_private", "timeout", "verify_tls"})


class NotifyOptions(Options):
    """Options of one ``notify`` step (validated after its templates are rendered)."""

    target: Target = "generic"
    url: str | None = None
    text: str | None = None
    markdown: str | None = None
    title: str | None = None
    facts: dict[str, Any] | None = None
    blocks: list[dict[str, Any]] | None = None
    room_id: str | None = None
    token: SecretStr | None = None
    body: Any = None
    headers: dict[str, str] = {}
    secret: SecretStr | None = None
    #: generic: sign with Standard Webhooks headers when a secret is configured.
    sign: bool = True
    #: None: follow ``notify.allow_private`` from the config.
    allow_private: bool | None = None
    timeout: float | None = Field(None, gt=0, le=300)
    verify_tls: bool = True

    @model_validator(mode="after")
    def _fits_target(self) -> NotifyOptions:
        allowed = _TARGET_FIELDS[self.target] | _COMMON_FIELDS
        given = {name for name in self.model_fields_set if getattr(self, name) is not None}
        stray = sorted(given - allowed)
        if stray:
            raise ValueError(
                f"target {self.target} does not use {stray}; it takes "
                f"{sorted(_TARGET_FIELDS[self.target])}"
            )
        if self.target == "webex":
            if (self.text is None) == (self.markdown is None):
                raise ValueError("webex: give exactly one of 'text' or 'markdown'")
            if self.url is None and self.room_id is None:
                raise ValueError("webex: give 'url' (incoming webhook) or 'room_id' and 'token'")
            if self.room_id is not None and self.token is None:
                raise ValueError("webex: 'room_id' posts to the messages API, which needs 'token'")
        elif self.url is None:
            raise ValueError(f"{self.target}: 'url' is required")
        if self.target == "slack" and self.text is None and not self.blocks:
            raise ValueError("slack: give 'text' (and optionally 'blocks')")
        if self.target == "teams" and self.text is None:
            raise ValueError("teams: 'text' is required")
        if self.target == "generic" and self.body is None and self.text is None:
            raise ValueError("generic: give 'body' (any JSON) or 'text'")
        if self.secret is not None and not self.secret.get_secret_value().startswith("whsec_"):
            raise ValueError("secret must be a Standard Webhooks secret: whsec_<base64>")
        return self


# --------------------------------------------------------------------------- formatting


def format_webex(
    text: str | None = None, markdown: str | None = None, room_id: str | None = None
) -> dict[str, Any]:
    """A Webex message: ``{"markdown": ...}`` or ``{"text": ...}``, plus ``roomId`` for the
    messages API (incoming webhooks are bound to a room and take no roomId)."""
    body: dict[str, Any] = {"roomId": room_id} if room_id is not None else {}
    if markdown is not None:
        body["markdown"] = markdown
    else:
        body["text"] = text or ""
    return body


def format_slack(text: str | None, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook message. ``text`` is kept with blocks: Slack shows it in
    notifications and to clients that cannot render blocks."""
    body: dict[str, Any] = {"text": text or ""}
    if blocks:
        body["blocks"] = blocks
    return body


def format_teams(
    text: str, title: str | None = None, facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Teams incoming-webhook (Workflows) message: one Adaptive Card with TextBlocks and,
    given ``facts``, a FactSet (name/value rows, e.g. device and interface)."""
    card_body: list[dict[str, Any]] = []
    if title:
        card_body.append(
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}
        )
    card_body.append({"type": "TextBlock", "text": text, "wrap": True})
    if facts:
        card_body.append(
            {
                "type": "FactSet",
                "facts": [{"title": str(k), "value": _fact(v)} for k, v in facts.items()],
            }
        )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD,
                "contentUrl": None,
                "content": {
                    "$schema": ADAPTIVE_CARD_SCHEMA,
                    "type": "AdaptiveCard",
                    "version": ADAPTIVE_CARD_VERSION,
                    "body": card_body,
                },
            }
        ],
    }


def _fact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def message_id(event_id: str, step: str) -> str:
    """A Standard Webhooks ``webhook-id`` that is the same on every retry of one delivery,
    so a receiver can drop duplicates (delivery is at-least-once)."""
    return "msg_" + hashlib.sha256(f"{event_id}\x00{step}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request, ready to send."""

    url: str
    headers: dict[str, str]
    body: bytes


def prepare(
    opts: NotifyOptions, cfg: NotifyConfig, msg_id: str, now: float | None = None
) -> Prepared:
    """Build the URL, headers and exact body bytes for ``opts`` (pure; ``now`` stamps the
    signature). The body is serialised once and those very bytes are signed and sent."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    url = opts.url
    payload: Any
    if opts.target == "webex":
        payload = format_webex(opts.text, opts.markdown, opts.room_id)
        if opts.room_id is not None:
            url = url or WEBEX_MESSAGES_URL
        if opts.token is not None:
            headers["Authorization"] = f"Bearer {opts.token.get_secret_value()}"
    elif opts.target == "slack":
        payload = format_slack(opts.text, opts.blocks)
    elif opts.target == "teams":
        assert opts.text is not None  # the options validator guarantees it
        payload = format_teams(opts.text, opts.title, opts.facts)
    else:
        payload = opts.body if opts.body is not None else {"text": opts.text}
        headers.update(opts.headers)
    assert url is not None  # the options validator guarantees it
    body = orjson.dumps(payload, default=str)
    if opts.target == "generic" and opts.sign:
        secret = opts.secret or cfg.secret
        if secret is not None:
            auth = AuthConfig(type="standard-webhooks", secret=secret)
            try:
                headers.update(sign(auth, body, now, delivery_id=msg_id))
            except ConfigError as exc:
                raise PermanentError(f"notify: cannot sign: {exc}") from None
    return Prepared(url, headers, body)


def redact(url: str) -> str:
    """``scheme://host[:port]/…``: Slack, Teams and Webex webhook URLs carry their secret
    in the path, and errors are stored and shown on the dashboard."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    tail = "/…" if parts.path not in ("", "/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{tail}"


# --------------------------------------------------------------------------- the action


class NotifyAction(Action):
    """POST a message to a chat webhook or a generic (signed) webhook."""

    name = "notify"
    Options = NotifyOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        cfg = ctx.config.notify
        req = prepare(opts, cfg, message_id(ctx.event.id, ctx.step), time.time())
        shown = redact(req.url)
        check_url(req.url)  # scheme check up front: a clear message before any lookup
        allow_private = cfg.allow_private if opts.allow_private is None else opts.allow_private
        timeout = opts.timeout or cfg.timeout
        started = time.monotonic()
        where = f"notify {opts.target} {shown}"
        async with guarded_client(allow_private, verify=opts.verify_tls) as client:
            try:
                resp = await send(
                    client, "POST", req.url, timeout=timeout, headers=req.headers, content=req.body
                )
            except TransientError as exc:
                # Messages are rebuilt without the URL (it may hold the webhook's secret).
                raise TransientError(f"{where}: {_scrub(exc, req.url)}") from None
            except PermanentError as exc:
                raise type(exc)(f"{where}: {_scrub(exc, req.url)}") from None
        try:
            check_status(resp)
        except TransientError as exc:
            hint = f" (Retry-After {exc.retry_after:g}s)" if exc.retry_after is not None else ""
            # Keep the peer's Retry-After: the dispatcher waits at least that long.
            raise TransientError(
                f"{where}: HTTP {resp.status_code}{hint}", retry_after=exc.retry_after
            ) from None
        except PermanentError:
            raise PermanentError(f"{where}: HTTP {resp.status_code}{_snippet(resp.text)}") from None
        ctx.log.info("notify.sent", target=opts.target, url=shown, status=resp.status_code)
        return ActionResult(
            ok=True,
            output={
                "target": opts.target,
                "url": shown,
                "status": resp.status_code,
                "elapsed": round(time.monotonic() - started, 6),
                "response": response_output(resp),
            },
        )


def _scrub(exc: Exception, url: str) -> str:
    """The cause of a transport failure, without the URL ``http.send`` puts in messages."""
    cause = exc.__cause__
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return text.replace(url, redact(url)) if url else text


def _snippet(text: str, limit: int = 200) -> str:
    """The start of an error response body (Slack says ``invalid_payload``, Teams why)."""
    text = " ".join(text.split())
    if not text:
        return ""
    return ": " + (text[:limit] + "…" if len(text) > limit else text)
