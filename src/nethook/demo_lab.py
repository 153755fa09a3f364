"""The ``nethook demo`` lab: everything nethook talks to during the tour, on loopback.

Local stand-ins for the Dad Jokes and Deck of Cards APIs (their real response shapes), a
simulated Cisco IOS router (fakenos, an SSH server) that knows the commands the demo's
rules run, and the config and inventory files that point nethook at both.
:mod:`nethook.demo` starts these, then runs nethook against them.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

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
