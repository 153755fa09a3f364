"""PostgreSQL for tests: a fresh database per test, cloned from a migrated template.

``NETHOOK_TEST_POSTGRES_DSN`` names a server and a database to connect to for admin work
(default ``postgresql://postgres@127.0.0.1:5432/test``). The template is built once per
test session (``CREATE DATABASE ... TEMPLATE`` is a file copy: ~tens of ms, where running
the migrations again would cost more); each test gets ``nethook_t_<pid>_<n>`` and drops it
afterwards. Databases left by a killed session (its pid is gone) are dropped on the next
session's first use. With ``CI=true`` a missing server fails the test (``require_service``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

DSN = os.environ.get("NETHOOK_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_PREFIX = "nethook_t_"
_counter = itertools.count()
_template: str | None = None
_unavailable: str | None = None


def url_for(dbname: str, dsn: str = DSN) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + dbname))


def admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(DSN, autocommit=True, connect_timeout=5)


def unavailable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    global _unavailable
    if _template is not None:
        return None
    if _unavailable is None:
        try:
            with admin() as conn:
                conn.execute("SELECT 1")
            _unavailable = ""
        except psycopg.Error as exc:
            _unavailable = f"{DSN}: {exc}".strip()
    return _unavailable or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_leftovers(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'nethook\\_t\\_%'"
    ).fetchall()
    for (name,) in rows:
        m = re.fullmatch(r"nethook_t_(?:tmpl_)?(\d+)_\w+", str(name))
        if m and not _alive(int(m.group(1))):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def template() -> str:
    """The migrated template database of this session (built on first use)."""
    global _template
    if _template is not None:
        return _template
    from nethook.store import pg_schema

    name = f"{_PREFIX}tmpl_{os.getpid()}_{os.urandom(3).hex()}"
    with admin() as conn:
        _drop_leftovers(conn)
        conn.execute(f'CREATE DATABASE "{name}"')

    async def build() -> None:
        aconn = await psycopg.AsyncConnection.connect(url_for(name), autocommit=True)
        async with aconn:
            await pg_schema.migrate(aconn)

    # In a thread of its own: callers may already be inside an event loop (async fixtures).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, build()).result()
    _template = name
    atexit.register(drop, name)
    return name


def create(template_name: str | None = None) -> str:
    """A new database cloned from the template; returns its URL."""
    name = f"{_PREFIX}{os.getpid()}_{next(_counter)}_{os.urandom(2).hex()}"
    tmpl = template_name or template()
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{tmpl}"')
    return url_for(name)


def create_empty() -> str:
    """A new database with no schema at all (migration tests)."""
    name = f"{_PREFIX}{os.getpid()}_{next(_counter)}_{os.urandom(2).hex()}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url_for(name)


def drop(url_or_name: str) -> None:
    name = urlsplit(url_or_name).path.lstrip("/") if "://" in url_or_name else url_or_name
    try:
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # the server is gone (end of session); the next session drops it


@contextmanager
def fresh_database() -> Iterator[str]:
    """A fresh, migrated database for one test: its URL; dropped afterwards."""
    url = create()
    try:
        yield url
    finally:
        drop(url)
