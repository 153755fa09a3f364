"""The running service's shared state: config, store, compiled rules and sources.

Built once from a config (and again on reload); the HTTP routes, the dispatcher and the CLI
all read it, none of them own it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .actions.base import get_action
from .config import Config, RateLimitConfig, SourceConfig
from .engine.rules import Rulebook, compile_rules
from .engine.templates import Template, compile_template
from .exceptions import ConfigError
from .security.limits import Network, RateLimiter, TokenBucket, parse_networks
from .security.verifiers import Verifier, build_verifier


@dataclass(frozen=True, slots=True)
class Source:
    """A configured sender, ready for requests: its verifier is built, its limits resolved."""

    name: str
    config: SourceConfig
    verifier: Verifier
    max_payload: int
    format: str
    limiter: RateLimiter | None = None
    allow: tuple[Network, ...] = ()
    reply: CompiledReply | None = None
    #: The source's secrets, to redact from anything stored if a sender misplaces one.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledReply:
    status: int | None
    headers: Mapping[str, str]
    body: Template | None


def check_action(name: str, args: Mapping[str, Any]) -> str | None:
    """Load-time check of one rule step: the action exists and knows every argument key."""
    try:
        action = get_action(name)
    except KeyError:
        from .actions.base import known_actions

        return f"unknown action {name!r} (known: {', '.join(known_actions())})"
    except ImportError as exc:
        return f"action {name!r} needs an optional dependency: {exc}"
    fields = action.Options.model_fields
    accepted = set(fields) | {f.alias for f in fields.values() if f.alias}
    unknown = sorted(set(args) - accepted)
    if unknown:
        return f"{name}: unknown argument(s) {unknown}; accepted: {sorted(accepted)}"
    return None


MIN_SECRET_BYTES = 16


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_warnings(cfg: Config) -> list[str]:
    """What is allowed but unwise: printed by ``config check`` and at start-up."""
    out: list[str] = []
    for name, sc in (cfg.sources or {}).items():
        if sc.auth is None:
            continue
        if sc.auth.type == "none":
            out.append(f"sources.{name}.auth: type none: anyone who can reach it can post events")
            continue
        try:
            short = [s for s in sc.auth.all_secrets() if len(s.encode()) < MIN_SECRET_BYTES]
        except OSError:
            short = []
        if short:
            out.append(
                f"sources.{name}.auth: a secret is shorter than {MIN_SECRET_BYTES} bytes; "
                "use a long random one (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    if cfg.server.tls is None and not _is_loopback_host(cfg.server.host):
        out.append(
            f"server: plain HTTP on {cfg.server.host}, beyond loopback: tokens and "
            "payloads travel in clear text; set server.tls (nethook init --self-signed)"
        )
    return out


def build_limiter(source: str, rate: RateLimitConfig) -> RateLimiter | None:
    """Per-node token buckets (``memory://``, the default) or a limit shared through Redis."""
    if not rate.enabled:
        return None
    if rate.storage.startswith("memory://"):
        return TokenBucket(rate.requests_per_minute, rate.burst)
    from .security.shared_limits import SharedRateLimiter, is_shared

    if not is_shared(rate.storage):
        raise ConfigError(
            f"security.rate_limit.storage: {rate.storage!r} is neither memory:// nor redis://"
        )
    return SharedRateLimiter(source, rate.storage, rate.requests_per_minute, rate.burst)


def check_syslog_listeners(cfg: Config) -> list[str]:
    """Syslog ``listen:`` and ``allow:`` problems, found by ``config check`` and not only at bind.

    Two sources on one transport and port would have the second fail to bind at start-up
    (or, for ``[::]`` and ``0.0.0.0``, take part of the other's traffic): refused here.
    """
    from .ingress.syslog_transport import parse_listen

    errors: list[str] = []
    taken: list[tuple[str, int, str, str]] = []  # transport, port, host, source
    for name, sc in (cfg.sources or {}).items():
        if sc.type != "syslog":
            continue
        try:
            addresses = parse_listen(sc.listen, f"sources.{name}.listen")
            parse_networks(sc.allow, f"sources.{name}.allow")
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        for addr in addresses:
            for transport, port, host, other in taken:
                if (
                    addr.port
                    and (transport, port) == (addr.transport, addr.port)
                    and _hosts_overlap(host, addr.host)
                ):
                    errors.append(
                        f"sources.{name}.listen: {addr} overlaps {transport} port {port}"
                        f" of sources.{other}"
                    )
                    break
            taken.append((addr.transport, addr.port, addr.host, name))
    return errors


def _hosts_overlap(a: str, b: str) -> bool:
    """Would listeners on ``a`` and ``b`` (same transport and port) collide?

    ``[::]`` is bound dual-stack (it takes IPv4 too), so it collides with everything;
    ``0.0.0.0`` with every IPv4 address. Names are compared as written: resolving them
    here would make ``config check`` depend on DNS.
    """
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()
    for one, other in ((x, y), (y, x)):
        if one.is_unspecified and (one.version == 6 or other.version == 4):
            return True
    return x == y


def build_sources(cfg: Config) -> dict[str, Source]:
    errors: list[str] = []
    out: dict[str, Source] = {}
    for name, sc in (cfg.sources or {}).items():
        if sc.type != "http":
            continue
        assert sc.auth is not None  # the config model guarantees it for http sources
        try:
            verifier = build_verifier(sc.auth)
        except ConfigError as exc:
            errors.extend(f"sources.{name}.auth: {e}" for e in exc.errors)
            continue
        except OSError as exc:
            errors.append(f"sources.{name}.auth.secret_file: {exc.strerror}: {exc.filename}")
            continue
        rate = sc.rate_limit or cfg.security.rate_limit
        try:
            limiter = build_limiter(name, rate)
        except ConfigError as exc:
            errors.extend(
                f"sources.{name}.rate_limit: {e}" if sc.rate_limit else e for e in exc.errors
            )
            continue
        try:
            allow = parse_networks(sc.allow, f"sources.{name}.allow")
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        reply = None
        if sc.reply is not None:
            try:
                body = (
                    compile_template(sc.reply.body, f"sources.{name}.reply.body")
                    if sc.reply.body is not None
                    else None
                )
            except ConfigError as exc:
                errors.extend(exc.errors)
                continue
            reply = CompiledReply(sc.reply.status, dict(sc.reply.headers), body)
        out[name] = Source(
            name=name,
            config=sc,
            verifier=verifier,
            max_payload=sc.max_payload_size or cfg.security.max_payload_size,
            format=sc.format or ("envelope" if name == "default" else "auto"),
            limiter=limiter,
            allow=allow,
            reply=reply,
            secrets=tuple(sc.auth.all_secrets()),
        )
    if errors:
        raise ConfigError(errors)
    return out


@dataclass(slots=True)
class Runtime:
    """Everything built from one config; swapped whole on reload."""

    config: Config
    sources: dict[str, Source]
    rulebook: Rulebook
    paths: dict[str, str] = field(default_factory=dict)
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def build(cls, cfg: Config) -> Runtime:
        """Validate everything a config implies; ConfigError lists every problem at once."""
        errors: list[str] = []
        sources: dict[str, Source] = {}
        rulebook = Rulebook(())
        try:
            sources = build_sources(cfg)
        except ConfigError as exc:
            errors.extend(exc.errors)
        try:
            rulebook = compile_rules(cfg.rules or [], cfg.vars, check_action)
        except ConfigError as exc:
            errors.extend(exc.errors)
        paths: dict[str, str] = {}
        for name, src in sources.items():
            if src.config.path:
                path = "/" + src.config.path.strip("/")
                if path in paths:
                    errors.append(f"sources.{name}.path: {path} is already used by {paths[path]}")
                paths[path] = name
        errors.extend(check_syslog_listeners(cfg))
        trusted: tuple[Network, ...] = ()
        try:
            trusted = parse_networks(cfg.security.trusted_proxies, "security.trusted_proxies")
        except ConfigError as exc:
            errors.extend(exc.errors)
        if errors:
            raise ConfigError(errors)
        return cls(cfg, sources, rulebook, paths, trusted)
