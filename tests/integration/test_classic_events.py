"""The three classic events end to end against local stand-ins for the public APIs.

One ``nethook serve`` subprocess per module (real uvicorn on loopback, classic rules because
the config has no ``rules`` key); pytest-httpserver plays icanhazdadjoke.com and
deckofcardsapi.com with their real response shapes. The Deck of Cards stand-in keeps real
state (decks, remaining cards), so deck reuse and exhaustion are behaviour, not scripts.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import ROOT, TOKEN, VECTORS, Server, base_config, free_port, post_event

pytestmark = pytest.mark.integration

SEED: dict[str, Any] = json.loads((VECTORS / "seed_envelopes.json").read_text())
TERMINAL = {"succeeded", "dead", "suppressed"}

JOKE = {
    "id": "R7UfaahVfFd",
    "joke": "My dog used to chase people on a bike a lot. It got so bad I had to take his bike away.",
    "status": 200,
}


# --------------------------------------------------------------------------- stand-ins


class DadJokes:
    """icanhazdadjoke.com: JSON only when asked for it; can fail its first answers."""

    def __init__(self, fail_with: list[int] | None = None) -> None:
        self.fail_with = list(fail_with or [])
        self.requests: list[Request] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(request)
            if self.fail_with:
                status = self.fail_with.pop(0)
                return Response(f"error {status}", status=status, content_type="text/plain")
        if "application/json" not in request.headers.get("Accept", ""):
            return Response("<html><body>a joke</body></html>", content_type="text/html")
        body = json.dumps(JOKE).encode()
        with self.lock:
            self.bodies.append(body)
        return Response(body, content_type="application/json")


_VALUES = [("A", "ACE"), *((str(n), str(n)) for n in range(2, 10))]
_VALUES += [("0", "10"), ("J", "JACK"), ("Q", "QUEEN"), ("K", "KING")]
_SUITS = [("S", "SPADES"), ("D", "DIAMONDS"), ("C", "CLUBS"), ("H", "HEARTS")]


def _card(code: str, value: str, suit: str) -> dict[str, Any]:
    img = f"https://deckofcardsapi.com/static/img/{code}"
    return {
        "code": code,
        "image": f"{img}.png",
        "images": {"svg": f"{img}.svg", "png": f"{img}.png"},
        "value": value,
        "suit": suit,
    }


FULL_DECK = [_card(v + s, value, suit) for s, suit in _SUITS for v, value in _VALUES]


class DeckOfCards:
    """deckofcardsapi.com/api/deck/...: decks with real remaining counts."""

    PATH = re.compile(r"^/api/deck/([A-Za-z0-9]+)/(shuffle|draw)/$")

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency  # seconds each answer takes, like the public service
        self.decks: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def _json(self, body: dict[str, Any], status: int = 200) -> Response:
        raw = json.dumps(body).encode()
        self.bodies.append(raw)
        return Response(raw, status=status, content_type="application/json")

    def __call__(self, request: Request) -> Response:
        m = self.PATH.match(request.path)
        if m is None:
            return Response("Not Found", status=404, content_type="text/html")
        deck_id, op = m.groups()
        time.sleep(self.latency)
        with self.lock:
            self.calls.append((deck_id, op, dict(request.args)))
            if deck_id == "new":
                deck_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=12))
                cards = copy.deepcopy(FULL_DECK) * int(request.args.get("deck_count", 1))
                if op == "shuffle":
                    random.shuffle(cards)
                self.decks[deck_id] = cards
                if op == "shuffle":
                    return self._json(
                        {"success": True, "deck_id": deck_id, "shuffled": True, "remaining": 52}
                    )
            deck = self.decks.get(deck_id)
            if deck is None:
                return self._json({"success": False, "error": "Deck ID does not exist."}, 404)
            if op == "shuffle":
                deck[:] = random.sample(FULL_DECK, len(FULL_DECK))
                return self._json(
                    {"success": True, "deck_id": deck_id, "shuffled": True, "remaining": len(deck)}
                )
            count = int(request.args.get("count", 1))
            drawn, deck[:] = deck[:count], deck[count:]
            body: dict[str, Any] = {
                "success": len(drawn) == count,
                "deck_id": deck_id,
                "cards": drawn,
                "remaining": len(deck),
            }
            if len(drawn) < count:
                body["error"] = f"Not enough cards remaining to draw {count} additional"
            return self._json(body)

    def count(self, op: str, deck_id: str | None = None) -> int:
        return sum(1 for d, o, _ in self.calls if o == op and (deck_id is None or d == deck_id))


# --------------------------------------------------------------------------- fixtures


def _apis(stand_in: HTTPServer) -> dict[str, Any]:
    return {
        "dad_jokes": {"url": stand_in.url_for("/")},
        "deck_of_cards": {"base_url": stand_in.url_for("/api")},
    }


@pytest.fixture(scope="module")
def server(
    make_httpserver: HTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("classic")
    port = free_port()
    cfg = base_config(workdir, port, apis=_apis(make_httpserver))
    assert "rules" not in cfg  # the built-in classic rules apply
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(path, port, workdir).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _settle_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # Nothing of this test may still run when the next test swaps the stand-in's handlers.
    if "server" in request.fixturenames:
        request.getfixturevalue("server").wait_settled(15)


@pytest.fixture
def jokes(httpserver: HTTPServer) -> DadJokes:
    stand_in = DadJokes()
    httpserver.expect_request("/", method="GET").respond_with_handler(stand_in)
    return stand_in


@pytest.fixture
def deck(httpserver: HTTPServer) -> DeckOfCards:
    stand_in = DeckOfCards()
    httpserver.expect_request(re.compile(r"^/api/deck/"), method="GET").respond_with_handler(
        stand_in
    )
    return stand_in


# --------------------------------------------------------------------------- helpers


def wait_event(url: str, event_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll ``GET /api/events/{id}`` until the event is terminal; the whole answer."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/events/{event_id}", timeout=5)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["event"]["status"] in TERMINAL:
            return body
        time.sleep(0.05)
    raise AssertionError(f"event {event_id} not terminal after {timeout}s: {body}")


def accept(url: str, envelope: dict[str, Any], **kwargs: Any) -> str:
    r = post_event(url, envelope, **kwargs)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body == {"id": body["id"], "status": "queued"}
    assert isinstance(body["id"], str) and body["id"]
    return str(body["id"])


def card_event(session: str, count: int = 1, **data: Any) -> dict[str, Any]:
    env = copy.deepcopy(SEED["card_draw"])
    env["data"].update(game_session=session, count=count, **data)
    return env


def draw(url: str, session: str, count: int = 1, **data: Any) -> dict[str, Any]:
    """Post a card_draw, wait for it, return the step's output (asserting it succeeded)."""
    done = wait_event(url, accept(url, card_event(session, count, **data)))
    assert done["event"]["status"] == "succeeded", done
    (run,) = done["runs"]
    assert run["action"] == "card_draw" and run["status"] == "succeeded"
    return dict(run["output"])


