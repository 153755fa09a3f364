"""The dashboard in a real browser: Playwright driving Debian's Chromium against a real
``nethook serve`` with admin credentials.

One server, one stand-in HTTP API and one browser for the module; each test opens its own
browser context (own cookies). The last test seeds a varied history and writes the README
screenshot, ``docs/img/dashboard.png``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import ROOT, TOKEN, Server, base_config, free_port, post_event, require_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER, PASSWORD = "admin", "dashboard-pass-0123456789"
ALERTS_TOKEN = "alerts-token-0123456789abcdef"
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
DIFF = (
    "--- r2/running-config v3\n+++ r2/running-config v4\n@@ -4,3 +4,3 @@\n"
    " hostname r2\n-ntp server 192.0.2.1\n+ntp server 192.0.2.123\n logging host 192.0.2.50\n"
)


def _slow(_request: Request) -> Response:
    time.sleep(8)  # keeps an event "running" while the screenshot is taken
    return Response('{"ok": true}', content_type="application/json")


@pytest.fixture(scope="module")
def api() -> Iterator[HTTPServer]:
    """A stand-in for an outside HTTP API (threaded: the slow route must not block others)."""
    server = HTTPServer(host="127.0.0.1", port=free_port(), threaded=True)
    server.expect_request("/status").respond_with_json({"bgp": "Established", "peers": 4})
    server.expect_request("/gone").respond_with_json({"error": "no such thing"}, status=404)
    server.expect_request("/slow").respond_with_handler(_slow)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def _rules(api: HTTPServer) -> list[dict[str, Any]]:
    device = "{{ event.data.device }}"
    return [
        {
            "name": "interface down",
            "on": {"type": "interface_down"},
            "do": [
                {"log": {"message": device + " {{ event.data.interface }} went down"}},
                {"http": {"url": api.url_for("/status")}},
            ],
        },
        {
            "name": "config diff",
            "on": {"type": "config_changed"},
            "do": [{"log": {"message": "{{ event.data.diff }}"}}],
        },
        {
            "name": "broken",
            "on": {"type": "broken"},
            "do": [{"http": {"url": api.url_for("/gone")}}],
        },
        {"name": "slow", "on": {"type": "slow"}, "do": [{"http": {"url": api.url_for("/slow")}}]},
        {
            "name": "flap",
            "on": {"type": "link_flap"},
            "throttle": {"once_within": "60s", "group_by": ["event.data.device"]},
            "do": [{"log": {"message": device + " flapping"}}],
        },
    ]


@pytest.fixture(scope="module")
def server(api: HTTPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    cfg = base_config(
        workdir,
        port,
        admin={"username": USER, "password": PASSWORD},
        sources={
            "default": {"format": "envelope", "auth": {"type": "token", "secret": TOKEN}},
            "alerts": {"format": "alertmanager", "auth": {"type": "bearer", "token": ALERTS_TOKEN}},
        },
        rules=_rules(api),
    )
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        require_service("chromium", f"{CHROMIUM} is missing (scripts/install-system-deps.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("playwright", "pip install -e '.[test]'")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A logged-in page (through the login form) on the dashboard."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.goto("/")
    assert "/ui/login" in tab.url
    tab.fill("input[name=username]", USER)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{server.url}/")
    yield tab
    context.close()


def send(server: Server, type_: str, **data: Any) -> str:
    r = post_event(server.url, {"event": type_, "data": data})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def send_alert(server: Server, name: str, device: str, summary: str) -> None:
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "nethook",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "device": device, "severity": "critical"},
                "annotations": {"summary": summary},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": f"{name}-{device}-{time.time_ns()}",
            }
        ],
    }
    r = httpx.post(
        f"{server.url}/hooks/alerts",
        json=body,
        headers={"Authorization": f"Bearer {ALERTS_TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 202, r.text


def admin_get(server: Server, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", auth=(USER, PASSWORD), timeout=10)


def wait_status(
    server: Server, event_id: str, want: set[str], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event: dict[str, Any] = admin_get(server, f"/api/events/{event_id}").json()["event"]
        if event["status"] in want:
            return event
        time.sleep(0.1)
    raise TimeoutError(f"{event_id} did not reach {want}")


# --------------------------------------------------------------------------- access


def test_unauthenticated_visitor_is_refused(server: Server, browser: Any) -> None:
    plain = httpx.Client(base_url=server.url, follow_redirects=False, timeout=10)
    r = plain.get("/ui/events/01ABC?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fevents%2F01ABC%3Fx%3D1"
    for path in ("/api/events/stream", "/api/events"):
        r = plain.get(path)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", path
    # A webhook secret is not an admin credential.
    assert (
        plain.get("/api/events/stream", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 401
    )
    bad = plain.post("/ui/login", data={"username": USER, "password": "wrong"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    # Basic auth works without the form (scripts, curl -u).
    assert plain.get("/", auth=(USER, PASSWORD)).status_code == 200

    context = browser.new_context(base_url=server.url)
    tab = context.new_page()
    tab.goto("/ui/dead")
    assert tab.url.endswith("/ui/login?next=%2Fui%2Fdead")
    assert tab.locator("form input[name=password]").count() == 1
    context.close()


def test_login_sets_a_strict_httponly_cookie(page: Any) -> None:
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["nethook_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"


# --------------------------------------------------------------------------- live list


def test_event_sent_while_open_appears_without_reload(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.__sameDocument = 42")
    event_id = send(
        server, "interface_down", device="r7", interface="Gi0/7", message="Gi0/7 down on r7"
    )
    row = page.locator(f"#ev-{event_id}")
    expect(row).to_contain_text("Gi0/7 down on r7")
    expect(row.locator(".badge")).to_have_text("succeeded")  # the status change came live too
    assert page.evaluate("window.__sameDocument") == 42


def test_filters_swap_the_list_and_follow_the_stream(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    send(server, "interface_down", device="r8", interface="Gi0/8")
    page.fill("input[name=device]", "r9")
    expect(page).to_have_url(re.compile(r"device=r9"))
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.__sameDocument = 7")
    other = send(server, "interface_down", device="r8", interface="Gi0/1")
    wanted = send(server, "interface_down", device="r9", interface="Gi0/9")
    expect(page.locator(f"#ev-{wanted}")).to_be_visible()
    assert page.locator(f"#ev-{other}").count() == 0
    assert page.locator("#rows tr[data-seq]").count() == 1
    assert page.evaluate("window.__sameDocument") == 7


# --------------------------------------------------------------------------- event page


def test_event_page_shows_runs_outputs_artifacts_and_diffs(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    event_id = send(server, "interface_down", device="r1", interface="Gi0/1")
    wait_status(server, event_id, {"succeeded"})
    page.goto(f"/ui/events/{event_id}")
    runs = page.locator("article.run")
    expect(runs).to_have_count(2)
    expect(runs.nth(0)).to_contain_text("r1 Gi0/1 went down")
    expect(runs.nth(1)).to_contain_text('"bgp": "Established"')
    expect(runs.nth(1)).to_contain_text("attempt 1")
    # The stored headers are shown, with credentials redacted (none are stored here).
    expect(page.locator("table.kv")).to_contain_text("content-type")
    assert TOKEN not in page.content()
    link = page.locator("table.artifacts a").first
    download = page.request.get(link.get_attribute("href"))
    assert download.status == 200 and download.json() == {"bgp": "Established", "peers": 4}

    diff_id = send(server, "config_changed", device="r2", diff=DIFF)
    wait_status(server, diff_id, {"succeeded"})
    page.goto(f"/ui/events/{diff_id}")
    expect(page.locator(".diff .add")).to_have_text("+ntp server 192.0.2.123")
    expect(page.locator(".diff .del")).to_have_text("-ntp server 192.0.2.1")


def test_replay_button_queues_a_copy(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    original = send(server, "interface_down", device="r3", interface="Gi0/3")
    wait_status(server, original, {"succeeded"})
    page.goto(f"/ui/events/{original}")
    page.click("#replay")
    page.wait_for_url(re.compile(r"/ui/events/(?!" + original + ")"))
    copy_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("dl.facts")).to_contain_text(original)
    event = wait_status(server, copy_id, {"succeeded"})
    assert event["replay_of"] == original
    page.reload()
    expect(page.locator("article.run")).to_have_count(2)


def test_replay_without_csrf_token_is_refused(page: Any, server: Server) -> None:
    original = send(server, "interface_down", device="r4", interface="Gi0/4")
    before = server.event_count()
    # The browser's own cookie goes with these requests: only the token is missing or wrong.
    for form in ({}, {"csrf_token": "0" * 64}):
        r = page.request.post(f"/ui/events/{original}/replay", form=form, max_redirects=0)
        assert r.status == 403, form
    r = page.request.post("/ui/dead/replay", form={"ids": original}, max_redirects=0)
    assert r.status == 403
    assert server.event_count() == before
    page.goto(f"/ui/events/{original}")
    token = page.locator("form:has(#replay) input[name=csrf_token]").get_attribute("value")
    r = page.request.post(
        f"/ui/events/{original}/replay", form={"csrf_token": token}, max_redirects=0
    )
    assert r.status == 303
    assert server.event_count() == before + 1


def test_dead_letters_bulk_replay(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    dead = [send(server, "broken", device=f"r{i}") for i in (5, 6)]
    for event_id in dead:
        wait_status(server, event_id, {"dead"})
    page.goto("/ui/dead")
    for event_id in dead:
        expect(page.locator(f"#ev-{event_id}")).to_contain_text("HTTP 404")
    for event_id in dead:
        page.check(f"input[name=ids][value='{event_id}']")
    page.click("#bulk-replay")
    expect(page.locator(".flash")).to_have_text("Queued 2 replays.")
    items = admin_get(server, "/api/events?type=broken&limit=50").json()["items"]
    assert {e["replay_of"] for e in items if e["replay_of"]} >= set(dead)


# --------------------------------------------------------------------------- screenshot


def test_screenshot_of_the_live_dashboard(page: Any, server: Server) -> None:
    """Seed a varied history while the page is open, then write the README screenshot."""
    from playwright.sync_api import expect

    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    send(server, "interface_down", device="core-sw1", interface="Te1/0/1", message="Te1/0/1 down")
    send_alert(server, "BGPSessionDown", "edge-1", "BGP session to 203.0.113.9 is down")
    send(server, "config_changed", device="r2", diff=DIFF)
    send(server, "link_flap", device="access-3", message="Gi1/0/24 flapping")
    send(server, "link_flap", device="access-3", message="Gi1/0/24 flapping")
    send_alert(server, "HighCPU", "core-sw1", "CPU above 90% for 5 minutes")
    send(server, "broken", device="r5", message="ticket API refused the update")
    send(server, "slow", device="wan-2", message="collecting show tech")
    last = send(
        server, "interface_down", device="edge-2", interface="Gi0/0/1", message="uplink down"
    )
    expect(page.locator(f"#ev-{last}")).to_be_visible()
    expect(page.locator("#rows .badge.running")).to_have_count(1)
    expect(page.locator("#rows .badge.suppressed").first).to_be_visible()
    # The counters follow the stream (a refresh shortly after a burst).
    expect(page.locator("#stats table.sources")).to_contain_text("alerts")
    expect(page.locator("#stats .badge.running")).to_contain_text("1")
    # One more arrival, so the picture shows a row as it comes in.
    fresh = send(server, "interface_down", device="dist-1", interface="Po1", message="Po1 down")
    expect(page.locator(f"#ev-{fresh}")).to_have_class("fresh")
    page.wait_for_timeout(1800)  # the counters' refresh lands; the highlight is still on
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size < 400_000
