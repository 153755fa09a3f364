"""Syslog over real sockets (issue part 5/7): the system ``logger`` command and raw sends to a
``nethook serve`` subprocess; UDP and TCP (newline and octet-counted), IPv4 and IPv6, the
sender allowlist, every line of the Cisco vector, and a burst of 20,000 datagrams.

One server is shared by the module, one syslog source per concern so counts do not mix:
``devices`` (udp+tcp on 127.0.0.1), ``dual`` (udp+tcp on [::], dual-stack), ``guarded``
(allowlist that excludes loopback) and ``burst``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import VECTORS, Server, base_config, free_port, require_service, wait_port

pytestmark = pytest.mark.integration

LOGGER = shutil.which("logger")
BURST = 20_000


def free_udp_port() -> int:
    # Listeners here bind UDP and TCP on the same number.
    return free_port(udp=True)


class Syslog:
    def __init__(self, server: Server, ports: dict[str, int]) -> None:
        self.server = server
        self.ports = ports

    def events(self, source: str, like: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT data, meta, type FROM events WHERE source = ?"
        params: tuple[Any, ...] = (source,)
        if like is not None:
            sql += " AND CAST(data AS TEXT) LIKE ?"
            params += (f"%{like}%",)
        rows = self.server.db_rows(sql + " ORDER BY seq", params)
        return [
            {**json.loads(r["data"]), "_meta": json.loads(r["meta"]), "_type": r["type"]}
            for r in rows
        ]

    def wait_events(
        self, source: str, like: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(source, like)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{source}: {count} event(s) with {like!r} not stored in {timeout}s")

    def counters(self, source: str) -> dict[str, float]:
        text = httpx.get(f"{self.server.url}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("nethook_syslog_"):
                continue
            for sample in family.samples:
                if sample.labels.get("source") != source or not sample.name.endswith("_total"):
                    continue
                kind = sample.name.removeprefix("nethook_syslog_").removesuffix("_total")
                if kind == "dropped":
                    kind = f"dropped_{sample.labels['reason']}"
                out[kind] = out.get(kind, 0) + sample.value
        return out


@pytest.fixture(scope="module")
def syslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Syslog]:
    workdir = tmp_path_factory.mktemp("syslog")
    port = free_port()
    ports = {name: free_udp_port() for name in ("devices", "dual", "guarded", "burst")}
    cfg = base_config(workdir, port)
    cfg["sources"].update(
        {
            "devices": {
                "type": "syslog",
                "listen": f"udp://127.0.0.1:{ports['devices']}, tcp://127.0.0.1:{ports['devices']}",
            },
            "dual": {
                "type": "syslog",
                "listen": f"udp://[::]:{ports['dual']} tcp://[::]:{ports['dual']}",
            },
            "guarded": {
                "type": "syslog",
                "listen": f"udp://127.0.0.1:{ports['guarded']},tcp://127.0.0.1:{ports['guarded']}",
                "allow": ["192.0.2.0/24", "2001:db8::/32"],
            },
            "burst": {"type": "syslog", "listen": f"udp://127.0.0.1:{ports['burst']}"},
        }
    )
    cfg["rules"] = []
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    server = Server(path, port, workdir).start()
    yield Syslog(server, ports)
    server.stop()
    # Listeners close cleanly and say how much they took in.
    assert "syslog.stopped" in server.log()


def _logger(*args: str) -> None:
    if LOGGER is None:
        pytest.fail("the util-linux 'logger' command is required for the syslog tests")
    subprocess.run([LOGGER, *args], check=True, timeout=10, capture_output=True)


def _marker() -> str:
    return uuid.uuid4().hex[:10]


# --------------------------------------------------------------------------- logger


@pytest.mark.parametrize(
    "framing",
    [
        ["-d", "--rfc3164"],
        ["-d", "--rfc5424"],
        ["-T", "--rfc3164"],
        ["-T", "--rfc5424"],
        ["-T", "--rfc5424", "--octet-count"],
        ["-T", "--rfc3164", "--octet-count"],
    ],
    ids=["udp-3164", "udp-5424", "tcp-3164", "tcp-5424", "tcp-5424-octet", "tcp-3164-octet"],
)
def test_logger_link_updown(syslog: Syslog, framing: list[str]) -> None:
    """logger sends LINK-3-UPDOWN: an event with host, device, interface and state."""
    mark = _marker()
    port = str(syslog.ports["devices"])
    text = f"%LINK-3-UPDOWN: Interface Gi{mark}, changed state to down"
    _logger("-n", "127.0.0.1", "-P", port, *framing, "-t", "nethook-test", text)
    (event,) = syslog.wait_events("devices", mark)
    assert event["_type"] == "syslog"
    assert event["mnemonic"] == "LINK-3-UPDOWN"
    assert (event["interface"], event["state"]) == (f"Gi{mark}", "down")
    assert event["severity"] == 3 and event["facility"] == "user"
    assert event["host"].split(".")[0] == socket.gethostname().split(".")[0]
    assert event["device"] == event["host"]  # no inventory configured
    assert event["app"] == "nethook-test"
    assert event["format"] == ("rfc5424" if "--rfc5424" in framing else "rfc3164")
    assert event["address"] == "127.0.0.1"
    assert event["_meta"] == {
        "client": "127.0.0.1",
        "transport": "udp" if "-d" in framing else "tcp",
    }


def test_logger_ipv6_and_dual_stack(syslog: Syslog) -> None:
    port = str(syslog.ports["dual"])
    m6, m4, t6 = _marker(), _marker(), _marker()
    _logger("-n", "::1", "-P", port, "-d", "--rfc5424", f"%BGP-5-ADJCHANGE: neighbor {m6} Up")
    _logger("-n", "127.0.0.1", "-P", port, "-d", f"%BGP-5-ADJCHANGE: neighbor {m4} Down")
    _logger("-n", "::1", "-P", port, "-T", "--octet-count", f"over tcp6 {t6}")
    (v6,) = syslog.wait_events("dual", m6)
    (v4,) = syslog.wait_events("dual", m4)
    (tcp6,) = syslog.wait_events("dual", t6)
    assert (v6["neighbor"], v6["state"], v6["address"]) == (m6, "up", "::1")
    # An IPv4 sender on the [::] socket is reported as IPv4, not ::ffff:127.0.0.1.
    assert (v4["neighbor"], v4["state"], v4["address"]) == (m4, "down", "127.0.0.1")
    assert tcp6["_meta"] == {"client": "::1", "transport": "tcp"}


# --------------------------------------------------------------------------- raw sends


def _vector_lines() -> list[str]:
    text = (VECTORS / "cisco_syslog.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_every_vector_line_over_udp_and_tcp(syslog: Syslog) -> None:
    """Each Cisco line, raw over UDP, then all of them in one TCP stream mixing framings."""
    lines = _vector_lines()
    port = syslog.ports["devices"]
    mark = _marker()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for line in lines:
            udp.sendto(f"{line} udp{mark}".encode(), ("127.0.0.1", port))
    stream = b""
    for i, line in enumerate(lines):
        frame = f"{line} tcp{mark}".encode()
        # Alternate RFC 6587 octet counting and newline (non-transparent) framing.
        stream += b"%d %s" % (len(frame), frame) if i % 2 else frame + b"\n"
    with socket.create_connection(("127.0.0.1", port)) as tcp:
        # Split mid-frame to exercise reassembly.
        tcp.sendall(stream[:37])
        time.sleep(0.05)
        tcp.sendall(stream[37:])
    for transport in ("udp", "tcp"):
        events = syslog.wait_events("devices", f"{transport}{mark}", count=len(lines))
        assert len(events) == len(lines)
        by_seq = {e["seq"]: e for e in events if e["seq"] is not None}
        assert by_seq[1431]["interface"] == "GigabitEthernet2"
        assert by_seq[88]["user"] == "admin" and by_seq[88]["source"] == "10.0.0.5"
        assert by_seq[89]["neighbor"] == "192.0.2.1"
        assert by_seq[91]["state"] == "down"
        mnemonics = sorted(e["mnemonic"] for e in events)
        assert mnemonics.count("LINK-3-UPDOWN") == 3
        assert {e["_meta"]["transport"] for e in events} == {transport}


def test_unparsable_lines_are_stored_not_dropped(syslog: Syslog) -> None:
    mark = _marker()
    port = syslog.ports["devices"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(f"complete garbage {mark}".encode(), ("127.0.0.1", port))
        udp.sendto(b"\xff\xfe binary " + mark.encode(), ("127.0.0.1", port))
    events = syslog.wait_events("devices", mark, count=2)
    assert {e["format"] for e in events} == {"unparsed"}
    assert events[0]["message"] == f"complete garbage {mark}"
    assert events[0]["raw"] == f"complete garbage {mark}"


def test_allowlist_drops_and_counts(syslog: Syslog) -> None:
    port = syslog.ports["guarded"]
    before = syslog.counters("guarded").get("dropped_forbidden", 0)
    mark = _marker()
    _logger("-n", "127.0.0.1", "-P", str(port), "-d", f"not allowed {mark}")
    with socket.create_connection(("127.0.0.1", port)) as tcp, pytest.raises(OSError):
        # The listener aborts the connection: the send or the read fails.
        for _ in range(50):
            tcp.sendall(f"<13>not allowed either {mark}\n".encode())
            if tcp.recv(1) == b"":
                raise ConnectionResetError
            time.sleep(0.02)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if syslog.counters("guarded").get("dropped_forbidden", 0) >= before + 2:
            break
        time.sleep(0.1)
    counts = syslog.counters("guarded")
    assert counts.get("dropped_forbidden", 0) >= before + 2
    assert counts.get("stored", 0) == 0
    assert syslog.events("guarded") == []


# --------------------------------------------------------------------------- burst


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def _send_burst(port: int, count: int, rate: float | None) -> float:
    """Send ``count`` Cisco lines; ``rate`` per second (paced in steps of 100) or flat out."""
    line = (
        b"<187>%d: r1: *Nov 30 09:12:03.201: %%LINK-3-UPDOWN: Interface Gi%d, changed state to down"
    )
    started = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i in range(count):
            udp.sendto(line % (i, i % 48), ("127.0.0.1", port))
            if rate and i % 100 == 99:
                ahead = started + (i + 1) / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
    return time.perf_counter() - started


def _settle(syslog: Syslog, expected: int, started: float) -> tuple[dict[str, float], float]:
    """Wait until every datagram is accounted for and everything received is stored."""

    def settled() -> bool:
        c = syslog.counters("burst")
        received = c.get("received", 0)
        return received + c.get("dropped_kernel", 0) >= expected and c.get("stored", 0) >= received

    assert _wait_for(settled, 60), syslog.counters("burst")
    return syslog.counters("burst"), time.perf_counter() - started


def test_burst_of_20000_datagrams(syslog: Syslog, capsys: pytest.CaptureFixture[str]) -> None:
    """20,000 datagrams at 10,000/s (the load the listener must absorb): all received and
    stored. Then 20,000 more as fast as one socket sends them: every datagram accounted for
    (received + dropped by the kernel == sent) and everything received stored.
    """
    port = syslog.ports["burst"]
    report = []
    sent = 0
    for label, rate in (("10,000/s", 10_000.0), ("flat out", None)):
        started = time.perf_counter()
        seconds = _send_burst(port, BURST, rate)
        sent += BURST
        counts, elapsed = _settle(syslog, sent, started)
        rows = syslog.server.db_rows("SELECT count(*) FROM events WHERE source = 'burst'")[0][0]
        received, kernel = counts.get("received", 0), counts.get("dropped_kernel", 0)
        report.append(
            f"{label}: sent {BURST} in {seconds:.2f}s ({BURST / seconds:,.0f}/s); totals: "
            f"sent {sent}, received {received:.0f}, stored {counts.get('stored', 0):.0f} "
            f"(rows {rows}), kernel-dropped {kernel:.0f}; settled {elapsed:.2f}s after start"
        )
        assert received + kernel == sent
        assert counts["stored"] == received == rows
        assert set(counts) <= {"received", "stored", "dropped_kernel"}  # nothing dropped by us
        if rate is not None:
            # The specified load is absorbed whole (1% slack for an overloaded CI box).
            assert received >= 0.99 * sent, report
        assert elapsed < 60
    with capsys.disabled():
        print("\nsyslog burst: " + "\n              ".join(report))


def test_a_port_in_use_fails_start_up(syslog: Syslog, make_server: Callable[..., Server]) -> None:
    """A second nethook cannot share a UDP port (no SO_REUSEADDR): it refuses to start."""
    port = syslog.ports["devices"]
    srv = make_server(
        start=False,
        sources={
            "default": {"auth": {"type": "token", "secret": "unused-token-4f0b1e9d27c3a"}},
            "devices": {"type": "syslog", "listen": f"udp://127.0.0.1:{port}"},
        },
    )
    with pytest.raises(RuntimeError, match="exited early"):
        srv.start()
    assert f"sources.devices.listen: cannot listen on udp://127.0.0.1:{port}" in srv.log()


# --------------------------------------------------------------------------- end to end

HAS_DEVICE_ACTIONS = importlib.util.find_spec("nethook.actions.device") is not None
LAB_USER, LAB_PASSWORD = "netops", "lab-password-5e7c"
SHOW_GI2 = """\
GigabitEthernet2 is down, line protocol is down
  Hardware is CSR vNIC, address is 5254.0012.3456 (bia 5254.0012.3456)
  Internet address is 10.1.2.1/24"""
RUNNING_CONFIG = """\
Building configuration...