def session_id() -> str:
    return f"session_{uuid.uuid4().hex[:10]}"


def check_artifacts(url: str, srv: Server, done: dict[str, Any], served: list[bytes]) -> None:
    """Every artifact is listed, downloadable byte for byte, and a file in the data dir."""
    arts = done["artifacts"]
    assert len(arts) == len(served)
    data_dir = (srv.workdir / "data").resolve()
    for art, raw in zip(arts, served, strict=True):
        assert art["event_id"] == done["event"]["id"]
        assert art["size"] == len(raw)
        r = httpx.get(f"{url}{art['url']}", timeout=5)
        assert r.status_code == 200
        assert r.content == raw
        assert r.headers["content-type"].startswith("application/json")
        path = Path(art["path"]).resolve()
        assert path.is_relative_to(data_dir / "artifacts")
        assert path.read_bytes() == raw


# --------------------------------------------------------------------------- 1. end to end


def test_joke_request_end_to_end(server: Server, jokes: DadJokes) -> None:
    event_id = accept(server.url, SEED["joke_request"])
    done = wait_event(server.url, event_id)

    ev = done["event"]
    assert ev["status"] == "succeeded", done
    assert ev["type"] == "joke_request"
    assert ev["source"] == "default"
    assert ev["data"] == SEED["joke_request"]["data"]
    assert ev["timestamp"] == SEED["joke_request"]["timestamp"]
    assert ev["meta"]["sender"] == "test_client"
    (run,) = done["runs"]
    assert run["action"] == "joke" and run["attempt"] == 1 and run["status"] == "succeeded"
    assert run["output"] == {"id": JOKE["id"], "joke": JOKE["joke"]}

    (req,) = jokes.requests
    assert req.headers.get("Accept") == "application/json"
    assert "nethook" in req.headers.get("User-Agent", "")
    check_artifacts(server.url, server, done, jokes.bodies)


