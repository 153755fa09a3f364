"""``nethook rules test``: a dry run of the rulebook against one event.

It builds the runtime from the config, asks the rulebook why each rule does or does not
match, and renders the matching rules' action arguments; no action runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from .cli_base import ConfigOpt, console, err
from .cli_base import load_config as _load
from .exceptions import ConfigError

rules_app = typer.Typer(
    help="Try rules against an event without running anything.", no_args_is_help=True
)


@rules_app.command("test")
def rules_test(
    event_file: Annotated[Path, typer.Argument(help="Event JSON: an envelope or a stored event.")],
    config: ConfigOpt = None,
    source: Annotated[str, typer.Option(help="Source name the event arrives on.")] = "default",
) -> None:
    """Show which rules match EVENT_FILE, why the others do not, and the rendered actions."""
    import time as _time

    from .engine.rules import names_for
    from .events import Event, EventStatus
    from .exceptions import PermanentError
    from .runtime import Runtime

    cfg = _load(config)
    try:
        runtime = Runtime.build(cfg)
        raw = orjson.loads(
            sys.stdin.buffer.read() if str(event_file) == "-" else event_file.read_bytes()
        )
    except ConfigError as exc:
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        err.print(f"[red]cannot read {event_file}:[/red] {exc}")
        raise typer.Exit(2) from None
    if not isinstance(raw, dict):
        err.print("the event must be a JSON object")
        raise typer.Exit(2)
    event = Event(
        id=str(raw.get("id") or "test-event"),
        source=str(raw.get("source_name") or source),
        type=str(raw.get("type") or raw.get("event") or "webhook"),
        timestamp=str(raw.get("timestamp") or ""),
        received_at=_time.time(),
        data=raw.get("data", {}),
        meta=raw.get("meta") or {},
        status=EventStatus.RUNNING,
    )
    console.print(f"event type [bold]{event.type}[/bold] from source [bold]{event.source}[/bold]")
    matched = 0
    for verdict in runtime.rulebook.explain(event):
        rule = verdict.rule
        if not verdict.matched:
            console.print(f"  [red]no[/red]   {rule.name}: {verdict.reason}")
            continue
        matched += 1
        extra = (
            f" (storm control: {rule.policy.mode.value} {rule.policy.window:g}s)"
            if rule.policy
            else ""
        )
        console.print(f"  [green]yes[/green]  {rule.name}{extra}")
        names = names_for(event, runtime.rulebook.variables)
        for step in rule.steps:
            try:
                args = step.render(names)
                rendered = orjson.dumps(args, default=str).decode()
            except PermanentError as exc:
                rendered = f"[red]render error: {exc}[/red]"
            cond = f" when {step.when.source}" if step.when else ""
            console.print(f"         {step.index}. {step.action}{cond}: {rendered}")
    console.print(f"{matched} of {len(runtime.rulebook.rules)} rules match; nothing was run.")
