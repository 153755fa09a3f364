"""The ``nethook`` command (Typer + Rich). Every option also reads a ``NETHOOK_*`` variable."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from . import config as config_mod
from .config import Config
from .exceptions import ConfigError, NethookError

app = typer.Typer(
    help="nethook: webhooks and syslog in, rules, network actions out.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
events_app = typer.Typer(help="Inspect and replay stored events.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(events_app, name="events")

console = Console(soft_wrap=True)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="NETHOOK_CONFIG",
        help="Config file (YAML or JSON). Default: the embedded default in this folder.",
    ),
]


def _load(path: Path | None) -> Config:
    try:
        return config_mod.load(path) if path is not None else config_mod.default_config()
    except ConfigError as exc:
        err.print(f"[red]config error[/red] in {path or 'the default config'}:")
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None


def _safe_url(url: str) -> str:
    from .store.pg_schema import safe_url

    return safe_url(url)


def _default_token(cfg: Config) -> str | None:
    """The generated token of a ``default`` source that uses the token file, if any."""
    src = (cfg.sources or {}).get("default")
    if src is None or src.auth is None or src.auth.type != "token":
        return None
    if src.auth.secret_file is not None and src.auth.secret_file.name == config_mod.TOKEN_FILE_NAME:
        return config_mod.ensure_token_file(src.auth.secret_file)
    return None


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"nethook {__version__}")


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(envvar="NETHOOK_HOST")] = None,
    port: Annotated[int | None, typer.Option(envvar="NETHOOK_PORT")] = None,
    workers: Annotated[
        int,
        typer.Option(envvar="NETHOOK_WORKERS", help="Dispatcher slots multiplier in this process."),
    ] = 1,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Ingress only.")] = False,
    log_format: Annotated[
        str | None, typer.Option(envvar="NETHOOK_LOG_FORMAT", help="json or console")
    ] = None,
) -> None:
    """Run the HTTP service (ingress, API, and in-process workers)."""
    import uvicorn

    from . import logs
    from .app import create_app

    cfg = _load(config)
    token = _default_token(cfg)
    server_cfg = cfg.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    cfg = cfg.model_copy(update={"server": server_cfg})
    logs.configure(cfg.logging, log_format)
    try:
        application = create_app(cfg, workers=0 if no_workers else workers, config_path=config)
    except ConfigError as exc:
        err.print("[red]config error:[/red]")
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None
    scheme = "https" if server_cfg.tls else "http"
    shown_host = "127.0.0.1" if server_cfg.host in ("0.0.0.0", "::") else server_cfg.host
    url = f"{scheme}://{shown_host}:{server_cfg.port}"
    console.print(
        f"[bold]nethook {__version__}[/bold] on {url}  (store: {_safe_url(cfg.store.url)})"
    )
    if token is not None:
        console.print(
            f"token for source 'default' (saved in {config_mod.TOKEN_FILE_NAME}, mode 0600):"
            f" [bold]{token}[/bold]"
        )
        console.print(
            f"try: curl -s -X POST {url}/events -H 'Content-Type: application/json' "
            f"-H 'X-Webhook-Token: {token}' "
            """-d '{"event":"joke_request","data":{"user_id":"me"}}'"""
        )
    sys.stdout.flush()
    from .runtime import config_warnings
    from .security.tls import uvicorn_options

    for warning in config_warnings(cfg):
        err.print(f"[yellow]warning:[/yellow] {warning}")
    try:
        ssl = uvicorn_options(server_cfg.tls)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None
    from .server import protocol_class

    uv = uvicorn.Config(
        application,
        http=protocol_class(server_cfg.max_header_bytes, server_cfg.request_timeout),
        # nethook reads X-Forwarded-For itself, only from security.trusted_proxies; uvicorn's
        # own rewrite would trust any loopback peer.
        proxy_headers=False,
        host=server_cfg.host,
        port=server_cfg.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=int(server_cfg.keepalive_timeout),
        limit_concurrency=server_cfg.limit_concurrency,
        h11_max_incomplete_event_size=server_cfg.max_header_bytes,
        lifespan="on",
        **ssl,
    )
    uvicorn.Server(uv).run()


@app.command()
def worker(
    config: ConfigOpt = None,
    workers: Annotated[
        int, typer.Option(envvar="NETHOOK_WORKERS", help="Dispatcher slots multiplier.")
    ] = 1,
    log_format: Annotated[str | None, typer.Option(envvar="NETHOOK_LOG_FORMAT")] = None,
) -> None:
    """Run a dispatcher only (no HTTP): claims and processes events from the store."""
    from . import logs
    from .runtime import Runtime
    from .service import Service
    from .store import open_store

    cfg = _load(config)
    logs.configure(cfg.logging, log_format)
    try:
        runtime = Runtime.build(cfg)
    except ConfigError as exc:
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None

    async def main() -> None:
        service = Service(runtime, open_store(cfg.store), workers=max(1, workers), ingress=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if config is not None:
            loop.add_signal_handler(signal.SIGHUP, lambda: _reload(service, config))
        await service.start()
        assert service.dispatcher is not None
        console.print(
            f"nethook worker {service.dispatcher.owner} running (store: {_safe_url(cfg.store.url)})"
        )
        await stop.wait()
        await service.stop()

    asyncio.run(main())


def _reload(service: Any, path: Path) -> None:
    """Re-read the config file and swap rules; a bad file keeps the running config."""
    import structlog

    rlog = structlog.get_logger("nethook.reload")
    try:
        service.reload(config_mod.load(path))
    except ConfigError as exc:
        rlog.error("reload.refused", errors=exc.errors, config=str(path))


@app.command()
def reload(
    config: ConfigOpt = None,
    url: Annotated[
        str | None, typer.Option(envvar="NETHOOK_URL", help="Server URL (default from the config).")
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="NETHOOK_ADMIN_TOKEN")] = None,
) -> None:
    """Ask a running server to re-read its config file (same as SIGHUP)."""
    import httpx

    cfg = _load(config)
    scheme = "https" if cfg.server.tls else "http"
    host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::") else cfg.server.host
    base = url or f"{scheme}://{host}:{cfg.server.port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.post(f"{base}/api/reload", headers=headers, timeout=30, verify=False)
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach {base}:[/red] {exc}")
        raise typer.Exit(1) from None
    body = (
        resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    )
    if resp.status_code == 200:
        console.print(f"reloaded: {body.get('rules')} rules, sources {body.get('sources')}")
        return
    err.print(f"[red]reload refused ({resp.status_code}):[/red] {body.get('detail', resp.text)}")
    for line in body.get("errors", []):
        err.print(f"  - {line}")
    raise typer.Exit(2)


rules_app = typer.Typer(
    help="Try rules against an event without running anything.", no_args_is_help=True
)
app.add_typer(rules_app, name="rules")


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


STARTER = """\
# nethook configuration. Reference: docs/config.md
server: {{host: {host}, port: {port}{tls}}}
store: {{url: "sqlite:///nethook.db", data_dir: nethook-data}}
security: {{max_payload_size: 1048576, rate_limit: {{requests_per_minute: 600}}}}
logging: {{level: INFO, format: json}}
apis:
  dad_jokes: {{url: "https://icanhazdadjoke.com/", headers: {{Accept: application/json}}}}
  deck_of_cards: {{base_url: "https://deckofcardsapi.com/api"}}
