"""``nethook demo``: a newcomer's first five minutes, with no devices and no internet.

It starts, all on loopback: local stand-ins for the Dad Jokes and Deck of Cards APIs, a
simulated Cisco IOS router (fakenos, an SSH server), and nethook itself with an example
config; then it sends the classic events, an interface-down syslog line and an
Alertmanager alert, waits for their actions and shows what happened and where to look.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from .config import CLASSIC_RULES

DEVICE_USER = "demo"
JOKES = [
    "I'm reading a book about anti-gravity. It's impossible to put down.",
    "Why did the router break up with the switch? It needed more space on its routing table.",
    "I would tell you a UDP joke, but you might not get it.",
]
SUITS = ["SPADES", "HEARTS", "DIAMONDS", "CLUBS"]
VALUES = ["ACE", "2", "3", "4", "5", "6", "7", "8", "9", "10", "JACK", "QUEEN", "KING"]

SHOW_IP_INT_BRIEF = """\
Interface              IP-Address      OK? Method Status                Protocol
GigabitEthernet1       10.0.0.1        YES NVRAM  up                    up
GigabitEthernet2       10.0.12.1       YES NVRAM  down                  down
Loopback0              192.0.2.1       YES manual up                    up"""
SHOW_GI2 = """\
GigabitEthernet2 is down, line protocol is down
  Hardware is CSR vNIC, address is 0050.56bf.1a2b (bia 0050.56bf.1a2b)
  Internet address is 10.0.12.1/30
  MTU 1500 bytes, BW 1000000 Kbit/sec, DLY 10 usec,
  Last input 00:00:03, output 00:00:02, output hang never
  5 minute input rate 0 bits/sec, 0 packets/sec
     1432 input errors, 17 CRC, 0 frame, 0 overrun, 0 ignored"""
RUNNING_CONFIG = """\
Building configuration...

Current configuration : 412 bytes
!
version 17.9
hostname r1
!
interface GigabitEthernet1
 ip address 10.0.0.1 255.255.255.0
!
interface GigabitEthernet2
 ip address 10.0.12.1 255.255.255.252
!
logging host 127.0.0.1 transport udp port 5514
!
end"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


# --------------------------------------------------------------------------- API stand-ins


class _StandIn(BaseHTTPRequestHandler):
    """The two public APIs' real response shapes, served locally (stateful decks)."""

    decks: dict[str, list[dict[str, str]]] = {}
    lock = threading.Lock()

    def log_message(self, *_: Any) -> None:  # quiet: the demo prints its own story
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if path in ("/", "/joke"):
            return self._send(
                200,
                {
                    "id": "demo" + str(random.randint(100, 999)),
                    "joke": random.choice(JOKES),
                    "status": 200,
                },
            )
        parts = [p for p in path.split("/") if p]  # api deck <id> <op>
        if len(parts) == 4 and parts[:2] == ["api", "deck"]:
            return self._deck(parts[2], parts[3], params)
        return self._send(404, {"success": False, "error": "Not found"})

    def _deck(self, deck_id: str, op: str, params: dict[str, str]) -> None:
        with self.lock:
            if deck_id == "new":
                deck_id = secrets.token_hex(6)
                self.decks[deck_id] = self._fresh()
            cards = self.decks.get(deck_id)
            if cards is None:
                return self._send(404, {"success": False, "error": "Deck ID does not exist."})
            if op == "shuffle":
                self.decks[deck_id] = cards = self._fresh()
                return self._send(
                    200,
                    {
                        "success": True,
                        "deck_id": deck_id,
                        "shuffled": True,
                        "remaining": len(cards),
                    },
                )
            if op == "draw":
                count = int(params.get("count", "1") or 1)
                drawn, self.decks[deck_id] = cards[:count], cards[count:]
                body = {
                    "success": len(drawn) == count,
                    "deck_id": deck_id,
                    "cards": drawn,
                    "remaining": len(self.decks[deck_id]),
                }
                if len(drawn) < count:
                    body["error"] = f"Not enough cards remaining to draw {count} additional"
                return self._send(200, body)
        return self._send(404, {"success": False, "error": "Not found"})

    @staticmethod
    def _fresh() -> list[dict[str, str]]:
        cards = [
            {
                "code": (v[0] if v != "10" else "0") + s[0],
                "value": v,
                "suit": s,
                "image": f"https://deckofcardsapi.com/static/img/{v[0]}{s[0]}.png",
            }
            for s in SUITS
            for v in VALUES
        ]
        random.shuffle(cards)
        return cards


