"""Device actions end to end: a real ``nethook serve`` against ten fakenos IOS devices.

One lab and one server per module (fakenos and SSH logins are the slow part); each test
uses its own device(s) where it changes state. Events go in over HTTP with ``?wait=`` and
the answers, stored runs, artifacts and the lab devices' own state are checked.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devices_lab import CONFIG_LINES, PASSWORD, Lab

from conftest import NETHOOK, TOKEN, Server, base_config, free_port, require_service
from nethook.config import CLASSIC_RULES

pytestmark = pytest.mark.integration

NAMES = [f"r{i}" for i in range(1, 11)]

RULES: list[dict[str, Any]] = [
    *copy.deepcopy(CLASSIC_RULES),
    {
        "name": "cmd",
        "on": {"type": "cmd"},
        "do": [
            {
                "device.command": {
                    "device": "{{ event.data.device }}",
                    "command": "{{ event.data.command }}",
                    "parse": "{{ event.data.parse | default(false) }}",
                }
            }
        ],
    },
    {
        "name": "fanout",
        "on": {"type": "fanout"},
        "do": [{"device.command": {"group": "lab", "command": "show ip interface brief"}}],
    },
    {
        "name": "backup",
        "on": {"type": "backup"},
        "do": [{"device.backup": {"device": "{{ event.data.device }}"}}],
    },
    {
        "name": "change",
        "on": {"type": "change"},
        "allow_config": True,
        "do": [
            {
                "device.configure": {
                    "device": "{{ event.data.device }}",
                    "lines": "{{ event.data.lines }}",
                    "dry_run": "{{ event.data.dry_run | default(false) }}",
                }
            }
        ],
    },
    {
        "name": "change not allowed",
        "on": {"type": "change_denied"},
        "do": [
            {"device.configure": {"device": "{{ event.data.device }}", "lines": ["ntp server 1"]}}
        ],
    },
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    try:
        import fakenos  # noqa: F401
        import netmiko  # noqa: F401
    except ImportError as exc:
        require_service("fakenos/netmiko", f"not installed: {exc}")
    lab = Lab(NAMES).start()
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("devices")
    port = free_port()
    cfg = base_config(workdir, port)
    cfg["inventory"] = str(lab.write_inventory(workdir / "inventory.yml"))
    cfg["rules"] = RULES
    cfg["devices"] = {"fanout": 10, "max_sessions": 24, "connect_timeout": 10}
    cfg["dispatcher"] = {"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 2}
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start(env={"LAB_PASSWORD": PASSWORD})
    yield srv
    srv.stop()


def send(srv: Server, type_: str, wait: float = 60, **data: Any) -> dict[str, Any]:
    """Post an event and wait for its outcome (status, results, error)."""
    r = httpx.post(
        f"{srv.url}/events?wait={wait}",
        json={"event": type_, "data": data},
        headers={"X-Webhook-Token": TOKEN},
        timeout=wait + 10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def stored(srv: Server, event_id: str) -> dict[str, Any]:
    r = httpx.get(f"{srv.url}/api/events/{event_id}", timeout=5)
    assert r.status_code == 200
    return dict(r.json())


def artifact_text(srv: Server, art: dict[str, Any]) -> str:
    r = httpx.get(f"{srv.url}{art['url']}", timeout=5)
    assert r.status_code == 200
    return r.text


# --------------------------------------------------------------------------- must show


def test_device_status_check_stores_show_ip_interface_brief(server: Server, lab: Lab) -> None:
    """The classic event, device by IP-less name from the event: output kept as artifact."""
    seed = json.loads((Path(__file__).parents[1] / "vectors/seed_envelopes.json").read_text())
    env = copy.deepcopy(seed["device_status_check"])
    env["data"]["device_ip"] = "r1"
    r = httpx.post(
        f"{server.url}/events?wait=60", json=env, headers={"X-Webhook-Token": TOKEN}, timeout=70
    )
    out = r.json()
    assert out["status"] == "succeeded", out
    step = out["results"]["device status check"]["0"]
    assert step["device"] == "r1" and step["command"] == "show ip interface brief"
    assert "GigabitEthernet1       10.0.0.1" in step["output"]
    assert out["results"]["device status check"]["1"] is None  # the no-inventory log step
    done = stored(server, out["id"])
    (art,) = done["artifacts"]
    assert art["name"] == "r1-show_ip_interface_brief.txt"
    assert art["content_type"].startswith("text/plain")
    assert artifact_text(server, art) == step["output"]
    assert Path(art["path"]).read_text() == step["output"]


def test_command_by_host_and_textfsm(server: Server) -> None:
    out = send(server, "cmd", device="r2", command="show ip interface brief", parse=True)
    assert out["status"] == "succeeded", out
    step = out["results"]["cmd"]["0"]
    assert step["parsed"][0] == {
        "interface": "GigabitEthernet1",
        "ip_address": "10.0.0.2",
        "status": "up",
        "proto": "up",
    }
    assert [row["interface"] for row in step["parsed"]] == [
        "GigabitEthernet1",
        "GigabitEthernet2",
        "Loopback0",
    ]
    # A command without a template still returns its text, with the reason.
    out = send(server, "cmd", device="r2", command="terminal length 0", parse=True)
    step = out["results"]["cmd"]["0"]
    assert out["status"] == "succeeded" and step["parsed"] is None and step["parse_error"]


def test_unknown_device_and_rejected_command_are_permanent(server: Server) -> None:
    out = send(server, "cmd", device="nope", command="show clock")
    assert out["status"] == "dead" and "not in the inventory" in out["error"]
    out = send(server, "cmd", device="r3", command="show nonsense")
    assert out["status"] == "dead"
    assert "rejected 'show nonsense'" in out["error"] and "Invalid input" in out["error"]
    runs = stored(server, out["id"])["runs"]
    assert len(runs) == 1  # permanent: not retried


def test_fan_out_to_ten_devices(server: Server, lab: Lab) -> None:
    started = time.monotonic()
    out = send(server, "fanout")
    elapsed = time.monotonic() - started
    assert out["status"] == "succeeded", out
    step = out["results"]["fanout"]["0"]
    assert step["count"] == 10 and sorted(step["succeeded"]) == sorted(NAMES)
    assert step["failed"] == []
    for i, name in enumerate(NAMES, start=1):
        assert f"10.0.0.{i} " in step["devices"][name]["output"]
    arts = stored(server, out["id"])["artifacts"]
    assert sorted(a["name"] for a in arts) == sorted(
        f"{n}-show_ip_interface_brief.txt" for n in NAMES
    )
    # Concurrent, not sequential: ten logins in about the time of one or two.
    assert elapsed < 10, elapsed


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("show running-config | redirect flash:stolen.txt", "'| redirect'"),
        ("show run | append tftp://192.0.2.9/x", "'| append'"),
        ("show run | tee flash:x", "'| tee'"),
        ("conf t", "allowed command"),
        ("configure terminal", "allowed command"),
        ("show version\nreload", "line break"),
        ("show version\r\nreload", "line break"),
        ("show clock; reload", "';'"),
        ("show clock\x1b[2K", "control character"),
    ],
)
def test_policy_refuses_injected_commands(
    server: Server, lab: Lab, command: str, reason: str
) -> None:
    logins = lab["r4"].logins
    out = send(server, "cmd", device="r4", command=command)
    assert out["status"] == "dead", out
    assert "refused by policy" in out["error"] and reason in out["error"]
    assert lab["r4"].logins == logins  # nothing was sent: no session was even opened
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in server.log().splitlines() if x.startswith("{")]
        hits = [x for x in lines if x.get("event") == "security.command_refused"]
        if any(h.get("event_id") == out["id"] for h in hits):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no security.command_refused log line for the event")


def test_policy_allows_read_only_pipes(server: Server) -> None:
    out = send(server, "cmd", device="r4", command="show running-config | include hostname")
    assert out["status"] == "succeeded", out
    assert out["results"]["cmd"]["0"]["output"] == "hostname r4"


# --------------------------------------------------------------------------- backup, configure


def test_backup_change_backup_shows_diff(server: Server, lab: Lab) -> None:
    folder = server.workdir / "data" / "backups" / "r5"
    first = send(server, "backup", device="r5")
    assert first["status"] == "succeeded", first
    b1 = first["results"]["backup"]["0"]
    assert b1["changed"] is True and b1["version"] == 1 and b1["previous"] is None
    assert Path(b1["path"]).parent == folder and Path(b1["path"]).suffix == ".cfg"
    assert "hostname r5" in Path(b1["path"]).read_text()

    # Unchanged (only the "Last configuration change" clock line moved): not saved again.
    again = send(server, "backup", device="r5")["results"]["backup"]["0"]
    assert again["changed"] is False and again["path"] == b1["path"]
    assert len(list(folder.glob("*.cfg"))) == 1

    change = send(server, "change", device="r5", lines=[CONFIG_LINES[0], CONFIG_LINES[1]])
    assert change["status"] == "succeeded", change
    c = change["results"]["change"]["0"]
    assert CONFIG_LINES[0] in lab["r5"].config and CONFIG_LINES[1] in lab["r5"].config
    assert c["backup_before"]["changed"] is False  # nothing changed since the last backup
    assert f"+{CONFIG_LINES[0]}" in c["diff"] and f"+{CONFIG_LINES[1]}" in c["diff"]
    assert "configure terminal" in c["transcript"]

    after = send(server, "backup", device="r5")["results"]["backup"]["0"]
    assert after["changed"] is False  # configure already stored the new version
    assert len(list(folder.glob("*.cfg"))) == 2
    # Remove one line and back up: a third version whose diff shows the removal.
    send(server, "change", device="r5", lines=[f"no {CONFIG_LINES[1]}"])
    out = send(server, "backup", device="r5")
    versions = sorted(folder.glob("*.cfg"))
    assert len(versions) == 3
    diff_art = [a for a in stored(server, out["id"])["artifacts"]]
    assert diff_art == []  # the configure step took the backup; this one is unchanged
    text = versions[-1].read_text()
    assert CONFIG_LINES[0] in text and CONFIG_LINES[1] not in text


def test_backup_diff_artifact(server: Server, lab: Lab) -> None:
    send(server, "backup", device="r6")
    with lab["r6"].lock:
        lab["r6"].config.append(CONFIG_LINES[2])  # changed behind our back (a console user)
    out = send(server, "backup", device="r6")
    b = out["results"]["backup"]["0"]
    assert b["changed"] and b["version"] == 2 and b["lines_added"] == 1
    arts = {a["name"]: a for a in stored(server, out["id"])["artifacts"]}
    assert set(arts) == {"r6-running-config.cfg", "r6-config.diff"}
    diff = artifact_text(server, arts["r6-config.diff"])
    assert diff == b["diff"] and f"+{CONFIG_LINES[2]}" in diff


def test_configure_refused_without_allow_config(server: Server, lab: Lab) -> None:
    before = list(lab["r7"].config)
    logins = lab["r7"].logins
    out = send(server, "change_denied", device="r7")
    assert out["status"] == "dead"
    assert "allow_config" in out["error"]
    assert lab["r7"].config == before and lab["r7"].logins == logins


def test_configure_dry_run_sends_nothing(server: Server, lab: Lab) -> None:
    logins = lab["r8"].logins
    out = send(server, "change", device="r8", lines=[CONFIG_LINES[3]], dry_run=True)
    assert out["status"] == "succeeded"
    assert out["results"]["change"]["0"] == {
        "dry_run": True,
        "lines": [CONFIG_LINES[3]],
        "devices": ["r8"],
    }
    assert CONFIG_LINES[3] not in lab["r8"].config and lab["r8"].logins == logins


def test_configure_refuses_injected_line(server: Server, lab: Lab) -> None:
    out = send(server, "change", device="r8", lines=["ntp server 192.0.2.123\nreload"])
    assert out["status"] == "dead" and "line break" in out["error"]


def test_pool_reuses_sessions_across_events(server: Server, lab: Lab) -> None:
    send(server, "cmd", device="r9", command="show clock")
    logins = lab["r9"].logins
    for _ in range(5):
        out = send(server, "cmd", device="r9", command="show clock")
        assert out["status"] == "succeeded", out
    assert lab["r9"].logins == logins  # five events, no new login


# --------------------------------------------------------------------------- the CLI


def test_inventory_list_and_check_cli(server: Server, lab: Lab, tmp_path: Path) -> None:
    env = {**os.environ, "LAB_PASSWORD": PASSWORD, "COLUMNS": "200", "NO_COLOR": "1"}
    r = subprocess.run(
        [*NETHOOK, "inventory", "list", "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "10 devices" in r.stdout and PASSWORD not in r.stdout
    rows = [ln for ln in r.stdout.splitlines() if "cisco_ios" in ln]
    assert len(rows) == 10 and all("lab" in ln and "fake" in ln for ln in rows)

    # check: every device logged in to concurrently; one unreachable device fails the run.
    inv = lab.inventory()
    inv["devices"]["down"] = {"host": "127.0.0.1", "port": free_port(), "groups": ["lab"]}
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(inv))
    started = time.monotonic()
    r = subprocess.run(
        [*NETHOOK, "inventory", "check", "--inventory", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 1, r.stdout + r.stderr
    lines = {ln.split("│")[1].strip(): ln for ln in r.stdout.splitlines() if ln.count("│") > 5}
    for name in NAMES:
        assert "yes" in lines[name] and f"{name}#" in lines[name], lines[name]
    assert " no " in lines["down"] and "refused" in lines["down"]
    assert "1 of 11 devices unreachable" in r.stderr
    assert elapsed < 30, elapsed  # concurrent: ~one login time, not eleven


def test_configure_line_the_device_refuses(server: Server, lab: Lab) -> None:
    out = send(server, "change", device="r10", lines=["hostname has spaces"])
    assert out["status"] == "dead"
    assert "r10: the device refused a line" in out["error"] and "Invalid input" in out["error"]
    # The session left config mode: the next command on it works.
    ok = send(server, "cmd", device="r10", command="show clock")
    assert ok["status"] == "succeeded", ok
