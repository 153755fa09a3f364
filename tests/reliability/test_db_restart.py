"""The database goes away mid-run and comes back (issue part 6/7).

A ``nethook serve`` (ingress + workers) on PostgreSQL takes a steady stream of deliveries;
the database is stopped with ``pg_ctl stop -m immediate`` (no checkpoint: what a crash or a
power cut leaves, recovered from the WAL at start) and started again 3 s later. While it is
down, ingest answers 503 with ``Retry-After`` and never a 2xx; once it is back, ingest
recovers by itself (no restart of nethook), every acknowledged event is in the database,
and every event ends ``succeeded``.

The database is a private PostgreSQL instance (``initdb`` into a temporary folder, its own
port) so that stopping it cannot disturb other tests using the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import TOKEN, Server, base_config, free_port, require_service

pytestmark = pytest.mark.reliability

DOWN_FOR = 3.0
RECOVER_WITHIN = 15.0
SENDERS = 4


class PrivatePostgres:
    """A throw-away PostgreSQL server in a temporary folder (trust auth, loopback only)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = bins[-1] if bins else shutil.which("initdb")
        if initdb is None:
            require_service("PostgreSQL server binaries", "initdb not found")
        self.bin = Path(str(initdb)).parent
        self.root = Path(tempfile.mkdtemp(prefix="nethook-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                require_service("PostgreSQL", "running as root and there is no postgres user")
            assert self.user is not None
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user.pw_name, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])}: {proc.stdout}\n{proc.stderr}\n{self.log()}")

    def init(self) -> PrivatePostgres:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=50"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def cleanup(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        require_service("PostgreSQL", f"psycopg is not installed: {exc}")
    pg = PrivatePostgres()
    try:
        pg.init().start()
        yield pg
    finally:
        pg.cleanup()


@dataclass
class Log:
    """Every answer: (delivery n, status, Retry-After, event id, monotonic time)."""

    answers: list[tuple[int, int, str | None, str | None, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def stream(url: str, tag: str, log: Log, stop: asyncio.Event, first: int) -> None:
    """SENDERS concurrent senders posting new deliveries until ``stop``."""
    counter = iter(range(first, 1_000_000))
    headers = {"Content-Type": "application/json", "X-Webhook-Token": TOKEN}
    async with httpx.AsyncClient(base_url=url, timeout=15.0) as client:

        async def sender() -> None:
            while not stop.is_set():
                n = next(counter)
                body = {"event": "dbr", "id": f"{tag}-{n}", "data": {"n": n}}
                try:
                    r = await client.post("/events", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    log.errors[type(exc).__name__] += 1
                    continue
                rid = r.json().get("id") if r.status_code < 300 else None
                log.answers.append(
                    (n, r.status_code, r.headers.get("retry-after"), rid, time.monotonic())
                )
                await asyncio.sleep(0.01)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))


@pytest.mark.timeout(150)
def test_database_restart_mid_run(
    private_pg: PrivatePostgres, make_server: Callable[..., Server], tmp_path: Path
) -> None:
    import psycopg

    cfg = base_config(tmp_path, 0)
    cfg["store"] = {
        "url": private_pg.url,
        "data_dir": str(tmp_path / "data"),
        "lease_seconds": 2,
        "poll_interval": 0.2,
        "pool_size": 4,
    }
    cfg["security"] = {"rate_limit": {"enabled": False}}
    cfg["logging"] = {"level": "WARNING"}
    cfg["rules"] = [{"name": "dbr", "on": {"type": "dbr"}, "do": [{"log": {"message": "x"}}]}]
    server = make_server(cfg)
    tag = f"dbr-{time.time_ns()}"
    log = Log()
    marks: dict[str, float] = {}
    health_down: list[int] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        senders = asyncio.create_task(stream(server.url, tag, log, stop, 0))
        await asyncio.sleep(1.0)
        marks["stop"] = time.monotonic()
        await asyncio.to_thread(private_pg.stop, "immediate")
        marks["stopped"] = time.monotonic()
        await asyncio.sleep(DOWN_FOR / 2)
        async with httpx.AsyncClient(timeout=15) as c:
            health_down.append((await c.get(f"{server.url}/health")).status_code)
        await asyncio.sleep(DOWN_FOR / 2)
        marks["start"] = time.monotonic()
        await asyncio.to_thread(private_pg.start)
        marks["started"] = time.monotonic()
        deadline = marks["started"] + RECOVER_WITHIN
        while time.monotonic() < deadline:  # until ingest has answered 2xx for a second
            ok = [t for _, s, _, _, t in log.answers if s < 300 and t > marks["started"]]
            if ok and time.monotonic() - ok[0] > 1.0:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await senders

    asyncio.run(scenario())

    answers = log.answers
    statuses = Counter(s for _, s, _, _, _ in answers)
    assert set(statuses) <= {202, 503}, statuses
    assert not log.errors, f"connection errors (the server must stay up): {log.errors}"
    # While the database was down (stopped .. started): no 2xx at all.
    during = [a for a in answers if marks["stopped"] < a[4] < marks["start"]]
    assert during and all(s == 503 for _, s, _, _, _ in during), Counter(a[1] for a in during)
    assert health_down == [503]
    unavailable = [a for a in answers if a[1] == 503]
    assert all(ra is not None and int(ra) >= 1 for _, _, ra, _, _ in unavailable)
    # It recovered by itself.
    after = [a for a in answers if a[4] > marks["started"] and a[1] == 202]
    assert after, (
        f"no 2xx within {RECOVER_WITHIN}s of the database being back:\n{server.log()[-3000:]}"
    )
    recovered_in = after[0][4] - marks["started"]
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200

    # The refused deliveries, sent again, are accepted (or found: a 503 can hide a commit
    # whose answer was lost with the connection; the delivery id dedupes it).
    headers = {"Content-Type": "application/json", "X-Webhook-Token": TOKEN}
    resent: Counter[int] = Counter()
    acked = {n: rid for n, s, _, rid, _ in answers if s == 202}
    with httpx.Client(base_url=server.url, timeout=15) as c:
        for n, *_ in unavailable:
            r = c.post(
                "/events",
                json={"event": "dbr", "id": f"{tag}-{n}", "data": {"n": n}},
                headers=headers,
            )
            assert r.status_code in (200, 202), r.text
            resent[r.status_code] += 1
            acked[n] = r.json()["id"]

    # Every acknowledged event is in the database (none lost by the crash), once, and all
    # of them end succeeded: the workers recovered too.
    deadline = time.monotonic() + 30
    with psycopg.connect(private_pg.url, autocommit=True) as db:
        while True:
            rows = dict(db.execute("SELECT id, status FROM events").fetchall())
            if all(rows.get(eid) == "succeeded" for eid in acked.values()):
                break
            assert time.monotonic() < deadline, Counter(rows.get(e) for e in acked.values())
            time.sleep(0.2)
    assert len(rows) == len(acked), (len(rows), len(acked))
    print(
        f"\ndatabase restart: {len(answers)} answers {dict(statuses)}; down "
        f"{marks['start'] - marks['stopped']:.1f}s (stop took {marks['stopped'] - marks['stop']:.1f}s, "
        f"start {marks['started'] - marks['start']:.1f}s); first 2xx {recovered_in:.2f}s after the "
        f"database was back; 503s resent: {dict(resent)}; stored {len(rows)}, all succeeded"
    )
