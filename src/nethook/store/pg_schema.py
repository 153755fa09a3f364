"""PostgreSQL schema versions: create, upgrade and report (``nethook db``, store start-up).

A new, empty database gets ``schema.sql`` in one transaction, stamped with every
migration's version; an existing one replays the ``NNNN_name.sql`` files it has not seen,
each in its own transaction with its ``schema_migrations`` row. Nodes starting together
serialise on an advisory lock, so exactly one of them upgrades.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from .base import load_migrations, load_schema

if TYPE_CHECKING:  # psycopg is needed to talk to PostgreSQL, not to import this module
    from psycopg import AsyncConnection

# pg_advisory_lock key for schema changes: "nethook" in ASCII, as a bigint.
MIGRATION_LOCK = int.from_bytes(b"nethook", "big")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
)"""
_STAMP = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)"


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Which migrations a database has, and which this nethook would still apply."""

    applied: list[tuple[int, str, float]]
    pending: list[tuple[int, str]]
    unknown: list[int]  # versions in the database that this nethook does not know (newer)

    @property
    def version(self) -> int:
        return max((v for v, _, _ in self.applied), default=0)


async def status(conn: AsyncConnection[Any]) -> SchemaStatus:
    exists = await (await conn.execute("SELECT to_regclass('schema_migrations')")).fetchone()
    rows: list[tuple[int, str, float]] = []
    if exists is not None and exists[0] is not None:
        cur = await conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        )
        rows = [(int(v), str(n), float(a)) for v, n, a in await cur.fetchall()]
    done = {v for v, _, _ in rows}
    known = load_migrations("postgres")
    return SchemaStatus(
        applied=rows,
        pending=[(v, n) for v, n, _ in known if v not in done],
        unknown=sorted(done - {v for v, _, _ in known}),
    )


async def migrate(conn: AsyncConnection[Any]) -> list[int]:
    """Bring the schema to the latest version; returns the versions applied (autocommit conn)."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(_CREATE_TABLE)
        st = await status(conn)
        migrations = load_migrations("postgres")
        fresh = await (await conn.execute("SELECT to_regclass('events')")).fetchone()
        if not st.applied and (fresh is None or fresh[0] is None):
            async with conn.transaction():
                await conn.execute(load_schema("postgres").encode())
                now = time.time()
                for version, name, _sql in migrations:
                    await conn.execute(_STAMP, (version, name, now))
            return [v for v, _, _ in migrations]
        applied = []
        pending = {v for v, _ in st.pending}
        for version, name, sql in migrations:
            if version not in pending:
                continue
            async with conn.transaction():
                await conn.execute(sql.encode())
                await conn.execute(_STAMP, (version, name, time.time()))
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


async def require_current(conn: AsyncConnection[Any]) -> None:
    """With ``store.migrate: false``: refuse to run against a schema that lacks migrations."""
    st = await status(conn)
    if st.pending:
        names = ", ".join(f"{v:04d}_{n}" for v, n in st.pending)
        raise ConfigError(
            f"store: the database schema is at version {st.version} and misses {names}; "
            "run `nethook db upgrade` (or set store.migrate: true)"
        )


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
