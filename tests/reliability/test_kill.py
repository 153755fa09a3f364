"""kill -9 reliability (issue part 1/7).

"Send N events concurrently, SIGKILL the server mid-stream, restart it: every event that got
a 2xx is present and ends ``succeeded``, and no action recorded as succeeded runs twice."

The rule's actions call a local counting HTTP server that notes the wall-clock time of every
request it receives, so "runs twice" is checked against what really reached the peer, not
against what nethook says it did. Delivery of actions is at-least-once: a request that
reached the peer before its result was recorded may be sent again after the crash (counted
and printed); a request for a step *after* that step was recorded as succeeded is a bug.

Traffic goes to 127.0.0.1 only; counts and waits are bounded.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import TOKEN, Server, base_config

pytestmark = pytest.mark.reliability

N_EVENTS = 600
IN_FLIGHT = 32
PEER_DELAY = 0.03  # seconds the counting peer takes to answer: actions are in flight
KEEP_SENDING_AFTER_KILL = 0.25  # seconds: some requests fail with connection errors
# Seconds. Peer and nethook read the same wall clock, and a run's finished_at is read after
# the peer's answer arrived. A re-run after a recorded success can only come from another
# claim of the event (after the restart or a lease expiry: seconds later), so 50 ms of slack
# for scheduling on a loaded 2-core machine hides none.
CLOCK_SLACK = 0.05
SETTLE_TIMEOUT = 60.0
STEPS = {"a": "rel#0", "b": "rel#1"}  # counting-peer step name -> nethook step key


# --------------------------------------------------------------------------- counting peer


class CountingPeer:
    """A threaded HTTP server that records (event id, step, received time) for every POST."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.hits: list[tuple[str, str, float]] = []
        self.bad: list[str] = []
        self.truncated = 0
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nethook's pooled client expects

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                received = time.time()
                if len(raw) < length:  # the sender died mid-request: never fully arrived
                    with peer._lock:
                        peer.truncated += 1
                    return
                try:
                    body = json.loads(raw)
                    hit = (str(body["event"]), str(body["step"]), received)
                except (ValueError, KeyError, TypeError):
                    with peer._lock:
                        peer.bad.append(raw.decode(errors="replace"))
                else:
                    with peer._lock:
                        peer.hits.append(hit)
                time.sleep(peer.delay)
                out = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # nethook opens many connections at once on restart

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a killed nethook resets its connections: expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CountingPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def snapshot(self) -> list[tuple[str, str, float]]:
        with self._lock:
            return list(self.hits)


@pytest.fixture
def peer() -> Any:
    p = CountingPeer(PEER_DELAY).start()
    yield p
    p.stop()


# --------------------------------------------------------------------------- senders


@dataclass
class Sent:
    """What the senders saw: which requests were acknowledged (2xx), with which event id."""

    acked: dict[int, str] = field(default_factory=dict)  # n -> event id
    acked_in_phase: dict[int, int] = field(default_factory=dict)  # n -> 1 | 2
    duplicates: set[int] = field(default_factory=set)  # n answered 200 duplicate
    failed: set[int] = field(default_factory=set)  # n not acknowledged in phase 1
    errors: Counter[str] = field(default_factory=Counter)


def envelope(tag: str, n: int) -> dict[str, Any]:
    # "id" is the delivery id: a request resent after the crash dedupes to the first event.
    return {"event": "rel", "id": f"{tag}-{n}", "data": {"n": n}}


async def send_phase(
    url: str,
    tag: str,
    todo: list[int],
    sent: Sent,
    phase: int,
    stop: asyncio.Event,
    on_ack: Callable[[], None] | None = None,
) -> list[int]:
    """Post ``todo`` with IN_FLIGHT concurrent senders until done or ``stop``; returns unsent."""
    pending = list(reversed(todo))
    headers = {"Content-Type": "application/json", "X-Webhook-Token": TOKEN}
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:

        async def sender() -> None:
            while pending and not stop.is_set():
                n = pending.pop()
                try:
                    r = await client.post("/events", json=envelope(tag, n), headers=headers)
                except httpx.HTTPError as exc:
                    sent.failed.add(n)
                    sent.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.02)  # a client's pause before its next try
                    continue
                if 200 <= r.status_code < 300:
                    body = r.json()
                    sent.acked[n] = body["id"]
                    sent.acked_in_phase[n] = phase
                    sent.failed.discard(n)
                    if body.get("duplicate"):
                        sent.duplicates.add(n)
                    if on_ack is not None:
                        on_ack()
                else:
                    sent.failed.add(n)
                    sent.errors[f"HTTP {r.status_code}"] += 1

        await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return list(reversed(pending))


