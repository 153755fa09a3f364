"""``emit``: post a new event into the pipeline (rule chaining).

A rule can turn one event into another (``syslog`` -> ``interface_down``) so that other
rules react to the derived event. Each emitted event is one level deeper than the event
that emitted it; past ``dispatcher.max_emit_depth`` the action refuses, so two rules that
emit each other's events (a loop) stop after a bounded number of hops with a clear error
instead of filling the store.

Example::

    - emit: {type: interface_down, data: {device: "{{ event.data.device }}"}}
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..events import EventDraft
from ..exceptions import PermanentError
from .base import Action, ActionContext, ActionResult, Options


class EmitOptions(Options):
    type: str = Field(..., min_length=1, max_length=200)
    data: Any = None
    #: Default: the source of the event being processed.
    source: str | None = Field(None, min_length=1, max_length=200)


def emit_delivery_id(event_id: str, step: str) -> str:
    """The emitted event's delivery id: one per (emitting event, step).

    Delivery is at-least-once: after a crash between the append and the recorded result
    the step runs again. The store keeps one event per (source, delivery id), so the retry
    finds the first emitted event instead of creating a twin.
    """
    return f"emit:{event_id}:{step}"


class EmitAction(Action):
    name = "emit"
    Options = EmitOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        depth = ctx.event.depth + 1
        limit = ctx.config.dispatcher.max_emit_depth
        if depth > limit:
            raise PermanentError(
                f"emit {opts.type!r}: chain depth {depth} would exceed "
                f"dispatcher.max_emit_depth={limit} (event {ctx.event.id} is at depth "
                f"{ctx.event.depth}); rules emitting each other's events form a loop?"
            )
        source = opts.source or ctx.event.source
        result = await ctx.store.append(
            EventDraft(
                source=source,
                type=opts.type,
                data=opts.data if opts.data is not None else {},
                delivery_id=emit_delivery_id(ctx.event.id, ctx.step),
                meta={"emitted_by": ctx.event.id, "rule": ctx.rule},
                depth=depth,
            )
        )
        ctx.log.info("emit.appended", emitted=result.id, type=opts.type, depth=depth)
        return ActionResult(
            ok=True,
            output={
                "id": result.id,
                "type": opts.type,
                "source": source,
                "depth": depth,
                "duplicate": result.duplicate,
            },
        )
