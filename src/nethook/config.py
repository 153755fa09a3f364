"""The config file: reading it (YAML or JSON), ``${VAR}`` interpolation, relative paths, defaults.

YAML is read with a YAML 1.2-style core schema: only ``true``/``false`` are booleans, so a
rule's ``on:`` key and values such as ``state: off`` stay strings (PyYAML's YAML 1.1 would
turn them into ``True``/``False``).

The models the file is validated into are in :mod:`nethook.config_models`; they are
re-exported here, so ``from nethook.config import Config`` (and every other name this module
had before the split) keeps working.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import SecretStr, ValidationError

# The models moved to config_models (a module past ~500 lines is two modules), but callers
# import them from here: they are re-exported, private helpers included. config_models
# imports nothing from this module, so importing either one first is safe (no cycle).
from .config_models import _STEP_KEYS as _STEP_KEYS
from .config_models import (
    AccumulateConfig,
    AdminConfig,
    ApiConfig,
    AuthConfig,
    AuthType,
    Config,
    DevicesConfig,
    DispatcherConfig,
    LoggingConfig,
    NotifyConfig,
    RateLimitConfig,
    ReplyConfig,
    RetentionConfig,
    RuleConfig,
    RuleOn,
    SecurityConfig,
    ServerConfig,
    SourceConfig,
    StoreConfig,
    ThrottleConfig,
    TLSConfig,
)
from .config_models import _Model as _Model
from .exceptions import ConfigError

# The public surface: this module's loading API plus the re-exported models.
__all__ = [
    "CLASSIC_RULES",
    "TOKEN_FILE_NAME",
    "AccumulateConfig",
    "AdminConfig",
    "ApiConfig",
    "AuthConfig",
    "AuthType",
    "Config",
    "DevicesConfig",
    "DispatcherConfig",
    "LoggingConfig",
    "NotifyConfig",
    "RateLimitConfig",
    "ReplyConfig",
    "RetentionConfig",
    "RuleConfig",
    "RuleOn",
    "SecurityConfig",
    "ServerConfig",
    "SourceConfig",
    "StoreConfig",
    "TLSConfig",
    "ThrottleConfig",
    "default_config",
    "ensure_token_file",
    "from_dict",
    "interpolate",
    "load",
    "load_yaml",
    "parse_text",
    "token_file_for",
    "with_defaults",
]

# --------------------------------------------------------------------------- YAML loading


class _CoreLoader(yaml.SafeLoader):
    """SafeLoader whose booleans are only true/false (YAML 1.2 core schema)."""


_CoreLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML with the core-schema booleans (``on``/``off``/``yes``/``no`` stay strings)."""
    return yaml.load(text, Loader=_CoreLoader)


