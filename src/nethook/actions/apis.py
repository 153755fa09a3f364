"""The classic lab APIs: Dad Jokes (``joke``) and Deck of Cards (``card_draw``).

Both URLs come from the config's ``apis`` section so tests and offline demos point them at
local stand-ins; the client code is the same one that talks to the public services.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

from pydantic import Field, field_validator

from ..config import ApiConfig
from ..exceptions import PermanentError, TransientError
from .base import Action, ActionContext, ActionResult, ArtifactData, Options
from .http import check_status, send

DAD_JOKES_URL = "https://icanhazdadjoke.com/"
DECK_OF_CARDS_URL = "https://deckofcardsapi.com/api"
# icanhazdadjoke asks API users to identify themselves with a User-Agent.
USER_AGENT = "nethook (https://github.com/nethook/nethook)"
DECK_NAMESPACE = "card_draw.deck"
# One lock per game session in this process, so that draws of a new session that arrive
# together share one deck instead of each creating its own (held only while in use).
_SESSION_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _session_lock(session: str | None) -> Any:
    if not session:
        return contextlib.nullcontext()
    lock = _SESSION_LOCKS.get(session)
    if lock is None:
        lock = _SESSION_LOCKS[session] = asyncio.Lock()
    return lock


class _DeckGone(PermanentError):
    """The Deck of Cards API does not know this deck id (404)."""


def _api(ctx: ActionContext, name: str) -> ApiConfig:
    return ctx.config.apis.get(name) or ApiConfig()


class JokeOptions(Options):
    pass


class JokeAction(Action):
    """GET a random joke as JSON from the Dad Jokes API."""

    name = "joke"
    Options = JokeOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        api = _api(ctx, "dad_jokes")
        url = api.url or api.base_url or DAD_JOKES_URL
        headers = {"User-Agent": USER_AGENT, **api.headers, "Accept": "application/json"}
        resp = await send(ctx.http, "GET", url, headers=headers, timeout=api.timeout)
        check_status(resp)
        try:
            body = resp.json()
            joke = body["joke"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(f"{url}: answer is not a Dad Jokes JSON object") from exc
        return ActionResult(
            ok=True,
            output={"id": body.get("id"), "joke": joke},
            artifacts=(ArtifactData("joke.json", resp.content, "application/json"),),
        )


class CardDrawOptions(Options):
    deck_id: str | None = None
    count: int = Field(1, ge=1, le=52)
    game_session: str | None = None
    shuffle: bool = False

    @field_validator("deck_id", "game_session", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if v in ("", None) else str(v)

    @field_validator("deck_id")
    @classmethod
    def _safe_deck_id(cls, v: str | None) -> str | None:
        # The id goes into a URL path: keep it to the API's own alphabet.
        if v is not None and v != "new" and not v.isalnum():
            raise ValueError("deck_id must be alphanumeric (or 'new')")
        return v


class CardDrawAction(Action):
    """Draw cards; a game session keeps its deck across events (stored in the kv table)."""

    name = "card_draw"
    Options = CardDrawOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        api = _api(ctx, "deck_of_cards")
        base = (api.base_url or api.url or DECK_OF_CARDS_URL).rstrip("/")
        if base.endswith("/deck"):  # accept both ".../api" and ".../api/deck"
            base = base[: -len("/deck")]
        artifacts: list[ArtifactData] = []

        async def get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            resp = await send(
                ctx.http,
                "GET",
                f"{base}{path}",
                params=params,
                headers=api.headers,
                timeout=api.timeout,
            )
            artifacts.append(
                ArtifactData(f"deck{path.replace('/', '_')}.json", resp.content, "application/json")
            )
            if resp.status_code == 404:
                raise _DeckGone(f"deck not found ({path})")
            check_status(resp)
            try:
                body = resp.json()
            except ValueError as exc:
                raise TransientError(f"{base}{path}: answer is not JSON") from exc
            if not isinstance(body, dict):
                raise PermanentError(f"{base}{path}: unexpected answer")
            return body

        async def new_deck() -> str:
            created = await get("/deck/new/shuffle/", {"deck_count": 1})
            return str(created["deck_id"])

        async with _session_lock(opts.game_session):
            deck_id = opts.deck_id if opts.deck_id != "new" else None
            reused = False
            if deck_id is None and opts.game_session:
                deck_id = await ctx.store.kv_get(DECK_NAMESPACE, opts.game_session)
                reused = deck_id is not None
            try:
                if deck_id is None:
                    deck_id = await new_deck()
                elif opts.shuffle:
                    await get(f"/deck/{deck_id}/shuffle/")
                if opts.game_session:
                    # One deck per game session, kept for a day of play.
                    await ctx.store.kv_set(DECK_NAMESPACE, opts.game_session, deck_id, ttl=86400)
                drawn = await get(f"/deck/{deck_id}/draw/", {"count": opts.count})
            except _DeckGone:
                if not reused:
                    raise
                # The session's deck is gone upstream (the API forgets idle decks): a new one.
                deck_id, reused = await new_deck(), False
                await ctx.store.kv_set(DECK_NAMESPACE, opts.game_session, deck_id, ttl=86400)
                drawn = await get(f"/deck/{deck_id}/draw/", {"count": opts.count})

        cards = [
            {
                "code": c.get("code"),
                "value": c.get("value"),
                "suit": c.get("suit"),
                "image": c.get("image"),
            }
            for c in drawn.get("cards") or []
        ]
        remaining = drawn.get("remaining")
        output: dict[str, Any] = {
            "deck_id": deck_id,
            "game_session": opts.game_session,
            "reused_deck": reused,
            "cards": cards,
            "remaining": remaining,
        }
        if not drawn.get("success", True) or len(cards) < opts.count:
            # Not a crash and not worth retrying: the deck is simply empty.
            output["exhausted"] = True
            output["message"] = drawn.get("error") or (
                f"deck {deck_id} is exhausted: asked for {opts.count}, got {len(cards)}; "
                "send shuffle: true to reshuffle it"
            )
        return ActionResult(ok=True, output=output, artifacts=tuple(artifacts))
