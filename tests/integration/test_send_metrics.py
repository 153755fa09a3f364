"""`nethook send` signs like each sender; /metrics moves as events flow; /joke answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import TOKEN, Server, base_config, post_event

pytestmark = pytest.mark.integration

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SCHEMES: dict[str, dict[str, Any]] = {
    "tok": {"type": "token", "header": "X-Lab-Token", "secret": "lab-token-0123456789abcdef"},
    "bear": {"type": "bearer", "token": "bearer-token-0123456789abcdef"},
    "basic": {"type": "basic", "username": "ops", "secret": "basic-pass-0123456789abcdef"},
    "mac": {
        "type": "hmac",
        "header": "X-Sig",
        "algorithm": "sha512",
        "encoding": "base64",
        "prefix": "sha512=",
        "timestamp_header": "X-Ts",
        "secret": "hmac-secret-0123456789abcdef",
    },
    "gh": {"type": "github", "secret": "github-secret-0123456789abcdef"},
    "sw": {"type": "standard-webhooks", "secret": WHSEC},
    "mer": {"type": "meraki", "secret": "meraki-secret-0123456789abcdef"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import yaml

    from conftest import free_port

    workdir = tmp_path_factory.mktemp("send")
    port = free_port()
    cfg = base_config(workdir, port)
    cfg["sources"].update({name: {"auth": auth} for name, auth in SCHEMES.items()})
    cfg["rules"] = [{"name": "log all", "do": [{"log": {"message": "got {{ event.type }}"}}]}]
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()


def send(server: Server, payload: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nethook.cli",
            "send",
            str(payload),
            "--config",
            str(server.config_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("source", ["default", *SCHEMES])
def test_send_signs_as_each_sender_would(server: Server, source: str, tmp_path: Path) -> None:
    payload = tmp_path / "event.json"
    body = (
        {"event": "sent", "data": {"via": source}}
        if source == "default"
        else {"type": "sent", "via": source, "alertTypeId": "sent", "alertId": f"a-{time.time()}"}
    )
    payload.write_text(json.dumps(body))
    before = server.event_count()
    proc = send(server, payload, "--source", source)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("202 "), proc.stdout
    assert server.event_count() == before + 1


def test_send_refuses_what_the_server_refuses(server: Server, tmp_path: Path) -> None:
    """A config whose secret differs from the server's signs wrongly: 401, exit 1."""
    import yaml

    cfg = yaml.safe_load(server.config_path.read_text())
    cfg["sources"]["gh"]["auth"]["secret"] = "not-the-servers-secret-0123456789"
    other = tmp_path / "other.yml"
    other.write_text(yaml.safe_dump(cfg))
    payload = tmp_path / "p.json"
    payload.write_text('{"x": 1}')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nethook.cli",
            "send",
            str(payload),
            "--config",
            str(other),
            "--source",
            "gh",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout.startswith("401 "), proc.stdout


def test_send_load_mode_prints_a_summary(server: Server, tmp_path: Path) -> None:
    payload = tmp_path / "load.json"
    payload.write_text('{"event": "load", "data": {}}')
    before = server.event_count()
    proc = send(server, payload, "--count", "300", "--concurrency", "16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nethook send" in proc.stdout and "req/s" in proc.stdout
    assert "202: 300" in proc.stdout
    assert server.event_count() == before + 300


def test_send_load_mode_explains_rate_limited_answers(make_server: Any, tmp_path: Path) -> None:
    srv = make_server(security={"rate_limit": {"requests_per_minute": 60, "burst": 10}})
    payload = tmp_path / "load.json"
    payload.write_text('{"event": "load", "data": {}}')
    proc = send(srv, payload, "--count", "40", "--concurrency", "4")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # not every answer was 2xx
    assert "429: " in proc.stdout
    limited = int(proc.stdout.split("429: ")[1].split()[0].rstrip(",│"))
    assert 0 < limited <= 30  # at least the burst of 10 got through
    assert f"{limited} requests were rate-limited (429)" in " ".join(proc.stderr.split())
    assert "requests_per_minute" in proc.stderr


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_move_as_events_flow(server: Server) -> None:
    url = server.url
    received = metric(url, "nethook_events_received_total", source="default")
    accepted = metric(url, "nethook_events_accepted_total", source="default")
    rejected = metric(url, "nethook_events_rejected_total", source="default", reason="unauthorized")
    runs = metric(url, "nethook_action_runs_total", action="log", outcome="succeeded")
    latency = metric(url, "nethook_ingest_seconds_count")
    for i in range(5):
        assert post_event(url, {"event": "m", "data": {"i": i}}).status_code == 202
    assert post_event(url, {"event": "m"}, token="wrong-token").status_code == 401
    server.wait_settled()
    assert metric(url, "nethook_events_received_total", source="default") == received + 6
    assert metric(url, "nethook_events_accepted_total", source="default") == accepted + 5
    assert (
        metric(url, "nethook_events_rejected_total", source="default", reason="unauthorized")
        == rejected + 1
    )
    assert metric(url, "nethook_action_runs_total", action="log", outcome="succeeded") == runs + 5
    assert metric(url, "nethook_ingest_seconds_count") == latency + 5
    assert metric(url, "nethook_queue_depth") == 0


def test_joke_route_answers_synchronously(make_server: Any, httpserver: Any) -> None:
    """The classic lab route from examples/nethook.yml, as shipped, answers with a joke."""
    import yaml

    from conftest import ROOT

    httpserver.expect_request("/").respond_with_json(
        {
            "id": "R7UfaahVfFd",
            "joke": "I would tell you a UDP joke, but you might not get it.",
            "status": 200,
        }
    )
    from nethook.config import load_yaml

    # load_yaml, not yaml.safe_load: YAML 1.1 would turn the rules' `on:` into True.
    cfg = load_yaml((ROOT / "examples" / "nethook.yml").read_text())
    cfg.pop("inventory", None)
    cfg["apis"]["dad_jokes"]["url"] = httpserver.url_for("/")
    cfg["sources"] = {k: v for k, v in cfg["sources"].items() if v.get("type") != "syslog"}
    srv = make_server(config=cfg, start=False)
    cfg["store"] = {"url": f"sqlite:///{srv.workdir / 'joke.db'}", "data_dir": str(srv.workdir)}
    cfg["server"] = {"host": "127.0.0.1", "port": srv.port}
    srv.config_path.write_text(yaml.safe_dump(cfg))
    srv.start(env={"NETHOOK_TOKEN": TOKEN, "DEVICE_USER": "x"})
    r = httpx.post(f"{srv.url}/joke", headers={"X-Webhook-Token": TOKEN}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["joke"] == "I would tell you a UDP joke, but you might not get it."
    assert httpx.post(f"{srv.url}/joke", timeout=10).status_code == 401


def test_logs_are_json_lines_with_event_context(server: Server) -> None:
    r = post_event(server.url, {"event": "logged", "data": {}})
    assert r.status_code == 202
    event_id = r.json()["id"]
    server.wait_settled()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    finished = [
        e for e in lines if e.get("event") == "action.finished" and e.get("event_id") == event_id
    ]
    assert finished, "no action.finished line for the event"
    line = finished[0]
    assert line["source"] == "default" and line["type"] == "logged"
    assert line["rule"] == "log all" and line["action"] == "log" and line["ok"] is True
    assert "timestamp" in line and line["level"] == "info"