Current configuration : 120 bytes
!
version 17.9
hostname edge1
!
interface GigabitEthernet2
 ip address 10.1.2.1 255.255.255.0
!
end"""


def _example_rule(name: str) -> dict[str, Any]:
    """A rule exactly as examples/nethook.yml ships it."""
    from nethook.config import load_yaml

    example = load_yaml((Path(__file__).parents[2] / "examples" / "nethook.yml").read_text())
    return next(r for r in example["rules"] if r["name"] == name)


@pytest.fixture
def fakenos_edge1() -> Iterator[int]:
    """One fakenos cisco_ios device that knows `show interfaces GigabitEthernet2`."""
    from fakenos import FakeNOS

    port = free_port()
    prompts = ["{base_prompt}>", "{base_prompt}#"]
    commands = {
        "show interfaces GigabitEthernet2": {"output": SHOW_GI2, "prompt": prompts},
        "show running-config": {"output": RUNNING_CONFIG, "prompt": "{base_prompt}#"},
    }
    net = FakeNOS(
        inventory={
            "hosts": {
                "edge1": {
                    "username": LAB_USER,
                    "password": LAB_PASSWORD,
                    "port": port,
                    "platform": "cisco_ios",
                    "nos": {"plugin": "cisco_ios", "configuration": {"commands": commands}},
                }
            }
        }
    )
    net.start()
    try:
        wait_port("127.0.0.1", port)
        yield port
    finally:
        net.stop()


# The port probe before connecting makes fakenos log a banner error in its thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_logger_link_down_runs_the_interface_down_rule_on_a_fakenos_device(
    make_server: Callable[..., Server], fakenos_edge1: int, tmp_path: Path
) -> None:
    """logger sends LINK-3-UPDOWN -> a syslog event with device (found in the inventory by
    the sender's address), interface and state -> the example's interface-down rule runs
    `show interfaces GigabitEthernet2` and a backup on the fakenos device."""
    if not HAS_DEVICE_ACTIONS:
        require_service("nethook.actions.device", "the device actions of part 4/7 are missing")
    inventory = {
        "defaults": {
            "platform": "cisco_ios",
            "username": LAB_USER,
            "password": "${LAB_PASSWORD}",
            "enable": True,
        },
        "devices": {"edge1": {"host": "127.0.0.1", "port": fakenos_edge1}},
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    syslog_port = free_udp_port()
    srv = make_server(
        start=False,
        sources={
            "default": {"auth": {"type": "token", "secret": "unused-token-4f0b1e9d27c3a"}},
            "devices": {"type": "syslog", "listen": f"udp://127.0.0.1:{syslog_port}"},
        },
        rules=[_example_rule("interface down")],
        inventory=str(tmp_path / "inventory.yml"),
    )
    srv.start(env={"LAB_PASSWORD": LAB_PASSWORD})
    view = Syslog(srv, {"devices": syslog_port})
    text = "%LINK-3-UPDOWN: Interface GigabitEthernet2, changed state to down"
    _logger("-n", "127.0.0.1", "-P", str(syslog_port), "-d", "--rfc3164", text)
    (event,) = view.wait_events("devices", "GigabitEthernet2")
    assert (event["device"], event["interface"], event["state"]) == (
        "edge1",
        "GigabitEthernet2",
        "down",
    )
    srv.wait_settled(timeout=60)
    (row,) = srv.db_rows("SELECT id, status, error FROM events WHERE source = 'devices'")
    runs = srv.db_rows(
        "SELECT action, status, output, error FROM action_runs WHERE event_id = ? ORDER BY id",
        (row["id"],),
    )
    assert row["status"] == "succeeded", (row["error"], [dict(r) for r in runs])
    done = {r["action"]: json.loads(r["output"]) for r in runs if r["status"] == "succeeded"}
    assert {"device.command", "device.backup"} <= set(done)
    assert "GigabitEthernet2 is down" in json.dumps(done["device.command"])
    artifacts = srv.db_rows("SELECT name FROM artifacts WHERE event_id = ?", (row["id"],))
    assert any("running-config" in a["name"] for a in artifacts)
