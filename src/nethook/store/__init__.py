"""Stores (a plugin family): the interface in base.py, SQLite by default, PostgreSQL for many nodes."""

from __future__ import annotations

from ..config import StoreConfig
from .base import EventFilter, Store

__all__ = ["EventFilter", "Store", "open_store"]


def open_store(cfg: StoreConfig) -> Store:
    """Build (not yet open) the store a config names."""
    path = cfg.sqlite_path
    if path is not None:
        from .sqlite import SQLiteStore

        return SQLiteStore(path, commit_delay_ms=cfg.commit_delay_ms)
    try:
        from .postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        from ..exceptions import ConfigError

        raise ConfigError(
            "store.url: PostgreSQL support needs the postgres extra: pip install 'nethook[postgres]'"
        ) from exc
    return PostgresStore(cfg)  # type: ignore[no-any-return,unused-ignore]