def start_stand_ins() -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    threading.Thread(target=server.serve_forever, daemon=True, name="demo-apis").start()
    return server, int(server.server_address[1])


# --------------------------------------------------------------------------- the device


def _quiet_simulator() -> None:
    """fakenos and paramiko log (and raise in threads) for every port probe: not news here."""
    import logging

    for name in ("paramiko", "fakenos"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not None and args.exc_type.__module__.startswith(("paramiko",)):
            return
        if args.exc_type in (EOFError, ConnectionResetError, BrokenPipeError):
            return
        previous(args)

    threading.excepthook = hook


def start_device(port: int, password: str) -> Any:
    """A fakenos Cisco IOS router on ``port`` that knows the commands the demo's rules run."""
    try:
        from fakenos import FakeNOS
    except ImportError as exc:
        raise SystemExit(
            "the demo's simulated router needs fakenos: "
            "pip install 'nethook[devices,demo]' (scripts/run installs it)"
        ) from exc
    _quiet_simulator()
    prompts = ["{base_prompt}>", "{base_prompt}#"]
    commands = {
        "show ip interface brief": {"output": SHOW_IP_INT_BRIEF, "prompt": prompts},
        "show interfaces GigabitEthernet2": {"output": SHOW_GI2, "prompt": prompts},
        "show running-config": {"output": RUNNING_CONFIG, "prompt": prompts},
    }
    net = FakeNOS(
        inventory={
            "hosts": {
                "r1": {
                    "username": DEVICE_USER,
                    "password": password,
                    "port": port,
                    "platform": "cisco_ios",
                    "nos": {"plugin": "cisco_ios", "configuration": {"commands": commands}},
                }
            }
        }
    )
    net.start()
    wait_port(port)
    return net


# --------------------------------------------------------------------------- config


def write_files(
    workdir: Path,
    http_port: int,
    syslog_port: int,
    device_port: int,
    apis_port: int,
    token: str,
    admin: str,
    alert_token: str,
) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = {
        "defaults": {
            "platform": "cisco_ios",
            "username": DEVICE_USER,
            "password": "${NETHOOK_DEMO_DEVICE_PASSWORD}",
        },
        "devices": {
            "r1": {
                "host": "127.0.0.1",
                "port": device_port,
                "description": "simulated IOS router (fakenos)",
                "tags": ["demo"],
                "vars": {"site": "lab"},
            }
        },
    }
    (workdir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    base = f"http://127.0.0.1:{apis_port}"
    token_auth = {"type": "token", "header": "X-Webhook-Token", "secret": token}
    config = {
        "server": {"host": "127.0.0.1", "port": http_port},
        "store": {"url": "sqlite:///nethook-demo.db", "data_dir": "data"},
        "logging": {"level": "WARNING"},
        "admin": {"token": admin},
        "apis": {"dad_jokes": {"url": f"{base}/"}, "deck_of_cards": {"base_url": f"{base}/api"}},
        "inventory": "inventory.yml",
        "sources": {
            "default": {"auth": token_auth},
            "devices": {
                "type": "syslog",
                "listen": f"udp://127.0.0.1:{syslog_port}",
                "allow": ["127.0.0.0/8"],
            },
            "alerts": {"format": "alertmanager", "auth": {"type": "bearer", "token": alert_token}},
        },
        "rules": [
            # The classic joke and card rules exactly as the embedded default has them.
            *(r for r in CLASSIC_RULES if r["name"] in ("tell a joke", "draw cards")),
            {
                "name": "device status check",
                "on": {"type": "device_status_check"},
                "do": [
                    {
                        "device.command": {
                            "device": "{{ event.data.device_ip }}",
                            "command": "{{ event.data.command }}",
                        }
                    }
                ],
            },
            {
                "name": "interface down",
                "on": {"source": "devices"},
                "when": "event.data.mnemonic == 'LINK-3-UPDOWN' and event.data.state == 'down'",
                "throttle": {
                    "once_within": "60s",
                    "group_by": ["event.data.device", "event.data.interface"],
                },
                "do": [
                    {
                        "device.command": {
                            "device": "{{ event.data.device }}",
                            "command": "show interfaces {{ event.data.interface }}",
                        }
                    },
                    {"device.backup": {"device": "{{ event.data.device }}"}},
                ],
            },
            {
                "name": "alert: interface down",
                "on": {"source": "alerts", "type": "alert"},
                "when": "event.data.labels.alertname == 'InterfaceDown'",
                "do": [
                    {
                        "log": {
                            "message": "{{ event.data.status }}: "
                            "{{ event.data.annotations.summary }}"
                        }
                    }
                ],
            },
        ],
    }
    path = workdir / "nethook-demo.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


ALERT = {
    "version": "4",
    "groupKey": '{}:{alertname="InterfaceDown"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "nethook",
    "groupLabels": {"alertname": "InterfaceDown"},
    "commonLabels": {"alertname": "InterfaceDown", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.demo:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "InterfaceDown",
                "instance": "r1",
                "ifName": "GigabitEthernet2",
                "severity": "critical",
            },
            "annotations": {"summary": "GigabitEthernet2 down on r1"},
            "startsAt": "2026-11-30T09:12:03.201Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.demo:9090/graph",
            "fingerprint": "4c1f3a9e0b7d2a11",
        }
    ],
}


