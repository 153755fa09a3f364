"""Several nodes on one PostgreSQL database, and SIGKILL in the middle (issue part 6/7).

Two ``nethook serve`` (ingress + in-process workers) and two ``nethook worker`` processes
share one fresh database. 5,000 events go to both servers; once a third are acknowledged,
one worker and one server are killed with SIGKILL. Senders that lose their server resend to
the other one with the same delivery id. Then:

* every acknowledged event is stored once and ends ``succeeded`` (nothing stuck: the dead
  processes' leases expire and the survivors re-claim them);
* no step is recorded as succeeded twice, and the counting peer received no call for a step
  after that step was recorded as succeeded (at-least-once means "again before the record",
  never "again after it");
* it all takes bounded time.

The rule's actions POST to a counting peer: a small ASGI app under uvicorn in a process of
its own (in this process, its threads would fight the senders for the GIL), which notes
the wall-clock time of every request and hands the list over at the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import (
    NETHOOK,
    TOKEN,
    ProcessHandle,
    Server,
    base_config,
    free_port,
    require_service,
    wait_port,
)

pytestmark = pytest.mark.reliability

N_EVENTS = 5000
IN_FLIGHT = 32
KILL_AT = N_EVENTS // 3
PEER_DELAY = 0.005
LEASE = 3.0
SETTLE_TIMEOUT = 60.0
# Peer and nethook read the same wall clock, but a loaded VM's clock can be stepped by
# ~0.1 s between two readings. The bug this guards against (a re-claimed event running a
# recorded step again) lands a whole lease (LEASE seconds) later, far outside the slack.
CLOCK_SLACK = 1.0
STEPS = {"a": "cl#0", "b": "cl#1"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        import pgtools
    except ImportError as exc:
        require_service("PostgreSQL", f"psycopg is not installed: {exc}")
        raise
    why = pgtools.unavailable()
    if why:
        require_service("PostgreSQL", why)
    with pgtools.fresh_database() as url:
        yield url


PEER_APP = """
import asyncio, json, time

HITS = []
DELAY = float(__import__("os").environ.get("PEER_DELAY", "0"))


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    if scope["method"] == "GET":  # the test collects what arrived
        out = json.dumps(HITS).encode()
    else:
        at = time.time()
        data = json.loads(body)
        HITS.append([str(data["event"]), str(data["step"]), at])
        await asyncio.sleep(DELAY)
        out = b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
