"""Schema versions, both backends: ``schema.sql`` (how a new database is created) equals every
migration replayed in order (how an existing one is upgraded), compared as normalised
catalog dumps; an old database upgrades in place; ``nethook db`` reports and upgrades."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nethook.cli import app
from nethook.store.base import load_migrations
from nethook.store.sqlite_schema import _split, migrate

from .conftest import require_pg


def _norm(sql: str | None) -> str:
    sql = re.sub(r"--[^\n]*", "", sql or "")
    return re.sub(r"\s+", " ", sql).strip().lower()


# --------------------------------------------------------------------------- SQLite


def sqlite_dump(conn: sqlite3.Connection) -> dict[str, Any]:
    """Tables (columns, keys, foreign keys, SQL) and indexes (columns, uniqueness, predicate)."""
    out: dict[str, Any] = {}
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE name NOT LIKE 'sqlite_%' AND name != 'schema_migrations' ORDER BY type, name"
    ).fetchall()
    for kind, name, table, sql in objects:
        entry: dict[str, Any] = {"table": table, "sql": _norm(sql)}
        if kind == "table":
            entry["columns"] = conn.execute(f"PRAGMA table_xinfo('{name}')").fetchall()
            entry["foreign_keys"] = conn.execute(f"PRAGMA foreign_key_list('{name}')").fetchall()
            entry["indexes"] = sorted(
                (row[1], row[2], row[3], row[4])
                for row in conn.execute(f"PRAGMA index_list('{name}')")
            )
        else:
            entry["columns"] = conn.execute(f"PRAGMA index_xinfo('{name}')").fetchall()
        out[f"{kind}:{name}"] = entry
    return out


def test_sqlite_fresh_schema_equals_migrations_replayed(tmp_path: Path) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    assert migrate(fresh) == [v for v, _, _ in load_migrations("sqlite")]

    replayed = sqlite3.connect(tmp_path / "replayed.db", isolation_level=None)
    for _version, _name, sql in load_migrations("sqlite"):
        for statement in _split(sql):
            replayed.execute(statement)
    assert sqlite_dump(fresh) == sqlite_dump(replayed)
    assert len(sqlite_dump(fresh)) >= 12  # tables and indexes, not an empty comparison


def test_sqlite_old_database_upgrades_in_place(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    first = load_migrations("sqlite")[0]
    for statement in _split(first[2]):
        conn.execute(statement)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at REAL NOT NULL)"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (1, ?, 0)", (first[1],))
    conn.execute(
        "INSERT INTO events (id, source, type, timestamp, received_at, data, meta, available_at) "
        "VALUES ('e1', 's', 't', 'ts', 1, x'7b7d', x'7b7d', 1)"
    )
    assert migrate(conn) == [v for v, _, _ in load_migrations("sqlite")][1:]
    assert migrate(conn) == []
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    migrate(fresh)
    assert sqlite_dump(conn) == sqlite_dump(fresh)
    assert conn.execute("SELECT id FROM events").fetchall() == [("e1",)]


# --------------------------------------------------------------------------- PostgreSQL


_PG_DUMP = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
               column_default, collation_name, is_identity, identity_generation
          FROM information_schema.columns WHERE table_schema = 'public'
         ORDER BY table_name, ordinal_position""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' ORDER BY tablename, indexname""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
         WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "options": """
        SELECT relname, reloptions FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL ORDER BY 1""",
}


def pg_dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {k: conn.execute(sql).fetchall() for k, sql in _PG_DUMP.items()}


def _pg_run(url: str, fn: Any) -> Any:
    import psycopg

    async def main() -> Any:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        async with conn:
            return await fn(conn)

    return asyncio.run(main())


@pytest.fixture
def empty_pg() -> Any:
    """A factory of empty PostgreSQL databases (no schema), dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(require_pg().create_empty())
        return made[-1]

    yield make
    for url in made:
        require_pg().drop(url)


def test_pg_fresh_schema_equals_migrations_replayed(empty_pg: Any) -> None:
    from nethook.store import pg_schema

    fresh, replayed = empty_pg(), empty_pg()
    assert _pg_run(fresh, pg_schema.migrate) == [v for v, _, _ in load_migrations("postgres")]

    async def replay(conn: Any) -> None:
        for _version, _name, sql in load_migrations("postgres"):
            await conn.execute(sql.encode())

    _pg_run(replayed, replay)
    _pg_run(replayed, lambda c: c.execute(pg_schema._CREATE_TABLE))
    a, b = pg_dump(fresh), pg_dump(replayed)
    assert a == b
    assert len(a["indexes"]) >= 12 and len(a["columns"]) >= 40 and a["functions"] and a["options"]


def test_pg_old_database_upgrades_in_place_and_refuses_when_told_not_to(empty_pg: Any) -> None:
    from nethook.config import StoreConfig
    from nethook.exceptions import ConfigError
    from nethook.store import pg_schema
    from nethook.store.postgres import PostgresStore

    url = empty_pg()
    version, name, sql = load_migrations("postgres")[0]

    async def install_v1(conn: Any) -> None:
        await conn.execute(pg_schema._CREATE_TABLE)
        await conn.execute(sql.encode())
        await conn.execute(pg_schema._STAMP, (version, name, 0.0))

    _pg_run(url, install_v1)

    async def open_with(migrate_flag: bool) -> None:
        store = PostgresStore(StoreConfig(url=url, migrate=migrate_flag, pool_size=2))
        await store.open()
        await store.close()

    with pytest.raises(ConfigError, match="nethook db upgrade"):
        asyncio.run(open_with(False))
    asyncio.run(open_with(True))
    st = _pg_run(url, pg_schema.status)
    assert not st.pending and st.version == load_migrations("postgres")[-1][0]
    fresh = empty_pg()
    _pg_run(fresh, pg_schema.migrate)
    assert pg_dump(url) == pg_dump(fresh)
    asyncio.run(open_with(False))  # current now: starts without migrating


# --------------------------------------------------------------------------- nethook db


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_db_cli_status_and_upgrade(backend: str, tmp_path: Path, empty_pg: Any) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}" if backend == "sqlite" else empty_pg()
    cfg = tmp_path / "nethook.yml"
    cfg.write_text(yaml.safe_dump({"store": {"url": url}}))
    runner = CliRunner()
    if backend == "sqlite":
        sqlite3.connect(tmp_path / "cli.db").close()  # an empty file: nothing applied yet
    behind = runner.invoke(app, ["db", "status", "--config", str(cfg)])
    assert behind.exit_code == 3, behind.output
    assert "pending" in behind.output and "0001" in behind.output

    up = runner.invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert up.exit_code == 0, up.output
    assert "applied 0001_initial" in up.output and "0002_kv_expiry" in up.output
    again = runner.invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert again.exit_code == 0 and "up to date" in again.output

    ok = runner.invoke(app, ["db", "status", "--config", str(cfg)])
    assert ok.exit_code == 0, ok.output
    assert "pending" not in ok.output and "0002" in ok.output
