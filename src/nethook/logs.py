"""Structured logs: JSON lines by default, ``console`` for people; never a secret."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from .config import LoggingConfig

_REDACT_KEYS = frozenset({"secret", "token", "password", "authorization", "signature"})


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Belt and braces: code never logs secrets on purpose, but a key named like one is masked.
    for key in list(event):
        if key.lower() in _REDACT_KEYS:
            event[key] = "***"
    return event


def configure(cfg: LoggingConfig, fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib loggers uvicorn uses) once per process."""
    level = getattr(logging, cfg.level.upper())
    out: TextIO = stream or sys.stderr
    if cfg.file is not None:
        cfg.file.parent.mkdir(parents=True, exist_ok=True)
        out = open(cfg.file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the process
    fmt = fmt or cfg.format
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=max(level, logging.WARNING), stream=out, format="%(message)s", force=True
    )
