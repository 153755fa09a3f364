"""``nethook events``: list, show, replay and purge the events in the configured store.

Each command opens the store for its one call and closes it again, so it works beside a
running server (the server's workers pick up what ``replay`` queues).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from .cli_base import ConfigOpt, console, err
from .cli_base import load_config as _load
from .config import Config
from .exceptions import NethookError

events_app = typer.Typer(help="Inspect and replay stored events.", no_args_is_help=True)


def _with_store(cfg: Config, fn: Any) -> Any:
    from .store import open_store

    async def main() -> Any:
        store = open_store(cfg.store)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except NethookError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@events_app.command("list")
def events_list(
    config: ConfigOpt = None,
    status: Annotated[str | None, typer.Option()] = None,
    type: Annotated[str | None, typer.Option("--type")] = None,
    source: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List events, newest first."""
    from datetime import datetime

    from .store.base import EventFilter

    cfg = _load(config)
    events = _with_store(
        cfg,
        lambda s: s.list_events(EventFilter(status=status, type=type, source=source, limit=limit)),
    )
    if as_json:
        sys.stdout.write(orjson.dumps([e.as_dict() for e in events]).decode() + "\n")
        return
    table = Table("id", "received", "source", "type", "status", "attempts", "error")
    colors = {"succeeded": "green", "dead": "red", "queued": "yellow", "running": "cyan"}
    for e in events:
        color = colors.get(str(e.status), "white")
        table.add_row(
            e.id,
            datetime.fromtimestamp(e.received_at).strftime("%Y-%m-%d %H:%M:%S"),
            e.source,
            e.type,
            f"[{color}]{e.status}[/{color}]",
            str(e.attempts),
            (e.error or "")[:60],
        )
    console.print(table)


@events_app.command("show")
def events_show(event_id: str, config: ConfigOpt = None) -> None:
    """Show one event with its action runs and artifacts (JSON)."""
    cfg = _load(config)

    async def fetch(store: Any) -> Any:
        event = await store.get_event(event_id)
        if event is None:
            return None
        return {
            "event": event.as_dict(),
            "runs": [r.as_dict() for r in await store.list_runs(event_id)],
            "artifacts": [a.as_dict() for a in await store.list_artifacts(event_id)],
        }

    data = _with_store(cfg, fetch)
    if data is None:
        err.print(f"no event {event_id}")
        raise typer.Exit(1)
    console.print_json(orjson.dumps(data).decode())


@events_app.command("replay")
def events_replay(event_id: str, config: ConfigOpt = None) -> None:
    """Queue a fresh copy of an event; a running server's workers pick it up."""
    cfg = _load(config)
    result = _with_store(cfg, lambda s: s.replay(event_id))
    if result is None:
        err.print(f"no event {event_id}")
        raise typer.Exit(1)
    console.print(f"queued {result.id} (replay of {event_id})")


@events_app.command("purge")
def events_purge(
    config: ConfigOpt = None,
    older_than_days: Annotated[
        float | None, typer.Option("--older-than-days", min=0, help="Age limit in days.")
    ] = None,
    keep: Annotated[
        int | None, typer.Option("--keep", min=0, help="Keep at most the newest N events.")
    ] = None,
) -> None:
    """Delete finished events (and their runs and artifact files) by age and/or count now.

    Defaults come from store.retention; queued and running events are never purged.
    """
    from .store.retention import purge_once

    cfg = _load(config)
    age = older_than_days if older_than_days is not None else cfg.store.retention.max_age_days
    count = keep if keep is not None else cfg.store.retention.max_events
    if age is None and count is None:
        err.print(
            "nothing to purge by: give --older-than-days and/or --keep, or set store.retention"
        )
        raise typer.Exit(2)
    result = _with_store(cfg, lambda s: purge_once(s, cfg.store.data_dir, age, count))
    console.print(
        f"purged {result.events} events, {len(result.artifact_paths)} artifact files, "
        f"{result.kv} expired kv entries"
    )
