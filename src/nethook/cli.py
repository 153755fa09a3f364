"""The ``nethook`` command (Typer + Rich). Every option also reads a ``NETHOOK_*`` variable.

This module builds the app and holds the commands that run and set up nethook (version,
serve, worker, reload, init, config, demo). The other command groups live in their own
modules and are registered here: ``events`` (:mod:`nethook.cli_events`), ``rules``
(:mod:`nethook.cli_rules`), ``send`` (:mod:`nethook.cli_send`), and the parts' sub-apps
(inventory, eem, db) beside their parts, see :func:`_register_parts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from . import config as config_mod

# console, err and _load are also imported from here by store/cli.py: keep the names.
from .cli_base import ConfigOpt, console, err
from .cli_base import load_config as _load
from .cli_events import events_app
from .cli_rules import rules_app
from .cli_send import send
from .config import Config
from .exceptions import ConfigError

app = typer.Typer(
    help="nethook: webhooks and syslog in, rules, network actions out.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
# Sub-apps are listed in `nethook --help` in the order they are added.
app.add_typer(config_app, name="config")
app.add_typer(events_app, name="events")
app.add_typer(rules_app, name="rules")


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


# Commands are listed in `nethook --help` in registration order: send goes before demo.
app.command()(send)


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