# --------------------------------------------------------------------------- interpolation

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] | None = None, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a loaded document.

    A variable that is unset and has no default is an error naming the key that uses it.
    ``$${`` escapes a literal ``${``.
    """
    environ = os.environ if env is None else env
    errors: list[str] = []

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:

            def sub(m: re.Match[str]) -> str:
                start = m.start()
                if start > 0 and node[start - 1] == "$":
                    return m.group(0)
                name, default = m.group(1), m.group(2)
                if name in environ:
                    return environ[name]
                if default is not None:
                    return default
                errors.append(f"{where or '<root>'}: environment variable {name} is not set")
                return ""

            return _VAR.sub(sub, node).replace("$${", "${")
        return node

    result = walk(value, path)
    if errors:
        raise ConfigError(errors)
    return result


# --------------------------------------------------------------------------- loading


def _format_validation(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(f"{loc}: {msg}")
    return out


def parse_text(text: str, suffix: str) -> Any:
    """Parse a config document by file extension (``.json`` or ``.yml``/``.yaml``)."""
    try:
        if suffix == ".json":
            return orjson.loads(text)
        if suffix in (".yml", ".yaml"):
            return load_yaml(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse: {exc}") from exc
    raise ConfigError(f"unknown config extension {suffix!r}: use .json, .yml or .yaml")


def from_dict(raw: Any, env: dict[str, str] | None = None, base_dir: Path | None = None) -> Config:
    """Validate a loaded document into a :class:`Config` (interpolating ``${VAR}`` first)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("<root>: the config must be a mapping")
    raw = interpolate(raw, env)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None
    if base_dir is not None:
        cfg = _resolve_paths(cfg, base_dir)
    return cfg


def _resolve_paths(cfg: Config, base: Path) -> Config:
    """Relative paths in a config file are relative to that file, as users expect."""

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    store = cfg.store
    path = store.sqlite_path
    url = store.url
    if path is not None and not path.is_absolute():
        url = f"sqlite:///{fix(path)}"
    data_dir = fix(store.data_dir)
    assert data_dir is not None
    store = store.model_copy(update={"url": url, "data_dir": data_dir})
    sources = None
    if cfg.sources is not None:
        sources = {}
        for name, src in cfg.sources.items():
            if src.auth is not None and src.auth.secret_file is not None:
                src = src.model_copy(
                    update={
                        "auth": src.auth.model_copy(
                            update={"secret_file": fix(src.auth.secret_file)}
                        )
                    }
                )
            sources[name] = src
    tls = cfg.server.tls
    if tls is not None:
        tls = TLSConfig(
            certfile=fix(tls.certfile) or tls.certfile,
            keyfile=fix(tls.keyfile) or tls.keyfile,
            client_ca=fix(tls.client_ca),
        )
    server = cfg.server.model_copy(update={"tls": tls})
    return cfg.model_copy(
        update={
            "store": store,
            "sources": sources,
            "inventory": fix(cfg.inventory),
            "server": server,
        }
    )


def load(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Load and validate a config file; raise :class:`ConfigError` naming each bad key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from None
    cfg = from_dict(parse_text(text, p.suffix.lower()), env, base_dir=p.resolve().parent)
    return with_defaults(cfg)


# --------------------------------------------------------------------------- defaults

TOKEN_FILE_NAME = "nethook.token"


def token_file_for(cfg: Config) -> Path:
    """Where the generated default token lives: beside the SQLite database (or the data dir)."""
    db = cfg.store.sqlite_path
    base = db.parent if db is not None else cfg.store.data_dir
    return base / TOKEN_FILE_NAME


def ensure_token_file(path: Path) -> str:
    """Return the token in ``path``, creating it (mode 0600) with a random token if missing."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = _secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token


CLASSIC_RULES: list[dict[str, Any]] = [
    {
        "name": "tell a joke",
        "on": {"type": "joke_request"},
        "do": [{"joke": {}}],
    },
    {
        "name": "draw cards",
        "on": {"type": "card_draw"},
        "do": [
            {
                "card_draw": {
                    "deck_id": "{{ event.data.deck_id | default('new') }}",
                    "count": "{{ event.data.count | default(1) }}",
                    "game_session": "{{ event.data.game_session | default('') }}",
                    "shuffle": "{{ event.data.shuffle | default(false) }}",
                }
            }
        ],
    },
    {
        # The device comes from the event (an inventory name, host or IP) and so does the
        # command: device.command runs it through the command policy (read-only prefixes,
        # one line, no redirects). Without an inventory there is no device to reach and no
        # credentials: the check is only logged, as before part 4/7.
        "name": "device status check",
        "on": {"type": "device_status_check"},
        "do": [
            {
                "device.command": {
                    "device": "{{ event.data.device | default(event.data.device_ip) }}",
                    "command": "{{ event.data.command | default('show ip interface brief') }}",
                },
                "when": "inventory.devices",
            },
            {
                "log": {
                    "message": "device status check for {{ event.data.device_ip }}: "
                    "{{ event.data.command }} (no inventory configured)",
                },
                "when": "not inventory.devices",
            },
        ],
    },
]


def with_defaults(cfg: Config, env: dict[str, str] | None = None) -> Config:
    """Fill what a classic or minimal config leaves out.

    No ``sources``: a ``default`` source with token auth (``X-Webhook-Token``); the token comes
    from ``NETHOOK_TOKEN`` or a file generated once beside the database. No ``rules``: the rules
    for the three classic events.
    """
    update: dict[str, Any] = {}
    if cfg.sources is None:
        environ = os.environ if env is None else env
        if environ.get("NETHOOK_TOKEN"):
            auth = AuthConfig(
                type="token", header="X-Webhook-Token", secret=SecretStr(environ["NETHOOK_TOKEN"])
            )
        else:
            auth = AuthConfig(
                type="token", header="X-Webhook-Token", secret_file=token_file_for(cfg)
            )
        update["sources"] = {"default": SourceConfig(auth=auth, format="envelope")}
    if cfg.rules is None:
        update["rules"] = [RuleConfig.model_validate(r) for r in CLASSIC_RULES]
    return cfg.model_copy(update=update) if update else cfg


def default_config(workdir: Path | None = None) -> Config:
    """The embedded default: SQLite in the working directory, classic rules, token auth."""
    base = (workdir or Path.cwd()).resolve()
    cfg = from_dict(
        {
            "store": {
                "url": f"sqlite:///{base / 'nethook.db'}",
                "data_dir": str(base / "nethook-data"),
            }
        }
    )
    return with_defaults(cfg)