def test_card_draw_end_to_end(server: Server, deck: DeckOfCards) -> None:
    env = copy.deepcopy(SEED["card_draw"])
    env["data"]["game_session"] = session_id()
    done = wait_event(server.url, accept(server.url, env))

    assert done["event"]["status"] == "succeeded", done
    (run,) = done["runs"]
    out = run["output"]
    (created_id,) = [d for d in deck.decks]
    assert out["deck_id"] == created_id
    assert out["remaining"] == 51
    assert out["reused_deck"] is False
    assert "exhausted" not in out
    (card,) = out["cards"]
    assert re.fullmatch(r"[A2-90JQK][SDCH]", card["code"])
    assert card["image"] == f"https://deckofcardsapi.com/static/img/{card['code']}.png"
    assert card["suit"] in {"SPADES", "DIAMONDS", "CLUBS", "HEARTS"}
    # The card really left the stand-in's deck.
    assert card["code"] not in {c["code"] for c in deck.decks[created_id]}
    assert deck.calls[0] == ("new", "shuffle", {"deck_count": "1"})
    assert deck.calls[1] == (created_id, "draw", {"count": "1"})
    check_artifacts(server.url, server, done, deck.bodies)


def test_device_status_check_end_to_end(server: Server, httpserver: HTTPServer) -> None:
    env = SEED["device_status_check"]
    done = wait_event(server.url, accept(server.url, env))

    assert done["event"]["status"] == "succeeded", done
    (run,) = done["runs"]
    assert run["action"] == "log"
    msg = run["output"]["message"]
    assert env["data"]["device_ip"] in msg
    assert env["data"]["command"] in msg
    assert done["artifacts"] == []
    assert len(httpserver.log) == 0  # a log step calls nobody
    # The message also reached the server's structured log, tagged with the event id.
    deadline = time.monotonic() + 5
    while msg not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(ln) for ln in server.log().splitlines() if msg in ln]
    assert lines and lines[0]["event_id"] == done["event"]["id"]


# --------------------------------------------------------------------------- 2. deck reuse


def test_game_session_reuses_its_deck(server: Server, deck: DeckOfCards) -> None:
    session = session_id()
    first = draw(server.url, session, 2)
    second = draw(server.url, session, 3)

    assert deck.count("shuffle", "new") == 1
    assert first["deck_id"] == second["deck_id"]
    assert first["reused_deck"] is False and second["reused_deck"] is True
    assert (first["remaining"], second["remaining"]) == (50, 47)
    assert len(first["cards"]) == 2 and len(second["cards"]) == 3
    codes = [c["code"] for c in first["cards"] + second["cards"]]
    assert len(set(codes)) == 5  # one deck: no card drawn twice
    assert deck.count("draw", first["deck_id"]) == 2

    other = draw(server.url, session_id())
    assert other["deck_id"] != first["deck_id"]
    assert other["remaining"] == 51
    assert deck.count("shuffle", "new") == 2
    # The first session still has its own deck.
    again = draw(server.url, session)
    assert (again["deck_id"], again["remaining"]) == (first["deck_id"], 46)


# --------------------------------------------------------------------------- 3. exhaustion


def test_exhausted_deck_is_a_result_and_shuffle_refills(server: Server, deck: DeckOfCards) -> None:
    session = session_id()
    full = draw(server.url, session, 52)
    assert len(full["cards"]) == 52 and full["remaining"] == 0
    assert "exhausted" not in full

    empty = draw(server.url, session, 1)
    assert empty["exhausted"] is True
    assert empty["cards"] == [] and empty["remaining"] == 0
    assert empty["message"] == "Not enough cards remaining to draw 1 additional"
    assert empty["deck_id"] == full["deck_id"]

    refilled = draw(server.url, session, 1, shuffle=True)
    assert deck.count("shuffle", full["deck_id"]) == 1
    assert refilled["deck_id"] == full["deck_id"]
    assert refilled["remaining"] == 51 and len(refilled["cards"]) == 1
    assert "exhausted" not in refilled
    assert deck.count("shuffle", "new") == 1  # refilled, not replaced


