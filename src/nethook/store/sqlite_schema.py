"""SQLite schema versions: create, upgrade and report (``nethook db``, store start-up).

A new, empty database gets ``schema.sql`` in one transaction, stamped with every
migration's version (as :mod:`.pg_schema` does for PostgreSQL); an existing one replays the
``NNNN_name.sql`` files it has not seen, each in its own transaction with its
``schema_migrations`` row.
"""

from __future__ import annotations

import sqlite3
import time

from .base import load_migrations, load_schema


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations this database has not seen; returns the versions applied.

    A new, empty database gets ``schema.sql`` in one transaction, stamped with every
    version (as the PostgreSQL store does); a test proves it equals the migrations replayed.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    has_events = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
    ).fetchone()
    todo = [m for m in load_migrations("sqlite") if m[0] not in done]
    if not done and has_events is None:
        steps = [(todo, load_schema("sqlite"))]  # one step: the whole schema, every version
    else:
        steps = [([m], m[2]) for m in todo]
    applied = []
    for versions, sql in steps:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split(sql):
                conn.execute(statement)
            for version, name, _sql in versions:
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied += [v for v, _, _ in versions]
    return applied


def schema_status(conn: sqlite3.Connection) -> tuple[list[tuple[int, str, float]], list[int]]:
    """``(applied migrations, pending versions)`` of a database, for ``nethook db status``."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    rows = (
        conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        if has_table
        else []
    )
    applied = [(int(v), str(n), float(a)) for v, n, a in rows]
    done = {v for v, _, _ in applied}
    return applied, [v for v, _, _ in load_migrations("sqlite") if v not in done]


def _split(sql: str) -> list[str]:
    # One statement per execute(): sqlite3 refuses several at once. Whole-line comments go
    # first (they may hold a ';'); the .sql files keep ';' out of literals and trailing
    # comments, so a plain split is enough.
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
