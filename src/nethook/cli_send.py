"""``nethook send``: post a payload signed as a source's sender would, once or as a load test.

One request prints the status and the body; ``--count`` > 1 runs :func:`nethook.sender.load`
behind a progress bar and prints the rate and latency percentiles. Either way the exit code
is 0 only when every answer was 2xx. :mod:`nethook.cli` registers :func:`send` on the app.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .cli_base import ConfigOpt, console, err
from .cli_base import load_config as _load
from .exceptions import ConfigError


def send(
    file: Annotated[str, typer.Argument(help="JSON payload file, or - for stdin.")],
    config: ConfigOpt = None,
    source: Annotated[
        str, typer.Option(help="Source to post to (its auth signs the body).")
    ] = "default",
    url: Annotated[
        str | None, typer.Option(help="Base URL or full URL (default: from the config).")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Requests to send (load test when > 1).")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 1,
    cacert: Annotated[Path | None, typer.Option(help="CA file for HTTPS.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Skip TLS verification.")] = False,
) -> None:
    """Post a payload signed exactly as the source's sender would sign it."""
    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .sender import load, signed_request, source_url

    cfg = _load(config)
    try:
        body = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        target = url if url and "/" in url.split("://", 1)[-1] else source_url(cfg, source, url)
        src = (cfg.sources or {})[source]
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]cannot read {file}:[/red] {exc.strerror}")
        raise typer.Exit(2) from None
    verify: bool | str = False if insecure else (str(cacert) if cacert else True)
    if count == 1:
        headers, payload = signed_request(src, body)
        try:
            resp = httpx.post(target, content=payload, headers=headers, timeout=30, verify=verify)
        except httpx.HTTPError as exc:
            err.print(f"[red]{target}: {exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"{resp.status_code} {target}")
        console.print(resp.text)
        raise typer.Exit(0 if resp.is_success else 1)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"POST {target}", total=count)
        report = asyncio.run(
            load(target, src, body, count, concurrency, verify, lambda n: bar.advance(task, n))
        )
    table = Table("requests", "req/s", "p50 ms", "p99 ms", "statuses", title="nethook send")
    table.add_row(
        str(report.count),
        f"{report.rate:,.0f}",
        f"{report.percentile(50) * 1000:.2f}",
        f"{report.percentile(99) * 1000:.2f}",
        ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items())),
    )
    console.print(table)
    limited = report.statuses.get("429", 0)
    if limited:
        # A load test from one address meets the per-client rate limit first: say so,
        # rather than leave 429s looking like a failure of the server.
        err.print(
            f"[yellow]{limited} requests were rate-limited (429)[/yellow]: the source allows "
            "security.rate_limit (or its own rate_limit) per client address; raise "
            "requests_per_minute and burst, or set enabled: false, on a test server."
        )
    ok = sum(v for k, v in report.statuses.items() if k.startswith("2"))
    raise typer.Exit(0 if ok == report.count else 1)