def test_partial_draw_keeps_the_cards_it_got(server: Server, deck: DeckOfCards) -> None:
    session = session_id()
    draw(server.url, session, 50)
    short = draw(server.url, session, 5)
    assert short["exhausted"] is True
    assert len(short["cards"]) == 2 and short["remaining"] == 0
    assert "5" in short["message"]


# --------------------------------------------------------------------------- 4. failures


def _runs(srv: Server, event_id: str) -> list[dict[str, Any]]:
    rows = srv.db_rows(
        "SELECT attempt, status, transient, error FROM action_runs WHERE event_id = ? ORDER BY id",
        (event_id,),
    )
    return [dict(r) for r in rows]


def test_transient_upstream_errors_are_retried(server: Server, httpserver: HTTPServer) -> None:
    jokes = DadJokes(fail_with=[503, 503])
    httpserver.expect_request("/", method="GET").respond_with_handler(jokes)
    event_id = accept(server.url, SEED["joke_request"])
    done = wait_event(server.url, event_id)

    assert done["event"]["status"] == "succeeded", done
    assert done["event"]["attempts"] == 3
    runs = done["runs"]
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert [r["status"] for r in runs] == ["failed", "failed", "succeeded"]
    assert [r["transient"] for r in runs] == [True, True, False]
    assert all("503" in r["error"] for r in runs[:2])
    assert runs[2]["output"]["joke"] == JOKE["joke"]
    assert len(jokes.requests) == 3
    assert [r["attempt"] for r in _runs(server, event_id)] == [1, 2, 3]


@pytest.mark.parametrize("status", [404, 400])
def test_permanent_upstream_error_is_dead_after_one_attempt(
    server: Server, httpserver: HTTPServer, status: int
) -> None:
    jokes = DadJokes(fail_with=[status] * 5)
    httpserver.expect_request("/", method="GET").respond_with_handler(jokes)
    done = wait_event(server.url, accept(server.url, SEED["joke_request"]))

    assert done["event"]["status"] == "dead", done
    assert str(status) in done["event"]["error"]
    (run,) = done["runs"]
    assert run["attempt"] == 1 and run["status"] == "failed" and run["transient"] is False
    # Give a wrongly scheduled retry the chance to show up before counting.
    time.sleep(0.4)
    assert len(jokes.requests) == 1
    assert len(_runs(server, done["event"]["id"])) == 1


def test_unknown_deck_is_dead_not_retried(server: Server, deck: DeckOfCards) -> None:
    env = card_event("", deck_id="doesnotexist1")
    done = wait_event(server.url, accept(server.url, env))
    assert done["event"]["status"] == "dead", done
    assert deck.calls == [("doesnotexist1", "draw", {"count": "1"})]
    (run,) = done["runs"]
    assert run["transient"] is False


def test_server_survives_and_answers_after_failures(server: Server, jokes: DadJokes) -> None:
    # After the dead and retried events above, the same process still serves and works.
    r = httpx.get(f"{server.url}/health", timeout=5)
    assert r.status_code == 200
    done = wait_event(server.url, accept(server.url, SEED["joke_request"]))
    assert done["event"]["status"] == "succeeded"
    assert server.proc is not None and server.proc.poll() is None


# --------------------------------------------------------------------------- 9. classic file

CLASSIC_CONFIG = ROOT / "webhook_config.json"
# The shape the classic file has (used when the engineer's file is not there yet).
EXPECTED_CLASSIC = {
    "server": {"host": "0.0.0.0", "port": 8000, "debug": False},
    "apis": {
        "dad_jokes": {
            "url": "https://icanhazdadjoke.com/",
            "headers": {"Accept": "application/json"},
        },
        "deck_of_cards": {"base_url": "https://deckofcardsapi.com/api"},
    },
    "security": {"max_payload_size": 1048576, "rate_limit": {"requests_per_minute": 600}},
    "logging": {"level": "INFO", "format": "json"},
}


