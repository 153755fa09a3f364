"""The configuration's models: every section and key of the config file, as pydantic models.

They say what a valid configuration is (types, ranges, defaults, unknown keys refused) and
nothing about where it comes from: reading a file, ``${VAR}`` interpolation, relative paths
and the built-in defaults are in :mod:`nethook.config`, which also re-exports these models,
so ``from nethook.config import Config`` is the usual import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Model(BaseModel):
    # Unknown keys are errors: a typo in a security setting must not silently do nothing.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TLSConfig(_Model):
    certfile: Path
    keyfile: Path
    client_ca: Path | None = None


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    debug: bool = False
    tls: TLSConfig | None = None
    # Against slow or abusive clients (issue part 2/7); uvicorn enforces these.
    max_header_bytes: int = Field(16384, ge=1024)
    request_timeout: float = Field(30.0, gt=0)
    keepalive_timeout: float = Field(5.0, gt=0)
    limit_concurrency: int | None = Field(None, ge=1)


class RetentionConfig(_Model):
    max_age_days: float | None = Field(None, gt=0)
    max_events: int | None = Field(None, ge=1)


class StoreConfig(_Model):
    url: str = "sqlite:///nethook.db"
    data_dir: Path = Path("nethook-data")
    lease_seconds: float = Field(30.0, gt=0)
    poll_interval: float = Field(0.5, gt=0)
    # Group commit: a writer waits at most this long to gather more writes into one fsync.
    commit_delay_ms: float = Field(0.0, ge=0)
    retention: RetentionConfig = RetentionConfig()
    purge_interval: float = Field(300.0, gt=0)
    # PostgreSQL (part 6/7): connection pool size and schema upgrades at start-up.
    pool_size: int = Field(10, ge=1, le=200)
    migrate: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not (v.startswith("sqlite:") or v.startswith(("postgresql:", "postgres:"))):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return v

    @property
    def sqlite_path(self) -> Path | None:
        if not self.url.startswith("sqlite:"):
            return None
        rest = self.url.removeprefix("sqlite:").removeprefix("//")
        # sqlite:///relative.db -> "/relative.db" after removing "//" -> strip one slash;
        # sqlite:////abs/path.db -> "//abs/path.db" -> "/abs/path.db".
        if rest.startswith("/"):
            rest = rest[1:]
        return Path(rest or "nethook.db")


class RateLimitConfig(_Model):
    enabled: bool = True
    requests_per_minute: float = Field(600, gt=0)
    burst: int | None = Field(None, ge=1)
    storage: str = "memory://"


class SecurityConfig(_Model):
    max_payload_size: int = Field(1_048_576, ge=1)
    rate_limit: RateLimitConfig = RateLimitConfig()
    trusted_proxies: list[str] = []


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = (
        "INFO"
    )
    format: Literal["json", "console"] = "json"
    file: Path | None = None


class ApiConfig(_Model):
    url: str | None = None
    base_url: str | None = None
    headers: dict[str, str] = {}
    timeout: float = Field(10.0, gt=0)
    verify_tls: bool = True


AuthType = Literal[
    "none", "token", "bearer", "basic", "hmac", "github", "standard-webhooks", "meraki"
]


class AuthConfig(_Model):
    """How a source proves who it is. Several secrets may be given for rotation."""

    type: AuthType
    header: str | None = None
    secret: SecretStr | None = Field(None, validation_alias="token")
    secrets: list[SecretStr] = []
    secret_file: Path | None = None
    username: str | None = None
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    tolerance: float = Field(300.0, gt=0)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _token_alias(cls, data: Any) -> Any:
        # ``token:`` reads better for bearer/token sources; it means the same as ``secret:``.
        if isinstance(data, dict) and "token" in data and "secret" in data:
            raise ValueError("give either 'token' or 'secret', not both")
        return data

    def all_secrets(self) -> list[str]:
        """Every accepted secret, in order: ``secret``, ``secrets``, then ``secret_file`` lines."""
        out: list[str] = []
        if self.secret is not None:
            out.append(self.secret.get_secret_value())
        out.extend(s.get_secret_value() for s in self.secrets)
        if self.secret_file is not None:
            text = self.secret_file.read_text(encoding="utf-8")
            out.extend(line.strip() for line in text.splitlines() if line.strip())
        return [s for s in out if s]


class ReplyConfig(_Model):
    """A source's own answer. ``body`` is a template over ``id``, ``status``, ``results``,
    ``error``, ``duplicate``; ``status`` defaults to 200 after a wait, 202 when queued."""

    status: int | None = Field(None, ge=100, le=599)
    headers: dict[str, str] = {}
    body: str | None = None


class SourceConfig(_Model):
    """A sender: its route, how it authenticates, how its payload becomes events."""

    type: Literal["http", "syslog"] = "http"
    auth: AuthConfig | None = None
    path: str | None = None
    # None: "envelope" for the source called "default" (POST /events), "auto" for others.
    format: str | None = None
    event_type: str | None = None
    max_payload_size: int | None = Field(None, ge=1)
    rate_limit: RateLimitConfig | None = None
    allow: list[str] = []
    respond: Literal["queued", "result"] = "queued"
    wait: float = Field(10.0, ge=0, le=300)
    reply: ReplyConfig | None = None
    listen: str | None = None


class RuleOn(_Model):
    type: str | list[str] | None = None
    source: str | list[str] | None = None

    def types(self) -> list[str] | None:
        return [self.type] if isinstance(self.type, str) else self.type

    def sources(self) -> list[str] | None:
        return [self.source] if isinstance(self.source, str) else self.source


class ThrottleConfig(_Model):
    once_within: str | None = None
    once_after: str | None = None
    group_by: list[str] = []


class AccumulateConfig(_Model):
    threshold: int = Field(..., ge=1)
    within: str
    group_by: list[str] = []


class RuleConfig(_Model):
    name: str
    on: RuleOn = RuleOn()
    when: str | bool | None = None
    do: list[dict[str, Any]] = Field(default_factory=list)
    stop: bool = False
    throttle: ThrottleConfig | None = None
    accumulate: AccumulateConfig | None = None
    allow_config: bool = False

    @field_validator("do")
    @classmethod
    def _one_action_per_step(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, step in enumerate(v):
            names = [k for k in step if k not in _STEP_KEYS]
            if len(names) != 1:
                raise ValueError(
                    f"step {i} must name exactly one action (got {names or 'none'}); "
                    f"per-step keys are {sorted(_STEP_KEYS)}"
                )
        return v


_STEP_KEYS = frozenset({"when", "continue_on_error", "timeout", "retries", "name"})


class DispatcherConfig(_Model):
    concurrency: int = Field(32, ge=1, le=1024)
    max_attempts: int = Field(5, ge=1, le=100)
    backoff_base: float = Field(1.0, gt=0)
    backoff_max: float = Field(300.0, gt=0)
    action_timeout: float = Field(30.0, gt=0)
    max_emit_depth: int = Field(5, ge=0)


class DevicesConfig(_Model):
    """SSH session pool and command policy for device actions (part 4/7)."""

    max_sessions: int = Field(
        16, ge=1, le=1024, description="open SSH connections in all (NETCONF sessions count)"
    )
    per_device: int = Field(
        2, ge=1, le=64, description="concurrent sessions per device (keep below its vty lines)"
    )
    idle_timeout: float = Field(300.0, gt=0, description="seconds before an idle session closes")
    keepalive: float = Field(60.0, gt=0, description="SSH keepalive interval, seconds")
    connect_timeout: float = Field(15.0, gt=0, description="TCP, banner and login timeout")
    command_timeout: float = Field(
        60.0, gt=0, description="seconds to wait for a command's prompt (per action: read_timeout)"
    )
    fanout: int = Field(
        10, ge=1, le=256, description="devices one group/tag action works on at a time"
    )
    # A probe costs a round trip, so a recently used session only needs an active transport.
    health_check_after: float = Field(
        10.0,
        ge=0,
        description="a session idle longer than this must answer a prompt before reuse",
    )
    # Retries must not lock the account.
    auth_failure_hold: float = Field(
        300.0,
        ge=0,
        description="after an auth failure, no new login with the same credentials for this long",
    )
    allowed_commands: list[str] = Field(
        default_factory=lambda: [
            "show",
            "ping",
            "traceroute",
            "dir",
            "more",
            "who",
            "terminal length",
        ],
        description="command prefixes (whole words) a device.command may start with",
    )


class NotifyConfig(_Model):
    """Outbound notifications (part 3/7)."""

    allow_private: bool = False
    secret: SecretStr | None = None
    timeout: float = Field(10.0, gt=0)


class AdminConfig(_Model):
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    # Wrong admin credentials (login form, Basic, Bearer) allowed per client address and
    # minute, after a first burst of as many; then 429 until the budget refills.
    failed_logins_per_minute: int = Field(10, ge=1, le=10000)


class Config(_Model):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    security: SecurityConfig = SecurityConfig()
    logging: LoggingConfig = LoggingConfig()
    apis: dict[str, ApiConfig] = {}
    admin: AdminConfig = AdminConfig()
    dispatcher: DispatcherConfig = DispatcherConfig()
    devices: DevicesConfig = DevicesConfig()
    notify: NotifyConfig = NotifyConfig()
    inventory: Path | None = None
    vars: dict[str, Any] = {}
    sources: dict[str, SourceConfig] | None = None
    rules: list[RuleConfig] | None = None

    @field_validator("sources")
    @classmethod
    def _sources_have_auth(
        cls, v: dict[str, SourceConfig] | None
    ) -> dict[str, SourceConfig] | None:
        for name, src in (v or {}).items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"{name}: source names may use letters, digits, '_', '.', '-'")
            if src.type == "http" and src.auth is None:
                raise ValueError(
                    f"{name}.auth: every source needs auth (use {{type: none}} to opt out)"
                )
        return v
