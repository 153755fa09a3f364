"""The store contract fixtures: every test runs once per backend (SQLite, PostgreSQL).

``store`` is an open store on a fresh database; ``another_store()`` opens a second store on
the same database, the way a second node (process, host) would see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import require_service
from nethook.config import StoreConfig
from nethook.store.base import Store
from nethook.store.sqlite import SQLiteStore

BACKENDS = ["sqlite", "postgres"]

StoreFactory = Callable[[], Awaitable[Store]]


def require_pg() -> Any:
    """The ``pgtools`` module when a PostgreSQL server is there; else skip (fail in CI)."""
    try:
        import pgtools
    except ImportError as exc:  # the postgres extra is not installed
        require_service("PostgreSQL", f"psycopg is not installed: {exc}")
        raise
    why = pgtools.unavailable()
    if why:
        require_service("PostgreSQL", why)
    return pgtools


def pg_url_or_skip() -> str:
    """A fresh migrated PostgreSQL database (the caller drops it)."""
    return str(require_pg().create())


def open_pg(url: str, **overrides: Any) -> Store:
    from nethook.store.postgres import PostgresStore

    return PostgresStore(StoreConfig(url=url, pool_size=4, **overrides))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def stores(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Open stores on one fresh database of ``backend``; all closed (and dropped) after."""
    opened: list[Store] = []
    url = pg_url_or_skip() if backend == "postgres" else ""

    async def factory() -> Store:
        s: Store = SQLiteStore(tmp_path / "t.db") if backend == "sqlite" else open_pg(url)
        await s.open()
        opened.append(s)
        return s

    yield factory
    for s in opened:
        await s.close()
    if url:
        import pgtools

        pgtools.drop(url)


@pytest.fixture
async def store(stores: StoreFactory) -> Store:
    return await stores()