async def send_and_kill(
    server: Server,
    tag: str,
    todo: list[int],
    sent: Sent,
    kill_after: int,
    mid_action: bool = False,
) -> tuple[list[int], float]:
    """Phase 1: send; SIGKILL the server once ``kill_after`` are acknowledged (and, with
    ``mid_action``, an event is leased); keep sending a moment so some requests fail;
    return the unsent indices and the kill time."""
    stop = asyncio.Event()
    enough = asyncio.Event()

    def on_ack() -> None:
        if len(sent.acked) >= kill_after:
            enough.set()

    senders = asyncio.create_task(send_phase(server.url, tag, todo, sent, 1, stop, on_ack))
    waiter = asyncio.create_task(enough.wait())
    await asyncio.wait({senders, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert enough.is_set(), f"only {len(sent.acked)} acknowledged before the senders ran out"
    # Kill while an event is leased (actions in flight), not in a lull between events: the
    # senders keep going meanwhile.
    for _ in range(2000 if mid_action else 0):  # 10 s at most
        if db_rows(server.db_path, "SELECT 1 FROM events WHERE status = 'running' LIMIT 1"):
            break
        await asyncio.sleep(0.005)
    server.kill()  # SIGKILL, right now, with requests and actions in flight
    killed_at = time.time()
    await asyncio.sleep(KEEP_SENDING_AFTER_KILL)
    stop.set()
    unsent = await senders
    return unsent, killed_at


# --------------------------------------------------------------------------- helpers


def rel_config(server_dir: Path, peer: CountingPeer, **overrides: Any) -> dict[str, Any]:
    def step(name: str) -> dict[str, Any]:
        return {
            "http": {
                "url": f"{peer.url}/{name}",
                "method": "POST",
                "json": {"event": "{{ event.id }}", "step": name},
                "timeout": 5,
            }
        }

    cfg = base_config(server_dir, 0)
    cfg["store"]["lease_seconds"] = 2
    cfg["store"]["poll_interval"] = 0.1
    cfg["security"] = {"rate_limit": {"requests_per_minute": 1_000_000}}
    cfg["logging"] = {"level": "WARNING"}
    cfg["dispatcher"].update({"concurrency": 16, "action_timeout": 10})
    cfg["rules"] = [{"name": "rel", "on": {"type": "rel"}, "do": [step("a"), step("b")]}]
    cfg.update(overrides)
    return cfg


def db_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the tests


@pytest.mark.timeout(150)
def test_kill9_mid_stream_then_restart(
    make_server: Callable[..., Server], peer: CountingPeer, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    t0_wall = time.time()
    server = make_server(rel_config(tmp_path, peer))
    tag = f"kill-{time.time_ns()}"
    sent = Sent()

    # Phase 1: send, kill -9 after about a third were acknowledged.
    unsent, killed_at = asyncio.run(
        send_and_kill(server, tag, list(range(N_EVENTS)), sent, N_EVENTS // 3, mid_action=True)
    )
    acked_phase1 = len(sent.acked)
    failed_phase1 = set(sent.failed)
    at_kill = {
        r["status"]: r["n"]
        for r in db_rows(server.db_path, "SELECT status, count(*) AS n FROM events GROUP BY status")
    }
    hits_before_restart = len(peer.snapshot())

    # Phase 2: restart the same server (same config, same database); resend the requests
    # that were not acknowledged (same delivery ids) and send the rest.
    server.start()
    todo = sorted(failed_phase1 | set(unsent))
    left = asyncio.run(send_phase(server.url, tag, todo, sent, 2, asyncio.Event()))
    assert not left
    acked_phase2 = sum(1 for p in sent.acked_in_phase.values() if p == 2)
    try:
        server.wait_settled(SETTLE_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"events still pending after {SETTLE_TIMEOUT}s:\n{server.log()[-4000:]}")
    settled = time.monotonic() - t0
    time.sleep(0.2)  # let any stray late request reach the peer before we look
    hits = peer.snapshot()

    events = {r["id"]: r for r in server.db_rows("SELECT * FROM events")}
    runs = server.db_rows("SELECT * FROM action_runs ORDER BY id")
    by_status = Counter(r["status"] for r in events.values())
    retried = [eid for eid, r in events.items() if r["attempts"] >= 2]

    # Every request was acknowledged in the end (phase 2 ran against a healthy server).
    assert sorted(sent.acked) == list(range(N_EVENTS)), sent.errors
    assert not peer.bad, peer.bad[:3]

    # 1. Every acknowledged event is stored and ends succeeded (each delivery id once).
    missing = {n: eid for n, eid in sent.acked.items() if eid not in events}
    assert not missing, f"acknowledged but not stored: {list(missing.items())[:10]}"
    not_ok = {eid: events[eid]["status"] for eid in sent.acked.values()}
    not_ok = {eid: st for eid, st in not_ok.items() if st != "succeeded"}
    assert not not_ok, f"acknowledged events not succeeded: {list(not_ok.items())[:10]}"
    assert len(events) == N_EVENTS, f"{len(events)} events stored for {N_EVENTS} deliveries"
    for eid, row in events.items():
        n = json.loads(row["data"])["n"]
        assert sent.acked[n] == eid, f"delivery {n} stored as {eid}, acknowledged {sent.acked[n]}"

    # 2. At most one succeeded run per (event, step), from the data (a unique index too).
    succeeded: dict[tuple[str, str], list[sqlite3.Row]] = defaultdict(list)
    for r in runs:
        if r["status"] == "succeeded":
            succeeded[(r["event_id"], r["step"])].append(r)
    twice = {k: len(v) for k, v in succeeded.items() if len(v) > 1}
    assert not twice, f"steps recorded as succeeded more than once: {list(twice.items())[:10]}"
    for eid in events:
        for key in STEPS.values():
            assert (eid, key) in succeeded, f"{eid} {key}: no succeeded run"

    # 3. No action runs again after it was recorded as succeeded: the peer received nothing
    #    for (event, step) after that run's finished_at. Earlier extra requests are the
    #    at-least-once re-runs of actions that ran but were not recorded before the crash.
    peer_hits: dict[tuple[str, str], list[float]] = defaultdict(list)
    for eid, name, at in hits:
        assert eid in events, f"peer called for unknown event {eid}"
        peer_hits[(eid, STEPS[name])].append(at)
    after_record: list[str] = []
    rerun_before_record = 0
    for key, rows in succeeded.items():
        finished = rows[0]["finished_at"]
        times = sorted(peer_hits.get(key, []))
        assert times and times[0] <= finished + CLOCK_SLACK, f"{key}: succeeded, never called"
        late = [t for t in times if t > finished + CLOCK_SLACK]
        if late:
            after_record.append(
                f"{key}: recorded succeeded at {finished:.6f}, called again at "
                + ", ".join(f"{t:.6f} (+{(t - finished) * 1000:.1f} ms)" for t in late)
            )
        rerun_before_record += len(times) - len(late) - 1
    assert not after_record, "actions ran again after being recorded as succeeded:\n" + (
        "\n".join(after_record[:20])
    )

    # 4. The kill really landed mid-stream.
    assert acked_phase1 > 0 and acked_phase2 > 0, (acked_phase1, acked_phase2)
    assert retried, f"no event was re-claimed after the kill (status at kill: {at_kill})"

    calls_per_step = Counter(len(v) for v in peer_hits.values())
    run_errors = Counter(r["error"] for r in runs if r["status"] != "succeeded")
    print(
        f"\nkill -9 mid-stream: {N_EVENTS} deliveries, acked before kill {acked_phase1}, "
        f"not acked in phase 1 {len(failed_phase1)} ({dict(sent.errors)}), "
        f"unsent at kill {len(unsent)}, acked after restart {acked_phase2} "
        f"(of which duplicates of a pre-kill store {len(sent.duplicates)})\n"
        f"  db at kill: {at_kill}; peer calls before restart: {hits_before_restart}\n"
        f"  stored {len(events)} {dict(by_status)}; attempts>=2: {len(retried)}; "
        f"action runs {len(runs)} ({dict(Counter(r['status'] for r in runs))}; errors {dict(run_errors)})\n"
        f"  peer calls {len(hits)}; calls per (event, step): {dict(sorted(calls_per_step.items()))}; "
        f"re-run after crash before record: {rerun_before_record}; "
        f"settled after {settled:.1f}s (kill at +{killed_at - t0_wall:.1f}s)"
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("commit_delay_ms", [0, 5])
def test_kill9_while_ingesting_keeps_every_acknowledged_event(
    make_server: Callable[..., Server], tmp_path: Path, commit_delay_ms: float
) -> None:
    """Ingress only (no workers): a 202 is given after the commit, so it survives kill -9."""
    cfg = base_config(tmp_path, 0)
    cfg["store"]["commit_delay_ms"] = commit_delay_ms
    cfg["security"] = {"rate_limit": {"requests_per_minute": 1_000_000}}
    cfg["logging"] = {"level": "WARNING"}
    server = make_server(cfg, start=False)
    server.start(extra_args=["--no-workers"])
    tag = f"ingest-{time.time_ns()}"
    sent = Sent()
    total = 400

    unsent, _ = asyncio.run(send_and_kill(server, tag, list(range(total)), sent, total // 2))
    assert sent.acked, "nothing acknowledged before the kill"
    assert sent.failed or unsent, "the kill came after every request was answered"

    stored = {r["id"]: r for r in db_rows(server.db_path, "SELECT id, status, data FROM events")}
    missing = [(n, eid) for n, eid in sorted(sent.acked.items()) if eid not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost by kill -9: {missing[:10]}"
    for n, eid in sent.acked.items():
        assert json.loads(stored[eid]["data"]) == {"n": n}
        assert stored[eid]["status"] == "queued"
    assert db_rows(server.db_path, "PRAGMA integrity_check")[0][0] == "ok"

    # The database opens again after the crash, and still holds them.
    server.start(extra_args=["--no-workers"])
    server.stop()
    after = {r["id"] for r in server.db_rows("SELECT id FROM events")}
    assert set(sent.acked.values()) <= after
    print(
        f"\nkill -9 while ingesting (commit_delay_ms={commit_delay_ms}): acked {len(sent.acked)}, "
        f"not acked {len(sent.failed)} ({dict(sent.errors)}), unsent {len(unsent)}, "
        f"stored {len(stored)} (stored but not acked {len(stored) - len(sent.acked)})"
    )