def _summary(detail: dict[str, Any]) -> str:
    runs = [r for r in detail.get("runs", []) if r.get("action") != "throttle"]
    if not runs:
        return detail["event"].get("error") or "no action ran (no rule, or suppressed)"
    last = runs[-1]
    out = last.get("output")
    if last.get("error"):
        return f"{last['action']}: {last['error'][:70]}"
    if isinstance(out, dict):
        for key in ("joke", "message"):
            if key in out:
                return f"{last['action']}: {str(out[key])[:70]}"
        if "cards" in out:
            return f"{last['action']}: drew {', '.join(c['code'] for c in out['cards'])}"
        if "version" in out and "path" in out:  # a device backup
            change = (
                f"+{out.get('lines_added', 0)}/-{out.get('lines_removed', 0)} lines"
                if out.get("changed")
                else "unchanged"
            )
            return f"{last['action']}: version {out['version']} of {out.get('device')}, {change}"
        text = out.get("output") or out.get("status") or json.dumps(out)
        return f"{last['action']}: {str(text).splitlines()[0][:70] if text else out}"
    return f"{last['action']}: {str(out)[:70]}"


def run(
    workdir: Path,
    port: int | None = None,
    once: bool = False,
    console: Console | None = None,
    timeout: float = 90.0,
) -> int:
    """Run the tour; with ``once`` stop everything at the end (for CI), else wait for Ctrl-C."""
    console = console or Console()
    workdir = workdir.resolve()
    http_port = port or free_port()
    syslog_port, device_port = free_port(socket.SOCK_DGRAM), free_port()
    token, admin, alert_token = (secrets.token_urlsafe(18) for _ in range(3))
    device_password = secrets.token_urlsafe(12)
    url = f"http://127.0.0.1:{http_port}"
    with ExitStack() as stack:
        apis, apis_port = start_stand_ins()
        stack.callback(apis.shutdown)
        console.print(
            f"[bold]1.[/bold] stand-ins for the Dad Jokes and Deck of Cards APIs on "
            f"127.0.0.1:{apis_port}"
        )
        net = start_device(device_port, device_password)
        stack.callback(net.stop)
        console.print(
            f"[bold]2.[/bold] simulated Cisco IOS router r1 (fakenos SSH) on "
            f"127.0.0.1:{device_port}"
        )
        config = write_files(
            workdir, http_port, syslog_port, device_port, apis_port, token, admin, alert_token
        )
        log = open(workdir / "nethook.log", "ab")  # noqa: SIM115 - closed by the ExitStack
        stack.callback(log.close)
        env = {**os.environ, "NETHOOK_DEMO_DEVICE_PASSWORD": device_password}
        proc = subprocess.Popen(
            [sys.executable, "-m", "nethook.cli", "serve", "--config", str(config)],
            cwd=workdir,
            stdout=log,
            stderr=log,
            env=env,
        )
        stack.callback(_stop, proc)
        _wait_ready(url, proc, workdir)
        console.print(f"[bold]3.[/bold] nethook on {url} (config: {config})")
        ids = _send_all(url, token, alert_token, admin, syslog_port, console)
        results = _wait_done(url, admin, ids, timeout)
        table = Table("event", "source", "status", "what happened", title="nethook demo")
        colours = {"succeeded": "green", "dead": "red", "suppressed": "yellow"}
        for label, detail in results:
            ev = detail["event"]
            c = colours.get(ev["status"], "cyan")
            table.add_row(label, ev["source"], f"[{c}]{ev['status']}[/{c}]", _summary(detail))
        console.print(table)
        console.print(f"\nDashboard: [bold]{url}/[/bold]  (admin token: {admin})")
        console.print(f"API:       curl -s -H 'Authorization: Bearer {admin}' {url}/api/events")
        console.print(
            f"Artifacts: {workdir / 'data' / 'artifacts'}   Backups: {workdir / 'data' / 'backups'}"
        )
        console.print(
            f"Send more: curl -s -X POST {url}/events -H 'Content-Type: application/json'"
            f" -H 'X-Webhook-Token: {token}' -d '{{\"event\":\"joke_request\"}}'"
        )
        ok = all(d["event"]["status"] == "succeeded" for _, d in results)
        if not once:
            console.print("\nnethook keeps running; press Ctrl-C to stop the demo.")
            with suppress(KeyboardInterrupt):
                proc.wait()
        return 0 if ok else 1


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nethook exited; see {workdir / 'nethook.log'}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"nethook did not become ready; see {workdir / 'nethook.log'}")


