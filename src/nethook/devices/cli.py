"""``nethook inventory list`` and ``nethook inventory check``.

``check`` logs in to every selected device at once (bounded by ``devices.fanout``) behind
a progress bar, and prints reachability, the platform, the prompt and the login latency.
It exits 1 when a device is unreachable, so it can gate a deployment.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import Config, DevicesConfig
from ..exceptions import ConfigError, NethookError
from .inventory import Device, Inventory

inventory_app = typer.Typer(help="List and check the device inventory.", no_args_is_help=True)
console = Console(soft_wrap=True)
err = Console(stderr=True)

# Kept here rather than imported from nethook.cli: that module imports this one while it
# is still being built (see cli._register_parts).
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="NETHOOK_CONFIG", help="Config file naming `inventory`."),
]
InventoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        envvar="NETHOOK_INVENTORY",
        help="Inventory file (nethook or Ansible YAML); overrides the config's.",
    ),
]


def _load(config: Path | None, inventory: Path | None) -> tuple[Inventory, DevicesConfig]:
    from .. import config as config_mod
    from . import inventory as inventory_mod

    try:
        cfg: Config | None = config_mod.load(config) if config is not None else None
        path = inventory or (cfg.inventory if cfg is not None else None)
        if path is None:
            err.print("[red]no inventory:[/red] give --inventory FILE or a --config naming one")
            raise typer.Exit(2)
        return inventory_mod.load(path), cfg.devices if cfg is not None else DevicesConfig()
    except ConfigError as exc:
        err.print("[red]config error:[/red]")
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None


def _select(inv: Inventory, group: str | None, tag: str | None) -> list[Device]:
    if group is None and tag is None:
        return list(inv)
    try:
        return inv.select(group=group, tag=tag)
    except NethookError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@inventory_app.command("list")
def list_devices(
    config: ConfigOpt = None,
    inventory: InventoryOpt = None,
    group: Annotated[str | None, typer.Option(help="Only this group.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only devices with this tag.")] = None,
) -> None:
    """Print the devices: name, address, platform, groups, tags (never credentials)."""
    inv, _ = _load(config, inventory)
    devices = _select(inv, group, tag)
    table = Table(title=f"{len(devices)} devices ({inv.source})")
    for col in ("device", "host", "port", "platform", "groups", "tags"):
        table.add_column(col)
    for d in devices:
        table.add_row(
            d.name, d.host, str(d.port), d.platform, ", ".join(d.groups), ", ".join(d.tags)
        )
    console.print(table)


@dataclass(frozen=True, slots=True)
class Probe:
    """One device's answer to ``inventory check``."""

    device: Device
    ok: bool
    prompt: str = ""
    latency: float = 0.0
    error: str = ""


def probe_device(device: Device, cfg: DevicesConfig) -> Probe:
    """Log in, read the prompt, log out (blocking; run in a thread)."""
    from .netmiko_transport import netmiko_connect, quiet_disconnect

    started = time.monotonic()
    try:
        conn = netmiko_connect(device, device.credentials(), cfg)
    except NethookError as exc:
        return Probe(device, False, latency=time.monotonic() - started, error=str(exc))
    try:
        prompt = str(conn.find_prompt())
    except Exception as exc:  # a login that cannot show a prompt is not reachable enough
        return Probe(device, False, latency=time.monotonic() - started, error=repr(exc))
    finally:
        quiet_disconnect(conn)
    return Probe(device, True, prompt=prompt, latency=time.monotonic() - started)


async def check_all(devices: list[Device], cfg: DevicesConfig, on_done: Any = None) -> list[Probe]:
    """Probe every device, at most ``cfg.fanout`` at once; results in inventory order."""
    limit = asyncio.Semaphore(cfg.fanout)

    async def one(d: Device) -> Probe:
        async with limit:
            result = await asyncio.to_thread(probe_device, d, cfg)
        if on_done is not None:
            on_done(result)
        return result

    return list(await asyncio.gather(*(one(d) for d in devices)))


@inventory_app.command("check")
def check(
    config: ConfigOpt = None,
    inventory: InventoryOpt = None,
    group: Annotated[str | None, typer.Option(help="Only this group.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only devices with this tag.")] = None,
) -> None:
    """Log in to every device concurrently: reachability, platform, prompt, latency."""
    inv, cfg = _load(config, inventory)
    devices = _select(inv, group, tag)
    with Progress(
        TextColumn("[bold]checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(devices))

        def done(p: Probe) -> None:
            progress.update(task, advance=1, description=p.device.name)

        results = asyncio.run(check_all(devices, cfg, done))
    table = Table(title=f"inventory check: {len(devices)} devices")
    for col in ("device", "host", "reachable", "platform", "prompt", "latency ms", "error"):
        table.add_column(col, justify="right" if col == "latency ms" else "left")
    for p in results:
        table.add_row(
            p.device.name,
            f"{p.device.host}:{p.device.port}",
            "[green]yes[/green]" if p.ok else "[red]no[/red]",
            p.device.platform,
            p.prompt,
            f"{p.latency * 1000:.0f}",
            p.error,
        )
    console.print(table)
    down = sum(not p.ok for p in results)
    if down:
        err.print(f"[red]{down} of {len(results)} devices unreachable[/red]")
        raise typer.Exit(1)
