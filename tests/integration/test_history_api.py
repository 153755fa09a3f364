"""History API, replay, the ``nethook events`` CLI, health and OpenAPI over real HTTP.

One ``nethook serve`` subprocess for the module with its own database, so the history it
lists is exactly what these tests posted.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import NETHOOK, TOKEN, VECTORS, Server, base_config, free_port, post_event

pytestmark = pytest.mark.integration

SEED: dict[str, Any] = json.loads((VECTORS / "seed_envelopes.json").read_text())
OTHER_TOKEN = "other-token-fedcba9876543210"
JOKE = {
    "id": "R7UfaahVfFd",
    "joke": "My dog used to chase people on a bike a lot. It got so bad I had to take his bike away.",
    "status": 200,
}
TERMINAL = {"succeeded", "dead", "suppressed"}


class Jokes:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.calls += 1
        return Response(json.dumps(JOKE), content_type="application/json")


@pytest.fixture(scope="module")
def server(
    make_httpserver: HTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("history")
    port = free_port()
    cfg = base_config(
        workdir,
        port,
        apis={"dad_jokes": {"url": make_httpserver.url_for("/")}},
        sources={
            "default": {"format": "envelope", "auth": {"type": "token", "secret": TOKEN}},
            "other": {"auth": {"type": "token", "secret": OTHER_TOKEN}},
        },
    )
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()


@pytest.fixture
def jokes(httpserver: HTTPServer) -> Jokes:
    stand_in = Jokes()
    httpserver.expect_request("/", method="GET").respond_with_handler(stand_in)
    return stand_in


@pytest.fixture(autouse=True)
def _settle_after(server: Server) -> Iterator[None]:
    yield
    server.wait_settled(15)


def api(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/api{path}", params=params, timeout=5)


def wait_event(server: Server, event_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = api(server, f"/events/{event_id}")
        if r.status_code == 200:
            body = r.json()
            if body["event"]["status"] in TERMINAL:
                return body
        time.sleep(0.05)
    raise AssertionError(f"event {event_id} not terminal after {timeout}s: {body}")


def accept(server: Server, envelope: dict[str, Any], source: str | None = None) -> str:
    if source is None:
        r = post_event(server.url, envelope)
    else:
        r = httpx.post(
            f"{server.url}/hooks/{source}",
            json=envelope,
            headers={"X-Webhook-Token": OTHER_TOKEN},
            timeout=10,
        )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def cli(server: Server, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NETHOOK, *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=server.workdir,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"},
    )


@pytest.fixture(scope="module")
def history(server: Server, make_httpserver: HTTPServer) -> dict[str, Any]:
    """A known history: ids in posting order, by kind. Posted once for the module."""
    make_httpserver.clear()
    stand_in = Jokes()
    make_httpserver.expect_request("/", method="GET").respond_with_handler(stand_in)
    ids: dict[str, list[str]] = {"joke": [], "device": [], "dead": [], "other": []}
    order: list[str] = []

    def add(kind: str, event_id: str) -> None:
        ids[kind].append(event_id)
        order.append(event_id)

    for i in range(3):
        add("joke", accept(server, {**SEED["joke_request"], "data": {"n": i}}))
        add("device", accept(server, SEED["device_status_check"]))
    # An argument that fails validation after rendering: dead, without calling anyone.
    bad = {**SEED["card_draw"], "data": {"deck_id": "../../etc", "count": 1}}
    add("dead", accept(server, bad))
    add("other", accept(server, SEED["device_status_check"], source="other"))
    server.wait_settled(15)
    make_httpserver.clear()
    return {"ids": ids, "order": order, "joke_calls": stand_in.calls}


# --------------------------------------------------------------------------- 7. history


def test_history_lists_newest_first(server: Server, history: dict[str, Any]) -> None:
    r = api(server, "/events")
    assert r.status_code == 200
    body = r.json()
    assert [e["id"] for e in body["items"]] == history["order"][::-1]
    assert body["count"] == len(history["order"])
    assert "next" not in body  # fewer than the default limit
    seqs = [e["seq"] for e in body["items"]]
    assert seqs == sorted(seqs, reverse=True)
    assert history["joke_calls"] == 3


@pytest.mark.parametrize(
    ("params", "kinds"),
    [
        ({"status": "dead"}, ["dead"]),
        ({"status": "succeeded"}, ["joke", "device", "other"]),
        ({"status": "queued"}, []),
        ({"type": "joke_request"}, ["joke"]),
        ({"type": "device_status_check"}, ["device", "other"]),
        ({"source": "other"}, ["other"]),
        ({"source": "default", "type": "device_status_check"}, ["device"]),
        ({"source": "nope"}, []),
    ],
)
def test_history_filters(
    server: Server, history: dict[str, Any], params: dict[str, str], kinds: list[str]
) -> None:
    r = api(server, "/events", **params)
    assert r.status_code == 200
    want = {i for k in kinds for i in history["ids"][k]}
    got = [e["id"] for e in r.json()["items"]]
    assert set(got) == want
    assert len(got) == len(want)
    for e in r.json()["items"]:
        for key, value in params.items():
            assert e[key] == value


def test_history_dead_event_has_its_error(server: Server, history: dict[str, Any]) -> None:
    (dead_id,) = history["ids"]["dead"]
    body = api(server, f"/events/{dead_id}").json()
    assert body["event"]["status"] == "dead"
    assert "deck_id" in body["event"]["error"]
    (run,) = body["runs"]
    assert run["status"] == "failed" and run["transient"] is False


def test_history_pagination_with_cursor(server: Server, history: dict[str, Any]) -> None:
    seen: list[str] = []
    cursor: int | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["before"] = cursor
        body = api(server, "/events", **params).json()
        pages += 1
        assert len(body["items"]) <= 3
        seen.extend(e["id"] for e in body["items"])
        if "next" not in body:
            break
        assert body["next"] == body["items"][-1]["seq"]
        cursor = body["next"]
        assert pages < 10
    assert seen == history["order"][::-1]
    assert pages == 3  # 3 + 3 + 2 of 8 events

    # Filters and the cursor combine.
    first = api(server, "/events", type="joke_request", limit=2).json()
    rest = api(server, "/events", type="joke_request", limit=2, before=first["next"]).json()
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert ids == history["ids"]["joke"][::-1]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"before": -1}, {"before": "x"}],
)
def test_history_bad_query_is_400_json(server: Server, params: dict[str, Any]) -> None:
    r = api(server, "/events", **params)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "detail"}
    assert r.json()["error"] == "bad_request"


def test_unknown_event_is_404_json(server: Server, history: dict[str, Any]) -> None:
    r = api(server, "/events/01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": r.json()["detail"]}
    r = httpx.post(f"{server.url}/api/events/01ZZZZZZZZZZZZZZZZZZZZZZZZ/replay", timeout=5)
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert server.event_count() == len(history["order"])


def test_replay_runs_the_action_again(
    server: Server, history: dict[str, Any], jokes: Jokes
) -> None:
    original = history["ids"]["joke"][0]
    before = wait_event(server, original)
    r = httpx.post(f"{server.url}/api/events/{original}/replay", timeout=5)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["replay_of"] == original and body["status"] == "queued"
    assert body["id"] != original

    copy = wait_event(server, body["id"])
    assert copy["event"]["status"] == "succeeded"
    assert copy["event"]["replay_of"] == original
    assert copy["event"]["type"] == before["event"]["type"]
    assert copy["event"]["data"] == before["event"]["data"]
    (run,) = copy["runs"]
    assert run["output"]["joke"] == JOKE["joke"]
    assert jokes.calls == 1  # the stand-in saw the copy's call
    # The original's history is untouched.
    after = api(server, f"/events/{original}").json()
    assert after["runs"] == before["runs"]
    assert after["event"]["status"] == "succeeded"
    # The copy is the newest event.
    assert api(server, "/events", limit=1).json()["items"][0]["id"] == body["id"]


# --------------------------------------------------------------------------- 7. CLI


def test_cli_events_list_json(server: Server, history: dict[str, Any]) -> None:
    proc = cli(server, "events", "list", "--json", "--limit", "100")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    api_items = api(server, "/events", limit=100).json()["items"]
    assert [e["id"] for e in listed] == [e["id"] for e in api_items]
    assert set(history["order"]) <= {e["id"] for e in listed}
    assert {e["status"] for e in listed} <= TERMINAL

    proc = cli(server, "events", "list", "--json", "--status", "dead")
    assert proc.returncode == 0, proc.stderr
    assert [e["id"] for e in json.loads(proc.stdout)] == history["ids"]["dead"]


def test_cli_events_show(server: Server, history: dict[str, Any]) -> None:
    event_id = history["ids"]["joke"][1]
    proc = cli(server, "events", "show", event_id)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["event"]["id"] == event_id
    assert shown["event"]["status"] == "succeeded"
    assert shown["runs"][0]["output"]["joke"] == JOKE["joke"]
    assert shown["artifacts"] and shown["artifacts"][0]["name"] == "joke.json"

    proc = cli(server, "events", "show", "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert proc.returncode == 1
    assert "no event" in proc.stderr


def test_cli_events_replay_is_run_by_the_server(
    server: Server, history: dict[str, Any], jokes: Jokes
) -> None:
    original = history["ids"]["joke"][2]
    proc = cli(server, "events", "replay", original)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[0] == "queued" and original in proc.stdout
    new_id = words[1]
    copy = wait_event(server, new_id)
    assert copy["event"]["status"] == "succeeded"
    assert copy["event"]["replay_of"] == original
    assert jokes.calls == 1

    proc = cli(server, "events", "replay", "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert proc.returncode == 1
    assert "no event" in proc.stderr


# --------------------------------------------------------------------------- 8. health, docs


def test_health_reports_queue_depth(server: Server) -> None:
    r = httpx.get(f"{server.url}/health", timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["queue_depth"] == 0
    assert body["workers"] is True


def test_health_queue_depth_counts_waiting_events(server: Server, httpserver: HTTPServer) -> None:
    # A stand-in that keeps failing with 503 holds the event in the queue (retrying).
    httpserver.expect_request("/", method="GET").respond_with_data("busy", status=503)
    event_id = accept(server, SEED["joke_request"])
    depth = httpx.get(f"{server.url}/health", timeout=5).json()["queue_depth"]
    assert depth >= 1
    done = wait_event(server, event_id)
    assert done["event"]["status"] == "dead"  # gave up after max_attempts transient failures
    assert len(done["runs"]) == 5
    assert "gave up after 5 attempts" in done["event"]["error"]
    assert httpx.get(f"{server.url}/health", timeout=5).json()["queue_depth"] == 0


def test_docs_and_openapi(server: Server) -> None:
    docs = httpx.get(f"{server.url}/docs", timeout=5)
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "swagger" in docs.text.lower()
    r = httpx.get(f"{server.url}/openapi.json", timeout=5)
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    assert "post" in paths["/events"]
    assert "post" in paths["/hooks/{source}"]
    assert "/api/events" in paths and "/api/events/{event_id}/replay" in paths
    assert "/{path}" not in paths  # the custom-path catch-all stays out of the docs
    body = paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["event"]
    assert {"202", "400", "401", "413", "415"} <= set(paths["/events"]["post"]["responses"])
