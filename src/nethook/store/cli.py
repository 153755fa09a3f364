"""``nethook db``: schema versions of the configured store (SQLite or PostgreSQL).

``db upgrade`` applies the migrations the database has not seen (what start-up does when
``store.migrate`` is true); ``db status`` shows the applied and pending versions and the
events by status. Run ``db upgrade`` once before starting nodes with ``store.migrate: false``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..config import StoreConfig
from .base import load_migrations

db_app = typer.Typer(help="Database schema: status and upgrades.", no_args_is_help=True)


def _store_config(config: Path | None) -> StoreConfig:
    from ..cli import _load

    return _load(config).store


def _shown(cfg: StoreConfig) -> str:
    from .pg_schema import safe_url

    return safe_url(cfg.url)


def _fail(message: str) -> typer.Exit:
    from ..cli import err

    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


# --------------------------------------------------------------------------- SQLite


def _sqlite_connect(cfg: StoreConfig, create: bool) -> sqlite3.Connection:
    path = cfg.sqlite_path
    assert path is not None
    if not create and not path.exists():
        raise _fail(f"no database at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _sqlite_upgrade(cfg: StoreConfig) -> list[int]:
    from .sqlite_schema import migrate

    conn = _sqlite_connect(cfg, create=True)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        return migrate(conn)
    finally:
        conn.close()


def _sqlite_status(
    cfg: StoreConfig,
) -> tuple[list[tuple[int, str, float]], list[int], dict[str, int]]:
    from .sqlite_schema import schema_status

    conn = _sqlite_connect(cfg, create=False)
    try:
        applied, pending = schema_status(conn)
        counts: dict[str, int] = {}
        if applied:
            rows = conn.execute("SELECT status, count(*) FROM events GROUP BY status")
            counts = {str(s): int(n) for s, n in rows}
        return applied, pending, counts
    finally:
        conn.close()


# --------------------------------------------------------------------------- PostgreSQL


async def _pg(cfg: StoreConfig, upgrade: bool) -> Any:
    import psycopg

    from . import pg_schema

    try:
        conn = await psycopg.AsyncConnection.connect(cfg.url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise _fail(f"cannot connect to {_shown(cfg)}: {exc}") from None
    async with conn:
        if upgrade:
            return await pg_schema.migrate(conn)
        st = await pg_schema.status(conn)
        counts: dict[str, int] = {}
        if st.applied:
            cur = await conn.execute("SELECT status, count(*) FROM events GROUP BY status")
            counts = {str(s): int(n) for s, n in await cur.fetchall()}
        return st.applied, [v for v, _ in st.pending], counts


# --------------------------------------------------------------------------- commands

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="NETHOOK_CONFIG", help="Config file (YAML or JSON)."),
]


@db_app.command("upgrade")
def upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations the database has not seen yet (safe to run again)."""
    from ..cli import console

    cfg = _store_config(config)
    if cfg.sqlite_path is not None:
        applied = _sqlite_upgrade(cfg)
    else:
        applied = asyncio.run(_pg(cfg, upgrade=True))
    names = {v: n for v, n, _ in load_migrations("sqlite" if cfg.sqlite_path else "postgres")}
    if not applied:
        console.print(f"{_shown(cfg)}: schema is up to date (version {max(names, default=0)})")
        return
    for version in applied:
        console.print(f"applied {version:04d}_{names[version]}")
    console.print(f"{_shown(cfg)}: schema at version {max(applied)}")


@db_app.command("status")
def status(config: ConfigOpt = None) -> None:
    """Show applied and pending migrations, and events by status. Exit 3 when behind."""
    from ..cli import console

    cfg = _store_config(config)
    dialect = "sqlite" if cfg.sqlite_path else "postgres"
    if cfg.sqlite_path is not None:
        applied, pending, counts = _sqlite_status(cfg)
    else:
        applied, pending, counts = asyncio.run(_pg(cfg, upgrade=False))
    names = {v: n for v, n, _ in load_migrations(dialect)}
    table = Table("version", "name", "applied")
    for version, name, at in applied:
        table.add_row(
            f"{version:04d}", name, datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
        )
    for version in pending:
        table.add_row(f"{version:04d}", names[version], "[yellow]pending[/yellow]")
    console.print(f"store: {_shown(cfg)} ({dialect})")
    console.print(table)
    if counts:
        console.print("events: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if pending:
        console.print("[yellow]behind:[/yellow] run `nethook db upgrade`")
        raise typer.Exit(3)
