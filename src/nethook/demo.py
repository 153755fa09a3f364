"""``nethook demo``: a newcomer's first five minutes, with no devices and no internet.

It starts, all on loopback: local stand-ins for the Dad Jokes and Deck of Cards APIs, a
simulated Cisco IOS router (fakenos, an SSH server), and nethook itself with an example
config; then it sends the classic events, an interface-down syslog line and an
Alertmanager alert, waits for their actions and shows what happened and where to look.

The lab (stand-ins, router, config files) is :mod:`nethook.demo_lab`; this module is the
tour: it runs nethook against the lab, sends the events and reports on them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from .demo_lab import free_port, start_device, start_stand_ins, write_files

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