@pytest.fixture
def classic_server(tmp_path: Path, httpserver: HTTPServer) -> Iterator[tuple[Server, str]]:
    if CLASSIC_CONFIG.exists():
        raw = json.loads(CLASSIC_CONFIG.read_text())
    else:
        raw = copy.deepcopy(EXPECTED_CLASSIC)
    for section in ("server", "apis", "security", "logging"):
        assert section in raw, f"webhook_config.json has no {section!r} section"
    assert isinstance(raw["security"]["max_payload_size"], int)
    assert raw["security"]["rate_limit"]["requests_per_minute"] > 0

    workdir = tmp_path / "classic"
    workdir.mkdir()
    port = free_port()
    raw["server"].update(host="127.0.0.1", port=port)
    for name, api in _apis(httpserver).items():
        raw["apis"].setdefault(name, {}).pop("url", None)
        raw["apis"][name].pop("base_url", None)
        raw["apis"][name].update(api)
    path = workdir / "webhook_config.json"
    path.write_text(json.dumps(raw, indent=2))
    token = f"classic-{uuid.uuid4().hex}"
    srv = Server(path, port, workdir).start(env={"NETHOOK_TOKEN": token})
    yield srv, token
    srv.stop()


def test_classic_webhook_config_serves_the_joke(
    classic_server: tuple[Server, str], jokes: DadJokes
) -> None:
    srv, token = classic_server
    # The store defaults to nethook.db beside the config file.
    assert srv.db_path.exists()
    assert not (srv.workdir / "nethook.token").exists()  # NETHOOK_TOKEN is the token

    assert post_event(srv.url, SEED["joke_request"]).status_code == 401  # not the test token
    r = post_event(srv.url, SEED["joke_request"], token=token)
    assert r.status_code == 202, r.text
    done = wait_event(srv.url, r.json()["id"])
    assert done["event"]["status"] == "succeeded", done
    assert done["runs"][0]["output"]["joke"] == JOKE["joke"]
    assert len(jokes.requests) == 1
    assert jokes.requests[0].headers.get("Accept") == "application/json"

    # The classic default source reads the generic envelope: anything else is a 400.
    bad = post_event(srv.url, {"data": {}}, token=token)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_payload"
    assert TOKEN not in r.text and token not in r.text + bad.text
    srv.wait_settled(10)


def test_concurrent_draws_of_one_new_session_share_a_deck(
    server: Server, httpserver: HTTPServer
) -> None:
    # A real game client sends draws back to back; the public API takes a while to answer,
    # so the events of one new session are processed side by side.
    deck = DeckOfCards(latency=0.15)
    httpserver.expect_request(re.compile(r"^/api/deck/"), method="GET").respond_with_handler(deck)
    session = session_id()
    ids = [accept(server.url, card_event(session)) for _ in range(4)]
    outs = []
    for event_id in ids:
        done = wait_event(server.url, event_id)
        assert done["event"]["status"] == "succeeded", done
        outs.append(done["runs"][0]["output"])
    assert deck.count("shuffle", "new") == 1
    assert len({o["deck_id"] for o in outs}) == 1
    assert sorted(o["remaining"] for o in outs) == [48, 49, 50, 51]


def test_session_whose_deck_expired_upstream_gets_a_new_deck(
    server: Server, deck: DeckOfCards
) -> None:
    session = session_id()
    first = draw(server.url, session, 1)
    del deck.decks[first["deck_id"]]  # deckofcardsapi forgets idle decks
    second = draw(server.url, session, 1)
    assert second["deck_id"] != first["deck_id"]
    assert second["remaining"] == 51
    third = draw(server.url, session, 1)
    assert third["deck_id"] == second["deck_id"] and third["remaining"] == 50
    # Same when the event asks for a reshuffle of the forgotten deck.
    del deck.decks[third["deck_id"]]
    fourth = draw(server.url, session, 1, shuffle=True)
    assert fourth["deck_id"] not in (first["deck_id"], second["deck_id"])
    assert fourth["remaining"] == 51
    assert deck.count("shuffle", "new") == 3
