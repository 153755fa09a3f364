"""The config reference, generated from the pydantic models (``nethook config reference``).

docs/config.md is this output; a test fails when the two differ, so the reference can
never miss a key.
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .config_models import AuthConfig, Config, RuleConfig, SourceConfig

INTRO = """\
# Configuration reference

One file, YAML or JSON by extension. `${VAR}` and `${VAR:-default}` are replaced from the
environment before validation (`$${` is a literal `${`); secrets may also come from files
(`secret_file:`). Relative paths are relative to the config file. Unknown keys are errors.
YAML is read with YAML 1.2 booleans: only `true`/`false` are booleans, so `on:` and
values such as `off` stay strings.

Check a file with `nethook config check FILE`. This page is generated from the models by
`nethook config reference`; a test keeps it in step with the code.
"""


#: Notes per key, kept here rather than in the models so config_models.py stays readable.
NOTES: dict[str, str] = {
    "server": "HTTP listener",
    "store": "where events live: SQLite (one node) or PostgreSQL (several)",
    "security": "defaults for every source",
    "apis": "outside APIs the built-in actions call (`dad_jokes`, `deck_of_cards`)",
    "admin": "credentials for `/api` and the dashboard; none: loopback only",
    "admin.failed_logins_per_minute": "wrong admin credentials allowed per client address and"
    " minute (after a first burst of as many); then 429 until the budget refills",
    "vars": "values rules see as `vars`",
    "sources": "senders; none: a token-protected `default` source (POST /events)",
    "rules": "none: the three classic rules",
    "inventory": "device inventory file (nethook YAML or Ansible YAML)",
    "server.max_header_bytes": "request head larger than this: 431",
    "server.request_timeout": "request head or body slower than this: 408",
    "server.tls.client_ca": "set: clients must present a certificate signed by it (mTLS)",
    "store.url": "`sqlite:///path.db` or `postgresql://user@host/db`",
    "store.data_dir": "artifacts and backups, as files",
    "store.lease_seconds": "a worker that stops renewing loses its events after this",
    "store.poll_interval": "idle workers look for work at least this often",
    "store.commit_delay_ms": "group commit: wait this long for more writes per fsync",
    "security.max_payload_size": "bytes; larger bodies get 413 before they are read",
    "security.rate_limit.requests_per_minute": "per source and client address",
    "security.rate_limit.burst": "default: requests_per_minute / 6, at least 10",
    "security.rate_limit.storage": "`memory://` per node, or `redis://...` shared",
    "security.trusted_proxies": "CIDRs whose X-Forwarded-For is believed",
    "sources.NAME.path": "own route, e.g. /joke (default: /hooks/NAME; `default` is /events)",
    "sources.NAME.format": "envelope, raw, auto, or a vendor adapter",
    "sources.NAME.event_type": "type for payloads that do not carry one",
    "sources.NAME.allow": "CIDRs allowed to post (403 otherwise)",
    "sources.NAME.respond": "`result`: wait for the actions and answer with their results",
    "sources.NAME.wait": "seconds to wait with respond: result",
    "sources.NAME.auth.type": "see Auth types below",
    "sources.NAME.auth.secret": "also spelled `token`",
    "sources.NAME.auth.secrets": "several accepted secrets (rotation)",
    "sources.NAME.auth.secret_file": "one secret per line",
    "sources.NAME.auth.tolerance": "seconds a signed timestamp may differ from now",
    "rules[].on": "event type and/or source to match",
    "rules[].when": "Jinja2 expression over event, vars, inventory",
    "rules[].do": "ordered steps: one action each",
    "rules[].stop": "end matching after this rule",
    "rules[].allow_config": "allow actions that change devices",
    "dispatcher.concurrency": "events processed at once per process",
    "dispatcher.max_attempts": "attempts for a transient failure before `dead`",
    "dispatcher.max_emit_depth": "emit chains deeper than this are refused",
}


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (list, tuple):
        args = get_args(annotation)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        args = get_args(annotation)
        return f"map of {_type_name(args[1])}" if args else "map"
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr):
            return "secret"
        if issubclass(annotation, BaseModel):
            return "section"
        return {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
            "Path": "path",
            "PosixPath": "path",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, SecretStr):
        return "(secret)"
    return f"`{value}`" if value not in ([], {}) else f"`{value!r}`"


def _nested(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        for inner in get_args(arg):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _section(model: type[BaseModel], prefix: str, out: list[str], seen: set[str]) -> None:
    rows = []
    children: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        desc = (field.description or NOTES.get(f"{prefix}{key}", "")).replace("\n", " ")
        rows.append(
            f"| `{prefix}{key}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |"
        )
        nested = _nested(field.annotation)
        if nested is not None:
            child_prefix = f"{prefix}{key}."
            origins = {get_origin(field.annotation)}
            origins.update(get_origin(a) for a in get_args(field.annotation))
            if dict in origins:
                child_prefix = f"{prefix}{key}.NAME."
            if list in origins:
                child_prefix = f"{prefix}{key}[]."
            children.append((child_prefix, nested))
    doc = (model.__doc__ or "").strip().splitlines()
    title = prefix.rstrip(".") or "top level"
    out.append(f"\n## `{title}`\n")
    if doc and model is not Config:
        out.append(doc[0] + "\n")
    out.append("| key | type | default | notes |\n|---|---|---|---|")
    out.extend(rows)
    for child_prefix, child in children:
        if child_prefix in seen:
            continue
        seen.add(child_prefix)
        _section(child, child_prefix, out, seen)


def reference() -> str:
    """The whole reference as Markdown."""
    out = [INTRO]
    _section(Config, "", out, set())
    out.append("\n## Auth types\n")
    out.append(
        "`auth.type` is one of: "
        + ", ".join(f"`{t}`" for t in get_args(AuthConfig.model_fields["type"].annotation))
        + ".\n"
    )
    out.append("\n## Rule steps\n")
    out.append(
        "Each item of a rule's `do:` names exactly one action with its arguments (templates "
        "rendered from `event`, `vars`, `inventory`, `results`, `throttle`), plus optional "
        "`when`, `continue_on_error`, `timeout`, `retries` and `name`. "
        f"Rule keys: {', '.join(f'`{k}`' for k in RuleConfig.model_fields)}. "
        f"Source keys: {', '.join(f'`{k}`' for k in SourceConfig.model_fields)}.\n"
    )
    return "\n".join(out).rstrip() + "\n"