"""


class CountingPeer:
    """The counting peer, in a subprocess: ``url``, ``snapshot()`` of (event, step, time)."""

    def __init__(self, workdir: Path, delay: float) -> None:
        (workdir / "peer_app.py").write_text(PEER_APP)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "peer_app:app",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "1024",
            ],
            cwd=workdir,
            env={**os.environ, "PEER_DELAY": str(delay)},
        )
        wait_port("127.0.0.1", self.port)

    def snapshot(self) -> list[tuple[str, str, float]]:
        hits = httpx.get(self.url, timeout=30).json()
        return [(str(e), str(s), float(t)) for e, s, t in hits]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[CountingPeer]:
    p = CountingPeer(tmp_path, PEER_DELAY)
    yield p
    p.stop()


@dataclass
class Worker(ProcessHandle):
    """A ``nethook worker`` subprocess."""

    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            [*NETHOOK, "worker", "--config", str(self.config_path)],
            cwd=self.config_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if "running" in self.log():
                return
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready:\n{self.log()}")


def cluster_config(workdir: Path, url: str, peer: CountingPeer) -> dict[str, Any]:
    def step(name: str) -> dict[str, Any]:
        return {
            "http": {
                "url": f"{peer.url}/{name}",
                "method": "POST",
                "json": {"event": "{{ event.id }}", "step": name},
                "timeout": 5,
            }
        }

    cfg = base_config(workdir, 0)
    cfg["store"] = {
        "url": url,
        "data_dir": str(workdir / "data"),
        "lease_seconds": LEASE,
        "poll_interval": 0.5,  # the fallback; LISTEN/NOTIFY wakes workers at once
        "pool_size": 8,
    }
    cfg["security"] = {"rate_limit": {"enabled": False}}
    cfg["logging"] = {"level": "WARNING"}
    cfg["dispatcher"] = {
        "concurrency": 16,
        "action_timeout": 10,
        "backoff_base": 0.05,
        "backoff_max": 0.5,
    }
    cfg["rules"] = [{"name": "cl", "on": {"type": "cl"}, "do": [step("a"), step("b")]}]
    return cfg


@dataclass
class Sent:
    acked: dict[int, str] = field(default_factory=dict)
    duplicates: set[int] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    rerouted: int = 0


async def send_all(
    servers: list[Server], tag: str, sent: Sent, on_kill: Callable[[], list[int] | None]
) -> float:
    """Send every event; a request that fails goes to the other server (same delivery id).
    ``on_kill`` is tried after every acknowledgement from KILL_AT on, until it returns the
    indices of the servers it killed (None: not yet). Returns the kill time."""
    pending = list(range(N_EVENTS - 1, -1, -1))
    down: set[int] = set()
    killed_at = 0.0
    headers = {"Content-Type": "application/json", "X-Webhook-Token": TOKEN}
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    clients = [httpx.AsyncClient(base_url=s.url, limits=limits, timeout=10.0) for s in servers]

    async def sender() -> None:
        nonlocal killed_at
        while pending:
            n = pending.pop()
            target = n % 2
            for attempt in range(50):
                if target in down:
                    target = 1 - target
                body = {"event": "cl", "id": f"{tag}-{n}", "data": {"n": n}}
                try:
                    r = await clients[target].post("/events", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    sent.errors[type(exc).__name__] += 1
                    r = None
                if r is not None and 200 <= r.status_code < 300:
                    sent.acked[n] = r.json()["id"]
                    if r.json().get("duplicate"):
                        sent.duplicates.add(n)
                    break
                if r is not None:
                    sent.errors[f"HTTP {r.status_code}"] += 1
                sent.rerouted += 1
                target = 1 - target
                await asyncio.sleep(0.01 * (attempt + 1))
            else:
                raise AssertionError(f"event {n} was never acknowledged: {sent.errors}")
            if not killed_at and len(sent.acked) >= KILL_AT:
                dead = on_kill()
                if dead is not None:
                    killed_at = time.time()
                    down.update(dead)

    try:
        await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    finally:
        for c in clients:
            await c.aclose()
    return killed_at


@pytest.mark.timeout(180)
def test_two_servers_two_workers_sigkill_mid_run(
    make_server: Callable[..., Server], peer: CountingPeer, pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    t0 = time.monotonic()
    t0_wall = time.time()
    servers = []
    for _ in range(2):
        srv = make_server(cluster_config(tmp_path, pg_url, peer), start=False)
        srv.start(wait=False)
        servers.append(srv)
    workers = []
    for i in range(2):
        path = tmp_path / f"worker-{i}.yml"
        path.write_text(yaml.safe_dump(cluster_config(tmp_path, pg_url, peer)))
        workers.append(Worker(path, tmp_path / f"worker-{i}.log").start())
    try:
        for proc in (*servers, *workers):
            proc.wait_ready()
        started = time.monotonic()

        doomed = {str(p.proc.pid) for p in (workers[0], servers[0]) if p.proc is not None}
        leases = psycopg.connect(pg_url, autocommit=True)

        def kill() -> list[int] | None:
            # Kill only while one of the two holds a lease, so that the kill lands mid-run
            # (with four dispatchers keeping up, a blind kill could find them idle).
            owners = leases.execute(
                "SELECT lease_owner FROM events WHERE status = 'running'"
            ).fetchall()
            if not any(o and o.split(":")[1] in doomed for (o,) in owners):
                return None
            workers[0].kill()
            servers[0].kill()
            return [0]

        tag = f"cl-{time.time_ns()}"
        sent = Sent()
        try:
            killed_at = asyncio.run(send_all(servers, tag, sent, kill))
        finally:
            leases.close()
        assert killed_at, "the processes to kill never held a lease while events were sent"
        ingest_s = time.monotonic() - started

        deadline = time.monotonic() + SETTLE_TIMEOUT
        with psycopg.connect(pg_url, autocommit=True) as db:
            while True:
                live = db.execute(
                    "SELECT count(*) FROM events WHERE status IN ('queued', 'running')"
                ).fetchone()
                assert live is not None
                if live[0] == 0:
                    break
                if time.monotonic() > deadline:
                    logs = "\n".join(s.log()[-2000:] for s in (*servers, *workers))
                    pytest.fail(f"{live[0]} events still pending after {SETTLE_TIMEOUT}s\n{logs}")
                time.sleep(0.2)
            settled = time.monotonic() - started
            time.sleep(0.2)  # a stray late request reaches the peer before we look
            events = {
                r[0]: (r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT id, status, attempts, data->>'n' FROM events"
                ).fetchall()
            }
            ns = {eid: int(row[2]) for eid, row in events.items()}
            runs = db.execute(
                "SELECT event_id, step, status, finished_at FROM action_runs ORDER BY id"
            ).fetchall()
    finally:
        for proc in (*servers, *workers):
            proc.stop()
    hits = peer.snapshot()

    # 1. Every delivery acknowledged once, stored once, succeeded.
    assert sorted(sent.acked) == list(range(N_EVENTS))
    missing = [eid for eid in sent.acked.values() if eid not in events]
    assert not missing, f"acknowledged but not stored: {missing[:10]}"
    assert len(events) == N_EVENTS, f"{len(events)} events stored for {N_EVENTS} deliveries"
    for n, eid in sent.acked.items():
        assert ns[eid] == n, f"delivery {n} acknowledged as {eid}, which holds {ns[eid]}"
    not_ok = {eid: st for eid, (st, _, _) in events.items() if st != "succeeded"}
    assert not not_ok, f"events not succeeded: {list(not_ok.items())[:10]}"

    # 2. At most one succeeded run per (event, step), and every step succeeded.
    succeeded: dict[tuple[str, str], list[float]] = defaultdict(list)
    for eid, step, status, finished in runs:
        if status == "succeeded":
            succeeded[(eid, step)].append(finished)
    twice = {k: v for k, v in succeeded.items() if len(v) > 1}
    assert not twice, f"steps recorded as succeeded twice: {list(twice)[:10]}"
    assert len(succeeded) == 2 * N_EVENTS

    # 3. The peer saw no call for a step after that step was recorded as succeeded.
    calls: dict[tuple[str, str], list[float]] = defaultdict(list)
    for eid, name, at in hits:
        calls[(eid, STEPS[name])].append(at)
    late = []
    for key, (finished,) in succeeded.items():
        times = sorted(calls.get(key, []))
        assert times and times[0] <= finished + CLOCK_SLACK, f"{key}: succeeded, never called"
        late += [(key, t - finished) for t in times if t > finished + CLOCK_SLACK]
    assert not late, f"called again after recorded succeeded: {late[:10]}"

    # 4. The kill landed mid-run: the dead processes' leases were re-claimed.
    reclaimed = sum(1 for _, attempts, _ in events.values() if attempts >= 2)
    assert reclaimed > 0, "no event was re-claimed after the kill"
    total = time.monotonic() - t0
    assert total < 150, f"took {total:.0f}s"  # ~40 s on an idle 2-core machine
    reruns = sum(len(v) - 1 for v in calls.values())
    print(
        f"\ncluster (2 serve + 2 worker, PostgreSQL): {N_EVENTS} events, "
        f"killed 1 server + 1 worker at {KILL_AT} acked (+{killed_at - t0_wall:.1f}s); "
        f"rerouted sends {sent.rerouted} ({dict(sent.errors)}), duplicates {len(sent.duplicates)}; "
        f"ingest {ingest_s:.1f}s, settled {settled:.1f}s after start, whole test {total:.1f}s; "
        f"re-claimed {reclaimed}, at-least-once re-runs before record {reruns}, "
        f"attempts {dict(Counter(a for _, a, _ in events.values()))}"
    )
