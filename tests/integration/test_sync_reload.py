"""Synchronous replies (``?wait=``) and config reload (CLI, SIGHUP, ``POST /api/reload``)
against a real ``nethook serve`` subprocess on loopback."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import NETHOOK, Server, post_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def rule(name: str, type_: str, message: str | None = None) -> dict[str, Any]:
    return {"name": name, "on": {"type": type_}, "do": [{"log": {"message": message or name}}]}


def envelope(type_: str, **data: Any) -> dict[str, Any]:
    return {"event": type_, "timestamp": "2026-01-01T00:00:00Z", "source": "test", "data": data}


# --------------------------------------------------------------------------- sync replies


def test_wait_answers_200_with_results_when_in_time(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(rules=[rule("greet", "hello", "hi {{ event.data.name }}")])
    started = time.monotonic()
    resp = post_event(srv.url, envelope("hello", name="ops"), params={"wait": "5"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "succeeded"
    assert body["error"] is None
    assert body["results"]["greet"]["0"]["message"] == "hi ops"
    assert time.monotonic() - started < 5


def test_wait_times_out_to_202_queued_and_the_event_still_runs(
    make_server: Callable[..., Server], httpserver: HTTPServer
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(4.0)
        return Response('{"done": true}', content_type="application/json")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    srv = make_server(
        rules=[
            {
                "name": "slow",
                "on": {"type": "slow"},
                "do": [{"http": {"url": httpserver.url_for("/slow")}}],
            }
        ]
    )
    started = time.monotonic()
    resp = post_event(srv.url, envelope("slow"), params={"wait": "0.5"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "queued"
    # Answered at the deadline, not when the action finished (4 s): a wide margin for a
    # loaded machine, and still a clear difference.
    assert 0.5 <= elapsed < 3.0, elapsed
    event_id = resp.json()["id"]
    srv.wait_settled(timeout=15)
    [row] = srv.db_rows("SELECT status FROM events WHERE id = ?", (event_id,))
    assert row["status"] == "succeeded"
    assert len(httpserver.log) == 1


# --------------------------------------------------------------------------- reload


def write_config(srv: Server, cfg: dict[str, Any]) -> None:
    srv.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def results_for(srv: Server, type_: str) -> dict[str, Any]:
    resp = post_event(srv.url, envelope(type_), params={"wait": "5"})
    assert resp.status_code == 200, resp.text
    results: dict[str, Any] = resp.json()["results"]
    return results


def nethook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NETHOOK, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met")


def test_reload_good_config_via_cli_and_sighup(make_server: Callable[..., Server]) -> None:
    srv = make_server(rules=[rule("one", "a")])
    cfg = yaml.safe_load(srv.config_path.read_text())
    assert results_for(srv, "b") == {}  # no rule for type b yet

    # 1. `nethook reload` (the CLI asks the running server) picks up a new rule.
    cfg = copy.deepcopy(cfg)
    cfg["rules"].append(rule("two", "b"))
    write_config(srv, cfg)
    done = nethook("reload", "--config", str(srv.config_path))
    assert done.returncode == 0, done.stderr
    assert "reloaded: 2 rules" in done.stdout
    assert results_for(srv, "b")["two"]["0"]["message"] == "two"

    # 2. SIGHUP does the same, without a restart (same process id).
    pid = srv.proc.pid if srv.proc else None
    cfg["rules"].append(rule("three", "c"))
    write_config(srv, cfg)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    until(lambda: "three" in results_for(srv, "c"))
    assert srv.proc.pid == pid and srv.proc.poll() is None
    assert "service.reloaded" in srv.log()


def test_reload_bad_config_keeps_the_running_one_and_says_why(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(rules=[rule("one", "a")])
    good = yaml.safe_load(srv.config_path.read_text())
    bad = copy.deepcopy(good)
    bad["rules"] = [
        rule("one", "a", "changed"),
        {
            "name": "broken",
            "when": "event.data.x | nosuchfilter",
            "do": [{"log": {"message": "x"}}],
        },
        {"name": "typo", "do": [{"lgo": {"message": "x"}}]},
    ]
    write_config(srv, bad)

    # POST /api/reload: 400 with every problem, each naming its rule.
    resp = httpx.post(f"{srv.url}/api/reload", timeout=10)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "reload_refused"
    assert "running configuration was kept" in body["detail"]
    errors = "\n".join(body["errors"])
    assert "rules[1] ('broken')" in errors and "unknown filter 'nosuchfilter'" in errors
    assert "rules[2] ('typo')" in errors and "unknown action 'lgo'" in errors

    # The CLI reports the same refusal and fails.
    done = nethook("reload", "--config", str(srv.config_path))
    assert done.returncode == 2
    assert "reload refused (400)" in done.stderr and "nosuchfilter" in done.stderr

    # SIGHUP: refused and logged; the process keeps running the old rules.
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    until(lambda: "reload.refused" in srv.log())
    assert srv.proc.poll() is None
    assert results_for(srv, "a")["one"]["0"]["message"] == "one"  # not "changed"

    # A file that does not even parse is refused the same way.
    srv.config_path.write_text("rules: [unclosed\n")
    resp = httpx.post(f"{srv.url}/api/reload", timeout=10)
    assert resp.status_code == 400
    assert any("cannot parse" in e for e in resp.json()["errors"])
    assert results_for(srv, "a")["one"]["0"]["message"] == "one"


def test_reload_swaps_the_inventory_and_refuses_a_bad_one(
    make_server: Callable[..., Server], tmp_path: Any
) -> None:
    inventory = tmp_path / "inventory.yml"

    def write_inventory(devices: dict[str, Any]) -> None:
        inventory.write_text(yaml.safe_dump({"devices": devices}))

    write_inventory({"r1": {"host": "192.0.2.1"}})
    where = (
        "{{ inventory.devices[event.data.device].host"
        " if event.data.device in inventory.devices else 'unknown' }}"
    )
    srv = make_server(
        rules=[{"name": "where", "on": {"type": "probe"}, "do": [{"log": {"message": where}}]}],
        inventory=str(inventory),
    )

    def host_of(device: str) -> str:
        resp = post_event(srv.url, envelope("probe", device=device), params={"wait": "5"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["results"]["where"]["0"]["message"])

    assert (host_of("r1"), host_of("r2")) == ("192.0.2.1", "unknown")

    write_inventory({"r1": {"host": "192.0.2.11"}, "r2": {"host": "192.0.2.2"}})
    resp = httpx.post(f"{srv.url}/api/reload", timeout=10)
    assert resp.status_code == 200, resp.text
    assert (host_of("r1"), host_of("r2")) == ("192.0.2.11", "192.0.2.2")
    assert "devices.reloaded" in srv.log()
    reloaded = next(line for line in srv.log().splitlines() if "devices.reloaded" in line)
    assert "r2" in reloaded and "r1" in reloaded  # added r2, changed r1

    # An inventory with an error is refused as a whole: rules and devices stay as they were.
    write_inventory({"r3": {"host": "192.0.2.3", "port": 99999}})
    resp = httpx.post(f"{srv.url}/api/reload", timeout=10)
    assert resp.status_code == 400
    assert any("r3" in e for e in resp.json()["errors"]), resp.json()
    assert (host_of("r1"), host_of("r2")) == ("192.0.2.11", "192.0.2.2")