sources:
  default:                       # POST /events
    format: envelope
    auth: {{type: token, header: X-Webhook-Token, secret: "${{NETHOOK_TOKEN:-{token}}}"}}
rules:
  - name: tell a joke
    on: {{type: joke_request}}
    do:
      - joke: {{}}
  - name: draw cards
    on: {{type: card_draw}}
    do:
      - card_draw:
          deck_id: "{{{{ event.data.deck_id | default('new') }}}}"
          count: "{{{{ event.data.count | default(1) }}}}"
          game_session: "{{{{ event.data.game_session | default('') }}}}"
  - name: device status check
    on: {{type: device_status_check}}
    do:
      - log: {{message: "status check for {{{{ event.data.device_ip }}}}: {{{{ event.data.command }}}}"}}
"""


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("nethook.yml"),
    port: int = 8000,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    self_signed: Annotated[
        str | None,
        typer.Option(
            "--self-signed",
            metavar="HOSTNAME",
            help="Also write a key and a self-signed certificate for HOSTNAME and serve HTTPS.",
        ),
    ] = None,
    mtls: Annotated[
        bool,
        typer.Option(
            "--mtls",
            help="With --self-signed: also a client CA and a client certificate; "
            "the server then requires client certificates.",
        ),
    ] = False,
) -> None:
    """Write a starter config with a random token and print a ready curl line."""
    if path.exists() and not force:
        err.print(f"{path} exists; use --force to overwrite")
        raise typer.Exit(1)
    if mtls and not self_signed:
        err.print("--mtls needs --self-signed HOSTNAME")
        raise typer.Exit(2)
    token = secrets.token_urlsafe(24)
    tls, host, curl_tls, scheme = "", "127.0.0.1", "", "http"
    if self_signed:
        from .security import tls as tls_mod

        folder = path.resolve().parent / "tls"
        key, cert = tls_mod.write_pem(folder, "server", tls_mod.self_signed(self_signed))
        tls = f", tls: {{certfile: tls/{cert.name}, keyfile: tls/{key.name}"
        curl_tls = f" --cacert {cert}"
        if mtls:
            ca = tls_mod.make_ca()
            _ca_key, ca_cert = tls_mod.write_pem(folder, "client-ca", ca)
            c_key, c_cert = tls_mod.write_pem(
                folder, "client", tls_mod.client_cert(ca, "nethook-client")
            )
            tls += f", client_ca: tls/{ca_cert.name}"
            curl_tls += f" --cert {c_cert} --key {c_key}"
        tls += "}"
        host, scheme = "0.0.0.0", "https"
        console.print(f"wrote TLS files under {folder} (keys mode 0600)")
    path.write_text(STARTER.format(token=token, port=port, host=host, tls=tls), encoding="utf-8")
    path.chmod(0o600)
    shown = self_signed or "127.0.0.1"
    console.print(f"wrote {path} (mode 0600). Start it with: nethook serve --config {path}")
    console.print(
        f"then: curl -s{curl_tls} -X POST {scheme}://{shown}:{port}/events "
        f"-H 'Content-Type: application/json' -H 'X-Webhook-Token: {token}' "
        """-d '{"event":"joke_request","data":{"user_id":"me"}}'"""
    )


@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument(help="Config file to check.")]) -> None:
    """Validate a config file: prints OK, or every error naming its key (exit 2)."""
    from .runtime import Runtime

    cfg = _load(path)
    try:
        Runtime.build(cfg)
    except ConfigError as exc:
        err.print(f"[red]config error[/red] in {path}:")
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None
    from .runtime import config_warnings

    for warning in config_warnings(cfg):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"OK: {path} ({len(cfg.sources or {})} sources, {len(cfg.rules or [])} rules)")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown, generated from the models)."""
    from .config_doc import reference

    sys.stdout.write(reference())


@app.command()
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
    ok = sum(v for k, v in report.statuses.items() if k.startswith("2"))
    raise typer.Exit(0 if ok == report.count else 1)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path(
        "nethook-demo"
    ),
    port: Annotated[int | None, typer.Option(help="HTTP port (default: a free one).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop after the tour (CI).")] = False,
) -> None:
    """Run nethook with a simulated router and local API stand-ins, send events, show results."""
    from .demo import run

    raise typer.Exit(run(workdir, port, once, console))


# --------------------------------------------------------------------------- events


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


def _register_parts() -> None:
    """Sub-commands that live beside their part (devices, syslog/EEM, store admin)."""
    import importlib

    for name, target in (
        ("inventory", "nethook.devices.cli:inventory_app"),
        ("eem", "nethook.eem:eem_app"),
        ("db", "nethook.store.cli:db_app"),
    ):
        module, _, attr = target.partition(":")
        try:
            sub = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the part exists but its own import failed: say so
                raise
            continue
        app.add_typer(sub, name=name)


_register_parts()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        app()


if __name__ == "__main__":
    main()