def _send_all(
    url: str, token: str, alert_token: str, admin: str, syslog_port: int, console: Console
) -> list[tuple[str, str]]:
    headers = {"Content-Type": "application/json", "X-Webhook-Token": token}
    classic = [
        ("joke_request", {"event": "joke_request", "source": "demo", "data": {"user_id": "you"}}),
        (
            "card_draw",
            {
                "event": "card_draw",
                "source": "demo",
                "data": {"deck_id": "new", "count": 2, "game_session": "demo"},
            },
        ),
        (
            "device_status_check",
            {
                "event": "device_status_check",
                "source": "demo",
                "data": {"device_ip": "r1", "command": "show ip interface brief"},
            },
        ),
    ]
    ids: list[tuple[str, str]] = []
    for label, body in classic:
        r = httpx.post(f"{url}/events", json=body, headers=headers, timeout=10)
        r.raise_for_status()
        ids.append((label, r.json()["id"]))
    line = (
        "<187>1431: r1: *Nov 30 09:12:03.201: %LINK-3-UPDOWN: Interface GigabitEthernet2, "
        "changed state to down"
    )
    before = {i for _, i in ids}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(line.encode(), ("127.0.0.1", syslog_port))
    r = httpx.post(
        f"{url}/hooks/alerts",
        json=ALERT,
        timeout=10,
        headers={"Authorization": f"Bearer {alert_token}"},
    )
    r.raise_for_status()
    ids.append(("alertmanager InterfaceDown", r.json()["id"]))
    console.print(
        "[bold]4.[/bold] sent joke_request, card_draw, device_status_check, a "
        "LINK-3-UPDOWN syslog line and an Alertmanager alert"
    )
    ids.insert(3, ("syslog LINK-3-UPDOWN", _syslog_id(url, admin, before)))
    return ids


def _syslog_id(url: str, admin: str, known: set[str]) -> str:
    # The syslog event has no HTTP answer to carry its id: find it in the history.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{url}/api/events",
            params={"source": "devices", "limit": 5},
            timeout=5,
            headers={"Authorization": f"Bearer {admin}"},
        )
        items = [e for e in r.json().get("items", []) if e["id"] not in known]
        if items:
            return str(items[0]["id"])
        time.sleep(0.2)
    raise SystemExit("the syslog line did not become an event within 15s")


def _wait_done(
    url: str, admin: str, ids: list[tuple[str, str]], timeout: float
) -> list[tuple[str, dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {admin}"}
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(done) < len(ids):
        for _, eid in ids:
            if eid in done:
                continue
            detail = httpx.get(f"{url}/api/events/{eid}", headers=headers, timeout=5).json()
            if detail["event"]["status"] in ("succeeded", "dead", "suppressed"):
                done[eid] = detail
        time.sleep(0.2)
    out = []
    for label, eid in ids:
        detail = (
            done.get(eid) or httpx.get(f"{url}/api/events/{eid}", headers=headers, timeout=5).json()
        )
        out.append((label, detail))
    return out
