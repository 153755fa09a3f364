"""Device benchmark: event-to-output latency with warm SSH sessions, against named anchors.

    .venv/bin/python bench/devices.py [--events 20] [--cold 5] [--devices 20] [--json OUT]

Simulated devices are fakenos Cisco IOS SSH servers on loopback (the test suite's lab,
``tests/integration/devices_lab.py``), running in this process; nethook runs as a real
``nethook serve`` child with an inventory of them. Every command is
``show ip interface brief``. Measured in the same run:

- **floor**: a direct Netmiko ``send_command`` on a session opened beforehand (the least
  any tool can spend per command on these devices);
- **nethook warm**: ``POST /events?wait=`` for a ``device.command`` rule until the answer
  carries the output (ingest, fsync, dispatch, pooled session, stored result). Target:
  <= 1.2x the floor;
- **cold connect**: what a lab script does per event: connect, send, disconnect;
- **fan-out**: one event to a group of ``--devices`` devices (first with logins, then
  warm) against the same work done one device after another (a script looping over the
  devices, and one warm nethook event per device).

fakenos echoes input a byte at a time with a 10 ms pause, so one command costs ~0.3 s on
every path; the ratios, not the absolute numbers, are what carries to real devices.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests"))  # ports.py

from devices_lab import PASSWORD, USERNAME, Lab, free_port  # noqa: E402

COMMAND = "show ip interface brief"
TOKEN = "bench-token-0123456789abcdef"
console = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


@dataclass
class Sample:
    name: str
    seconds: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        s = sorted(self.seconds)
        return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    result = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        result.append(time.perf_counter() - t)
    return result


class Nethook:
    """A ``nethook serve`` child with the lab inventory and two device rules."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inventory = lab.inventory()
        inv_path = workdir / "inventory.yml"
        inv_path.write_text(yaml.safe_dump(inventory))
        cfg = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "store": {"url": f"sqlite:///{workdir / 'nethook.db'}", "data_dir": str(workdir)},
            "logging": {"level": "WARNING"},
            "security": {"rate_limit": {"enabled": False}},
            "sources": {"default": {"auth": {"type": "token", "secret": TOKEN}}},
            "inventory": str(inv_path),
            "devices": {"fanout": 32, "max_sessions": 64, "per_device": 1},
            "rules": [
                {
                    "name": "cmd",
                    "on": {"type": "cmd"},
                    "do": [
                        {
                            "device.command": {
                                "device": "{{ event.data.device }}",
                                "command": COMMAND,
                            }
                        }
                    ],
                },
                {
                    "name": "fanout",
                    "on": {"type": "fanout"},
                    "do": [{"device.command": {"group": "lab", "command": COMMAND}}],
                },
            ],
        }
        path = workdir / "nethook.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nethook.cli", "serve", "--config", str(path)],
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LAB_PASSWORD": PASSWORD},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((workdir / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError("nethook did not start")
        self.client = httpx.Client(headers={"X-Webhook-Token": TOKEN}, timeout=120)

    def event(self, type_: str, **data: Any) -> dict[str, Any]:
        r = self.client.post(f"{self.url}/events?wait=110", json={"event": type_, "data": data})
        body = r.json()
        if r.status_code != 200 or body.get("status") != "succeeded":
            raise RuntimeError(f"event failed: {r.status_code} {body}")
        return dict(body)

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def connect(lab: Lab, name: str) -> Any:
    from netmiko import ConnectHandler

    conn = ConnectHandler(
        device_type="cisco_ios",
        host="127.0.0.1",
        port=lab[name].port,
        username=USERNAME,
        password=PASSWORD,
    )
    conn.enable()  # as nethook does with `enable: true`
    return conn


