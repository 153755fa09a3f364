"""``log``: write a line to nethook's log (and keep it as the step's output)."""

from __future__ import annotations

from typing import Any, Literal

from .base import Action, ActionContext, ActionResult, Options


class LogOptions(Options):
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"


class LogAction(Action):
    name = "log"
    Options = LogOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        getattr(ctx.log, opts.level)("rule.log", message=opts.message)
        return ActionResult(ok=True, output={"message": opts.message, "level": opts.level})
