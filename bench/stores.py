"""Store benchmark: SQLite against PostgreSQL, one node against two (issue part 6/7).

    .venv/bin/python bench/stores.py [--duration 8] [--rounds 3] [--connections 32]
                                     [--only ingest|e2e] [--stores sqlite,postgres]
                                     [--nodes 1,2] [--json OUT]

Two measurements, each for every (store, nodes) pair, on this machine, in the same run:

* **ingest**: ``nethook serve --no-workers``, wrk posts events (no delivery id) for
  ``--duration`` seconds; stored (2xx) events per second. Two nodes are two servers on the
  same database, each driven by its own wrk with half the connections.
* **end-to-end**: ``nethook serve`` with its in-process workers and one no-op rule; wrk
  posts for ``--duration`` seconds, then the clock runs until no event is queued or running:
  events processed per second, from the first request to the last ``succeeded``.

Scenarios are interleaved round by round and the median of ``--rounds`` is reported: a
shared machine's load drifts, and interleaving spreads that drift over every scenario. The
headline is the PostgreSQL/SQLite ratio of durable ingest on one node (the issue asks for
at least 0.7). After every ingest run the stored rows are counted: fewer rows than 2xx
answers is reported as LOST and fails the run.

PostgreSQL: ``NETHOOK_BENCH_POSTGRES_DSN`` (default: ``NETHOOK_TEST_POSTGRES_DSN``, else
``postgresql://postgres@127.0.0.1:5432/test``) names the server; each scenario gets a
fresh database ``nethook_bench_<pid>_<n>``, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _targets import BODY, JSON_CT, NETHOOK_TOKEN, Launch, Server, free_port
from _wrk import HttpRequest, WrkError, lua_script, run_wrk, wrk_path
from rich.console import Console
from rich.table import Table

DSN = os.environ.get(
    "NETHOOK_BENCH_POSTGRES_DSN",
    os.environ.get("NETHOOK_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
)
REQUEST = HttpRequest("POST", "/events", {**JSON_CT, "X-Webhook-Token": NETHOOK_TOKEN}, BODY)
DRAIN_TIMEOUT = 180.0

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 130)


# --------------------------------------------------------------------------- databases


class Database:
    """Where a scenario's nodes store events: a SQLite file or a fresh PostgreSQL database."""

    _n = 0

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.name = ""
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.db'}"
            self.path = workdir / "bench.db"
            return
        import psycopg

        Database._n += 1
        self.name = f"nethook_bench_{os.getpid()}_{Database._n}"
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = urlunsplit(urlsplit(DSN)._replace(path="/" + self.name))

    def count(self, live_only: bool = False) -> int:
        where = " WHERE status IN ('queued', 'running')" if live_only else ""
        sql = f"SELECT count(*) FROM events{where}"
        if self.kind == "sqlite":
            with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)) as c:
                return int(c.execute(sql).fetchone()[0])
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0

    def succeeded(self) -> int:
        sql = "SELECT count(*) FROM events WHERE status = 'succeeded'"
        if self.kind == "sqlite":
            with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)) as c:
                return int(c.execute(sql).fetchone()[0])
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0

    def drop(self) -> None:
        if self.kind != "postgres":
            return
        import psycopg

        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def check_postgres() -> str | None:
    try:
        import psycopg

        with psycopg.connect(DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"{DSN}: {exc}"
    return None


# --------------------------------------------------------------------------- one scenario


CONFIG = """\
server: {{host: 127.0.0.1, port: {port}}}
store: {{url: "{url}", data_dir: "{workdir}/data", poll_interval: 0.2}}
logging: {{level: WARNING}}
security: {{rate_limit: {{enabled: false}}}}
sources:
  default: {{auth: {{type: token, header: X-Webhook-Token, secret: "{token}"}}}}
rules:
  - name: noop
    on: {{type: bench}}
    do: [{{log: {{message: "bench {{{{ event.id }}}}", level: debug}}}}]
"""


@dataclass
class Run:
    mode: str  # ingest | e2e
    store: str
    nodes: int
    rps: float = 0.0  # ingest: 2xx/s; e2e: events succeeded per second
    acked: int = 0
    stored: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    non_2xx: int = 0
    errors: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    lost: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def run_scenario(mode: str, store: str, nodes: int, args: argparse.Namespace) -> Run:
    run = Run(mode, store, nodes)
    with tempfile.TemporaryDirectory(prefix=f"nethook-bench-{store}-") as tmp:
        workdir = Path(tmp)
        db = Database(store, workdir)
        servers: list[Server] = []
        try:
            script = workdir / "bench.lua"
            script.write_text(lua_script(REQUEST), encoding="utf-8")
            for i in range(nodes):
                port = free_port()
                cfg = workdir / f"node{i}.yml"
                cfg.write_text(
                    CONFIG.format(port=port, url=db.url, workdir=workdir, token=NETHOOK_TOKEN),
                    encoding="utf-8",
                )
                argv = [str(Path(sys.prefix) / "bin" / "nethook"), "serve", "--config", str(cfg)]
                if mode == "ingest":
                    argv.append("--no-workers")
                launch = Launch(
                    argv=argv,
                    request=REQUEST,
                    expected_status=202,
                    ready_path="/health",
                    ready_status=200,
                    cwd=workdir,
                )
                node_dir = workdir / f"node{i}"
                node_dir.mkdir()
                srv = Server(launch, port, node_dir)
                srv.start()
                servers.append(srv)
                if i == 0:
                    srv.wait_ready()  # the first node creates the schema; then the others
            for srv in servers[1:]:
                srv.wait_ready()
            for srv in servers:
                srv.check()
            if args.warmup:
                _drive(servers, script, args, args.warmup)
                if mode == "e2e":
                    _drain(db)
            before = db.count()
            cpu0 = sum(s.cpu_seconds() for s in servers)
            started = time.monotonic()
            results = _drive(servers, script, args, args.duration)
            if mode == "e2e":
                _drain(db)
            run.seconds = time.monotonic() - started
            run.server_cpu_s = sum(s.cpu_seconds() for s in servers) - cpu0
            run.acked = sum(r.ok_2xx for r in results)
            run.non_2xx = sum(r.non_2xx for r in results)
            run.errors = sum(r.errors for r in results)
            run.p50_ms = max(r.latency_ms["p50"] for r in results)
            run.p99_ms = max(r.latency_ms["p99"] for r in results)
            run.stored = db.count() - before
            run.lost = max(0, run.acked - run.stored)
            if mode == "ingest":
                run.rps = sum(r.ok_2xx / r.duration_s for r in results)
            else:
                run.rps = run.stored / run.seconds
                run.extra["succeeded"] = db.succeeded()
        finally:
            for srv in servers:
                srv.stop()
            db.drop()
    return run


def _drive(
    servers: list[Server], script: Path, args: argparse.Namespace, seconds: int
) -> list[Any]:
    """wrk against every node at once, the connections split between them."""
    conns = max(1, args.connections // len(servers))
    threads = max(1, args.threads // len(servers))
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = [
            pool.submit(
                run_wrk, s.base_url, script, duration=seconds, connections=conns, threads=threads
            )
            for s in servers
        ]
        return [f.result() for f in futures]


def _drain(db: Database) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while db.count(live_only=True):
        if time.monotonic() > deadline:
            raise RuntimeError(f"events still pending after {DRAIN_TIMEOUT:.0f}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------- report


def _median(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.rps)
    mid = ordered[len(ordered) // 2]
    mid.extra["rounds"] = [round(r.rps, 1) for r in runs]
    mid.extra["spread"] = (
        round(statistics.pstdev(r.rps for r in runs) / mid.rps * 100, 1) if mid.rps else 0.0
    )
    return mid


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def report(best: dict[tuple[str, str, int], Run], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"stores: median of {args.rounds} rounds, {args.duration}s each, "
        f"{args.connections} connections"
    )
    for col in (
        "mode",
        "store",
        "nodes",
        "events/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "server CPU",
        "vs SQLite",
        "vs 1 node",
    ):
        table.add_column(col, justify="right" if col not in ("mode", "store") else "left")
    for (mode, store, nodes), r in sorted(best.items()):
        sqlite = best.get((mode, "sqlite", nodes))
        one = best.get((mode, store, 1))
        table.add_row(
            mode,
            store,
            str(nodes),
            f"{r.rps:,.0f}",
            f"±{r.extra.get('spread', 0)}%",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            str(r.non_2xx + r.errors),
            f"{r.server_cpu_s / max(r.seconds, 1e-9) * 100:.0f}%",
            _ratio(r.rps, sqlite.rps if sqlite else None) if store != "sqlite" else "1.00",
            _ratio(r.rps, one.rps if one else None) if nodes != 1 else "1.00",
        )
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=("ingest", "e2e"), action="append")
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--nodes", default="1,2")
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if wrk_path() is None:
        console.print("wrk not found (scripts/install-bench-deps.sh)")
        return 2
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if "postgres" in stores and (why := check_postgres()):
        console.print(f"[yellow]PostgreSQL unavailable, SQLite only:[/yellow] {why}")
        stores = [s for s in stores if s != "postgres"]
    modes = args.only or ["ingest", "e2e"]
    nodes = [int(n) for n in args.nodes.split(",")]
    scenarios = [(m, s, n) for m in modes for n in nodes for s in stores]
    runs: dict[tuple[str, str, int], list[Run]] = {k: [] for k in scenarios}
    failed = False
    load = os.getloadavg()[0]
    for rnd in range(args.rounds):
        for mode, store, n in scenarios:
            try:
                r = run_scenario(mode, store, n, args)
            except (WrkError, RuntimeError, OSError) as exc:
                console.print(f"[red]{mode} {store} x{n} failed:[/red] {exc}")
                failed = True
                continue
            runs[(mode, store, n)].append(r)
            console.print(
                f"round {rnd + 1}: {mode:6} {store:8} x{n}: {r.rps:8,.0f}/s "
                f"(acked {r.acked}, stored {r.stored}, load {os.getloadavg()[0]:.1f})"
            )
            if r.lost:
                failed = True
    best = {k: _median(v) for k, v in runs.items() if v}
    out.print(
        f"machine: {os.cpu_count()} CPUs, load average at start {load:.1f}; "
        f"PostgreSQL {DSN.rsplit('@', 1)[-1]}"
    )
    out.print(report(best, args))
    for mode in modes:
        pg, lite = best.get((mode, "postgres", 1)), best.get((mode, "sqlite", 1))
        if pg and lite:
            verdict = (
                ""
                if mode != "ingest"
                else (" (>= 0.7: ok)" if pg.rps / lite.rps >= 0.7 else " (< 0.7!)")
            )
            out.print(
                f"[bold]PostgreSQL/SQLite {mode}, one node: {pg.rps / lite.rps:.2f}[/bold]{verdict}"
            )
    for key, r in best.items():
        if r.mode == "ingest":
            line = f"durability {key[1]} x{key[2]}: acked {r.acked}, stored {r.stored}"
            out.print(line + (f" [red]LOST {r.lost}[/red]" if r.lost else " ok"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {f"{m}/{s}/{n}": [vars(r) for r in v] for (m, s, n), v in runs.items()}, indent=2
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
