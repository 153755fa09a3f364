"""Dashboard logic without a browser: filters, summaries, redaction, diffs, the chart,
session cookies, and the stream hub against a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from nethook.config import AdminConfig
from nethook.events import Event, EventDraft, EventStatus
from nethook.store.base import ActivityRow
from nethook.store.sqlite import SQLiteStore
from nethook.web import auth, views
from nethook.web.stream import StreamHub, message


def event(data: Any, **kw: Any) -> Event:
    base: dict[str, Any] = {
        "id": "01TEST",
        "source": "default",
        "type": "interface_down",
        "timestamp": "2026-01-01T00:00:00Z",
        "received_at": 1_700_000_000.0,
        "data": data,
        "meta": {},
        "status": EventStatus.SUCCEEDED,
        "seq": 7,
    }
    base.update(kw)
    return Event(**base)


# --------------------------------------------------------------------------- filters


def test_filters_from_query_drop_unknown_status_and_round_trip() -> None:
    f = views.Filters.from_query({"status": "bogus", "device": " R1 ", "q": "Gi0/1"})
    assert f.status == "" and f.device == "R1" and f.text == "Gi0/1"
    assert f.query_string() == "device=R1&q=Gi0%2F1"
    assert f.store_filter(None, 10).text == "Gi0/1"
    assert views.Filters(device="r1").store_filter(5, 10).text == "r1"  # narrows by text


def test_filters_match_like_the_store_plus_device() -> None:
    e = event({"device": "R1", "interface": "Gi0/1"}, status=EventStatus.DEAD)
    assert views.Filters(device="r1").matches(e)
    assert not views.Filters(device="r11").matches(e)
    assert views.Filters(text="gi0/1").matches(e)
    assert views.Filters(text="01TEST").matches(e)
    assert not views.Filters(text="nothing").matches(e)
    assert not views.Filters(status="succeeded").matches(e)
    assert views.Filters(status="succeeded").matches(e, status=False)


def test_summary_prefers_summary_fields_then_scalars() -> None:
    alert = {"alertname": "X", "annotations": {"summary": "BGP  down\n now"}}
    assert views.summary_of(event(alert)) == "BGP down now"
    assert views.summary_of(event({"device": "r1", "ifc": "Gi0/1", "up": False})) == (
        "ifc=Gi0/1 up=False"
    )
    assert views.summary_of(event(["a"])) == '["a"]'
    assert views.summary_of(event({"message": "x" * 500}), width=20).endswith("…")


def test_headers_with_credential_names_are_redacted() -> None:
    shown = dict(
        views.redact_headers(
            {
                "Authorization": "Bearer abc",
                "X-Hub-Signature-256": "sha256=...",
                "X-Webhook-Token": "t",
                "Cookie": "c",
                "X-Api-Key": "k",
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
            }
        )
    )
    assert shown["Content-Type"] == "application/json" and shown["X-GitHub-Event"] == "push"
    for name in ("Authorization", "X-Hub-Signature-256", "X-Webhook-Token", "Cookie", "X-Api-Key"):
        assert shown[name] == views.REDACTED
    assert views.redact_headers(None) == []


# --------------------------------------------------------------------------- diffs


DIFF = "--- a\n+++ b\n@@ -1,2 +1,2 @@\n hostname r1\n-ntp 1\n+ntp 2\n"


def test_diffs_are_found_in_outputs_with_their_path() -> None:
    output = {"changed": True, "diff": DIFF, "lines": ["- a list item", "+ not a diff"]}
    found = list(views.find_diffs(output))
    assert [path for path, _ in found] == ["output.diff"]
    kinds = [line.kind for line in found[0][1]]
    assert kinds == ["file", "file", "hunk", "ctx", "del", "add"]
    assert not views.looks_like_diff("- item\n+ item")
    assert views.is_diff_artifact("config.diff", "text/x-diff")
    assert not views.is_diff_artifact("response", "application/json")


# --------------------------------------------------------------------------- stats


def test_stats_bucket_the_last_hour_by_minute_and_source() -> None:
    now = 1_700_000_000.0
    minute = int(now) // 60
    rows = [
        ActivityRow("a", "succeeded", minute, 4, now - 5),
        ActivityRow("a", "dead", minute - 1, 1, now - 70),
        ActivityRow("old", "succeeded", minute - 60, 7, now - 61 * 60),  # outside the window
        ActivityRow("b", "queued", minute - 10, 2, now - 10 * 60),
    ]
    stats = views.compute_stats(rows, {"dead": 1, "weird": 3}, now)
    assert stats.window_total == 7
    assert stats.per_minute[-1] == 4 and stats.per_minute[-2] == 1 and stats.per_minute[-11] == 2
    assert sum(stats.per_minute) == 7 and stats.per_minute_dead[-2] == 1
    assert [(s.source, s.total, s.succeeded, s.dead, s.pending) for s in stats.sources] == [
        ("a", 5, 4, 1, 0),
        ("b", 2, 0, 0, 2),
    ]
    assert stats.sources[0].last_seen == now - 5
    assert list(stats.statuses) == views.STATUSES and stats.statuses["dead"] == 1
    svg = str(views.chart_svg(stats))
    assert svg.startswith("<svg") and svg.count('class="bar dead"') >= 1


# --------------------------------------------------------------------------- auth


def test_session_cookie_is_signed_and_expires() -> None:
    key = b"k" * 32
    value = auth.make_session(key, now=1000, ttl=60)
    assert auth.check_session(key, value, now=1059)
    assert not auth.check_session(key, value, now=1061)
    assert not auth.check_session(b"x" * 32, value, now=1000)
    version, expiry, mac = value.split(".")
    assert not auth.check_session(key, f"{version}.{int(expiry) + 999}.{mac}", now=1000)
    assert not auth.check_session(key, "garbage", now=1000)


def test_session_key_follows_the_admin_secret() -> None:
    a = AdminConfig(username="admin", password=SecretStr("one-password"))
    b = AdminConfig(username="admin", password=SecretStr("another-password"))
    assert auth.secret_key(a) == auth.secret_key(a) != auth.secret_key(b)
    assert auth.secret_key(AdminConfig()) == auth.secret_key(AdminConfig())  # per process


def test_login_accepts_the_password_or_the_admin_token() -> None:
    admin = AdminConfig(username="admin", password=SecretStr("pw"), token=SecretStr("tok"))
    assert auth.check_login(admin, "admin", "pw")
    assert auth.check_login(admin, "", "tok")
    assert not auth.check_login(admin, "other", "pw")
    assert not auth.check_login(AdminConfig(), "", "")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/dead", "/ui/dead"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
    ],
)
def test_login_redirects_only_to_local_paths(target: str | None, expected: str) -> None:
    assert auth.safe_next(target) == expected


# --------------------------------------------------------------------------- stream


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "t.db")
    await s.open()
    yield s
    await s.close()


async def test_hub_publishes_new_events_and_status_changes(store: SQLiteStore) -> None:
    hub = StreamHub(store, interval=3600)  # polled by hand below
    everything = await hub.subscribe(views.Filters())
    only_r2 = await hub.subscribe(views.Filters(device="r2"))
    dead_only = await hub.subscribe(views.Filters(status="dead"))
    try:
        first = await store.append(EventDraft(source="default", type="t", data={"device": "r1"}))
        await hub.poll()
        kind, e = everything.queue.get_nowait()
        assert (kind, e.id, e.status) == ("new", first.id, EventStatus.QUEUED)
        assert everything.queue.empty() and only_r2.queue.empty() and dead_only.queue.empty()

        # A worker (any process) claims and finishes it: the hub sees it in the store.
        [claimed] = await store.claim("w1", 10, 30)
        await hub.poll()
        kind, e = everything.queue.get_nowait()
        assert (kind, e.status) == ("update", EventStatus.RUNNING)
        await store.finish(claimed.id, "w1", EventStatus.DEAD, "boom")
        await hub.poll()
        kind, e = everything.queue.get_nowait()
        assert (kind, e.status, e.error) == ("update", EventStatus.DEAD, "boom")
        # Updates reach status-filtered views whatever the status, the page decides.
        assert [k for k, _ in _drain(dead_only)] == ["update", "update"]
        assert only_r2.queue.empty()
        await hub.poll()
        assert everything.queue.empty() and not hub.inflight
    finally:
        for sub in (everything, only_r2, dead_only):
            hub.unsubscribe(sub)
    assert hub._task is not None
    hub._task.cancel()


def _drain(sub: Any) -> list[Any]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_sse_message_format() -> None:
    e = event({"device": "r1", "message": "down"}, received_at=time.time())
    new = message("new", e).decode()
    assert new.startswith("id: 7\nevent: new\ndata: {") and new.endswith("}\n\n")
    row = orjson.loads(new.split("data: ", 1)[1])
    assert row["device"] == "r1" and row["summary"] == "down" and row["status"] == "succeeded"
    assert message("update", e).decode().startswith("event: update\n")