def run(args: argparse.Namespace) -> list[Sample]:
    names = [f"d{i:02d}" for i in range(1, args.devices + 1)]
    console.print(f"starting {len(names)} fakenos devices ...")
    lab = Lab(names).start()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="nethook-bench-dev-") as tmp:
        nethook = Nethook(lab, Path(tmp))
        try:
            first = names[0]
            console.print("floor: direct Netmiko send_command on an open session")
            conn = connect(lab, first)
            conn.send_command(COMMAND)
            samples.append(Sample("floor", timed(lambda: conn.send_command(COMMAND), args.events)))
            conn.disconnect()

            console.print("nethook, warm pool")
            nethook.event("cmd", device=first)  # opens the session
            samples.append(
                Sample(
                    "nethook warm",
                    timed(lambda: nethook.event("cmd", device=first), args.events),
                    "POST ?wait= to stored output",
                )
            )

            console.print("cold connect per event")

            def cold() -> None:
                c = connect(lab, names[1])
                c.send_command(COMMAND)
                c.disconnect()

            samples.append(Sample("cold connect", timed(cold, args.cold), "connect+send+close"))

            console.print(f"fan-out to {len(names)} devices")
            t = time.perf_counter()
            body = nethook.event("fanout")
            fan_cold = time.perf_counter() - t
            assert body["results"]["fanout"]["0"]["count"] == len(names)
            samples.append(Sample("fan-out, first (logins)", [fan_cold], f"{len(names)} devices"))
            samples.append(
                Sample(
                    "fan-out, warm",
                    timed(lambda: nethook.event("fanout"), max(1, args.cold)),
                    f"{len(names)} devices",
                )
            )

            def script() -> None:
                for n in names:
                    c = connect(lab, n)
                    c.send_command(COMMAND)
                    c.disconnect()

            console.print("sequential script over the devices")
            samples.append(Sample("sequential script", timed(script, 1), "connect+send+close each"))

            def sequential_events() -> None:
                for n in names:
                    nethook.event("cmd", device=n)

            sequential_events()  # every device's session warm
            samples.append(
                Sample(
                    "sequential warm events", timed(sequential_events, 1), "one event per device"
                )
            )
        finally:
            nethook.stop()
            lab.stop()
    return samples


def report(samples: list[Sample], devices: int) -> dict[str, float]:
    by = {s.name: s for s in samples}
    floor = by["floor"].median
    table = Table(title="device actions: event to output (medians)")
    for col in ("scenario", "n", "median ms", "p90 ms", "vs floor", "note"):
        table.add_column(col, justify="left" if col in ("scenario", "note") else "right")
    for s in samples:
        table.add_row(
            s.name,
            str(len(s.seconds)),
            f"{s.median * 1000:.0f}",
            f"{s.p90 * 1000:.0f}",
            f"{s.median / floor:.2f}x",
            s.note,
        )
    out.print(table)
    ratios = {
        "nethook_warm/floor": by["nethook warm"].median / floor,
        "cold/nethook_warm": by["cold connect"].median / by["nethook warm"].median,
        "script/fanout_first": by["sequential script"].median
        / by["fan-out, first (logins)"].median,
        "sequential_events/fanout_warm": by["sequential warm events"].median
        / by["fan-out, warm"].median,
    }
    ratio_table = Table(title="ratios")
    ratio_table.add_column("ratio")
    ratio_table.add_column("value", justify="right")
    ratio_table.add_column("meaning")
    meaning = {
        "nethook_warm/floor": "overhead of nethook over a bare open session (target <= 1.20)",
        "cold/nethook_warm": "how much slower a connect per event is",
        "script/fanout_first": f"{devices} devices: sequential script vs one fan-out event",
        "sequential_events/fanout_warm": f"{devices} warm events one by one vs one fan-out",
    }
    for k, v in ratios.items():
        ratio_table.add_row(k, f"{v:.2f}", meaning[k])
    out.print(ratio_table)
    verdict = ratios["nethook_warm/floor"] <= 1.2
    out.print(f"warm-pool target (<= 1.2x floor): {'met' if verdict else 'NOT met'}")
    return ratios


def main() -> int:
    # The simulated devices log every dropped probe and closed channel with a traceback.
    for noisy in ("paramiko", "fakenos"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20, help="timed events per warm path")
    parser.add_argument("--cold", type=int, default=5, help="timed cold connects")
    parser.add_argument("--devices", type=int, default=20, help="devices for the fan-out")
    parser.add_argument("--json", type=Path, help="write raw samples and ratios here")
    args = parser.parse_args()
    samples = run(args)
    ratios = report(samples, args.devices)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"samples": {s.name: s.seconds for s in samples}, "ratios": ratios}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
