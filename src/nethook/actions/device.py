"""``device.command``, ``device.backup``, ``device.configure``: CLI over warm SSH sessions.

Each action targets one device (``device: r1`` -- a name, host name or IP from the
inventory) or several (``devices: [...]``, ``group: core``, ``tag: edge``, combinable).
A single ``device`` gives that device's result as the step output; any other target fans
out with at most ``devices.fanout`` devices at a time and gives one result per device::

    {"devices": {"r1": {"ok": true, ...}, "r2": {"ok": false, "error": "..."}},
     "succeeded": ["r1"], "failed": ["r2"], "count": 2}

A fan-out step fails when any device failed (``partial_ok: true``: when all failed); it is
retried only when every failure was transient (and, for ``device.configure``, no device
was changed yet). Every command passes the command policy first (see
:mod:`nethook.devices.policy`); a refusal is logged as ``security.command_refused``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..devices.backups import BackupStore
from ..devices.inventory import Device
from ..devices.policy import CommandPolicy, CommandRefused, check_config_line, shown
from ..exceptions import PermanentError, TransientError
from .base import Action, ActionContext, ActionResult, ArtifactData, Options

#: Output kept in the stored step output; the artifact always has all of it.
MAX_OUTPUT_TEXT = 64 * 1024
#: What IOS-style CLIs print when they refuse a command.
REJECTED = re.compile(
    r"^\s*% ?(?:Invalid input|Incomplete command|Ambiguous command|Unknown command|"
    r"Invalid command|Bad command)",
    re.MULTILINE,
)
#: The command that prints the running config, per Netmiko platform.
RUNNING_CONFIG = {"juniper_junos": "show configuration", "juniper": "show configuration"}
DEFAULT_RUNNING_CONFIG = "show running-config"


# --------------------------------------------------------------------------- shared helpers


class TargetOptions(Options):
    """Which devices an action runs on."""

    device: str | None = None
    devices: list[str] | None = None
    group: str | None = None
    tag: str | None = None
    partial_ok: bool = False
    read_timeout: float | None = Field(None, gt=0, le=3600)

    @model_validator(mode="after")
    def _has_target(self) -> TargetOptions:
        if not (self.device or self.devices or self.group or self.tag):
            raise ValueError("name a target: device, devices, group or tag")
        return self

    def single(self) -> bool:
        return bool(self.device) and not (self.devices or self.group or self.tag)


def pool_of(ctx: ActionContext) -> Any:
    """The session pool (it carries the inventory); a clear error when none is configured."""
    pool = ctx.extras.get("sessions")
    if pool is None:
        raise PermanentError("no device inventory: set `inventory:` in the config")
    return pool


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "output"


def clip(text: str) -> dict[str, Any]:
    """Text for a stored output: cut at :data:`MAX_OUTPUT_TEXT`, flagged when cut."""
    if len(text) <= MAX_OUTPUT_TEXT:
        return {"output": text}
    return {"output": text[:MAX_OUTPUT_TEXT], "truncated": True}


def refuse(ctx: ActionContext, exc: CommandRefused, target: str) -> None:
    """Log a policy violation as a security event (the caller raises)."""
    ctx.log.warning(
        "security.command_refused",
        target=target,
        command=shown(exc.command),
        reason=exc.reason,
    )


def target_text(opts: TargetOptions) -> str:
    parts = [f"{k}={v}" for k in ("device", "devices", "group", "tag") if (v := getattr(opts, k))]
    return " ".join(parts)


@dataclass
class DeviceOutcome:
    """One device's share of a step: its output and its artifacts."""

    output: dict[str, Any]
    artifacts: list[ArtifactData] = field(default_factory=list)


Work = Callable[[Device], Awaitable[DeviceOutcome]]


async def run_targets(
    ctx: ActionContext, opts: TargetOptions, work: Work, changes: bool = False
) -> ActionResult:
    """Run ``work`` for every targeted device (bounded), one result per device."""
    devices = pool_of(ctx).inventory.select(opts.device, opts.devices, opts.group, opts.tag)
    if opts.single():
        outcome = await work(devices[0])
        return ActionResult(ok=True, output=outcome.output, artifacts=tuple(outcome.artifacts))
    limit = asyncio.Semaphore(ctx.config.devices.fanout)

    async def bounded(dev: Device) -> DeviceOutcome:
        async with limit:
            return await work(dev)

    results = await asyncio.gather(*(bounded(d) for d in devices), return_exceptions=True)
    per: dict[str, Any] = {}
    artifacts: list[ArtifactData] = []
    succeeded: list[str] = []
    failed: dict[str, BaseException] = {}
    for dev, res in zip(devices, results, strict=True):
        if isinstance(res, DeviceOutcome):
            per[dev.name] = {"ok": True, **res.output}
            artifacts.extend(res.artifacts)
            succeeded.append(dev.name)
        elif isinstance(res, Exception):
            failed[dev.name] = res
            per[dev.name] = {
                "ok": False,
                "error": str(res) or type(res).__name__,
                "transient": isinstance(res, TransientError),
            }
        else:  # KeyboardInterrupt, CancelledError: not a device's failure
            raise res
    output = {
        "devices": per,
        "succeeded": succeeded,
        "failed": list(failed),
        "count": len(devices),
    }
    ok = not failed or (opts.partial_ok and bool(succeeded))
    if ok:
        return ActionResult(ok=True, output=output, artifacts=tuple(artifacts))
    shown_errors = "; ".join(f"{n}: {e}" for n, e in list(failed.items())[:3])
    transient = all(isinstance(e, TransientError) for e in failed.values())
    # A retry reruns every device: fine for reads, not once a device has been changed.
    if changes and succeeded:
        transient = False
    return ActionResult(
        ok=False,
        output=output,
        error=f"{len(failed)} of {len(devices)} devices failed: {shown_errors}",
        transient=transient,
        artifacts=tuple(artifacts),
    )


def _check_rejected(device: Device, command: str, text: str) -> None:
    m = REJECTED.search(text)
    if m is not None:
        line = text[m.start() :].strip().splitlines()[0]
        raise PermanentError(f"{device.name}: the device rejected {command!r}: {line}")


def parse_output(platform: str, command: str, text: str) -> dict[str, Any]:
    """TextFSM (ntc-templates) rows for one command, or why there are none."""
    try:
        from ntc_templates.parse import parse_output as ntc_parse
    except ImportError:
        return {"parsed": None, "parse_error": "ntc-templates is not installed"}
    try:
        return {"parsed": ntc_parse(platform=platform, command=command, data=text)}
    except Exception as exc:  # no template for this command/platform, or a template error
        return {"parsed": None, "parse_error": f"{type(exc).__name__}: {exc}".strip()}


def _artifact(device: Device, what: str, text: str, ctype: str = "text/plain") -> ArtifactData:
    return ArtifactData(
        name=f"{device.name}-{what}", content=text.encode("utf-8", "replace"), content_type=ctype
    )


# --------------------------------------------------------------------------- device.command


class CommandOptions(TargetOptions):
    command: str | list[str]
    #: Parse each output with TextFSM (ntc-templates) into ``parsed`` rows.
    parse: bool = False

    @field_validator("command")
    @classmethod
    def _not_empty(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("give at least one command")
        return v

    def commands(self) -> list[Any]:
        return [self.command] if isinstance(self.command, str) else list(self.command)


class CommandAction(Action):
    """Run read-only commands; optional TextFSM parsing; output kept as artifacts."""

    name = "device.command"
    Options = CommandOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        policy = CommandPolicy.from_prefixes(ctx.config.devices.allowed_commands)
        try:
            commands = policy.check_all(opts.commands())
        except CommandRefused as exc:
            refuse(ctx, exc, target_text(opts))
            raise
        pool = pool_of(ctx)
        timeout = opts.read_timeout or ctx.config.devices.command_timeout

        async def work(dev: Device) -> DeviceOutcome:
            def send(conn: Any) -> list[dict[str, Any]]:
                out = []
                for cmd in commands:
                    text = conn.send_command(cmd, read_timeout=timeout)
                    _check_rejected(dev, cmd, text)
                    item: dict[str, Any] = {"command": cmd, "text": text}
                    if opts.parse:
                        item.update(parse_output(dev.platform, cmd, text))
                    out.append(item)
                return out

            items = await pool.run(dev, send)
            texts = [item.pop("text") for item in items]
            entries = [
                {"command": item["command"], **clip(text), **item}
                for item, text in zip(items, texts, strict=True)
            ]
            output: dict[str, Any] = {
                "device": dev.name,
                "host": dev.host,
                "platform": dev.platform,
                "commands": entries,
            }
            if len(entries) == 1:  # the common case reads as results.x.output
                output.update(entries[0])
            artifacts = [
                _artifact(dev, slug(cmd) + ".txt", text)
                for cmd, text in zip(commands, texts, strict=True)
            ]
            return DeviceOutcome(output, artifacts)

        return await run_targets(ctx, opts, work)


# --------------------------------------------------------------------------- device.backup


class BackupOptions(TargetOptions):
    #: The command that prints the running config (default per platform).
    command: str | None = None


async def backup_device(
    ctx: ActionContext, dev: Device, command: str | None, timeout: float
) -> tuple[dict[str, Any], list[ArtifactData]]:
    """Read the running config and store it as a new version if it changed."""
    policy = CommandPolicy.from_prefixes(ctx.config.devices.allowed_commands)
    cmd = command or RUNNING_CONFIG.get(dev.platform, DEFAULT_RUNNING_CONFIG)
    try:
        cmd = policy.check(cmd)
    except CommandRefused as exc:
        refuse(ctx, exc, dev.name)
        raise

    def read(conn: Any) -> str:
        text = str(conn.send_command(cmd, read_timeout=timeout))
        _check_rejected(dev, cmd, text)
        return text

    text = await pool_of(ctx).run(dev, read)
    if not text.strip():
        raise PermanentError(f"{dev.name}: {cmd!r} printed nothing; nothing to back up")
    store = BackupStore(ctx.config.store.data_dir)
    result = await asyncio.to_thread(store.save, dev.name, text)
    output = {"host": dev.host, **result.as_output()}
    artifacts: list[ArtifactData] = []
    if result.changed:
        artifacts.append(_artifact(dev, "running-config.cfg", text))
        if result.previous is not None:
            artifacts.append(_artifact(dev, "config.diff", result.diff, "text/x-diff"))
    return output, artifacts


class BackupAction(Action):
    """Running config into ``<data_dir>/backups/<device>/``; the diff when it changed."""

    name = "device.backup"
    Options = BackupOptions

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        timeout = opts.read_timeout or ctx.config.devices.command_timeout

        async def work(dev: Device) -> DeviceOutcome:
            output, artifacts = await backup_device(ctx, dev, opts.command, timeout)
            return DeviceOutcome(output, artifacts)

        return await run_targets(ctx, opts, work)


# --------------------------------------------------------------------------- device.configure


class ConfigureOptions(TargetOptions):
    lines: list[str] = Field(..., min_length=1)
    #: Show what would be sent; nothing reaches a device.
    dry_run: bool = False
    #: Back up before (and after, for the diff). Without it there is no way back.
    backup: bool = True
    #: Save the running config to startup afterwards (``write memory``).
    save: bool = False
    #: Device output that means a line was refused (checked after each line).
    error_pattern: str = r"^\s*% ?(?:Invalid|Incomplete|Ambiguous|Unknown)"


class ConfigureAction(Action):
    """Send config lines. Refused unless the rule sets ``allow_config: true``."""

    name = "device.configure"
    Options = ConfigureOptions
    changes_devices = True

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        try:
            lines = [check_config_line(line) for line in opts.lines]
        except CommandRefused as exc:
            refuse(ctx, exc, target_text(opts))
            raise
        if opts.dry_run:
            # Nothing is sent, so no allow_config is needed to preview a change.
            names = [
                d.name
                for d in pool_of(ctx).inventory.select(
                    opts.device, opts.devices, opts.group, opts.tag
                )
            ]
            return ActionResult(ok=True, output={"dry_run": True, "lines": lines, "devices": names})
        if not ctx.allow_config:
            ctx.log.warning("security.config_refused", target=target_text(opts), rule=ctx.rule)
            raise PermanentError(
                f"device.configure refused: rule {ctx.rule!r} does not set allow_config: true"
            )
        pool = pool_of(ctx)
        timeout = opts.read_timeout or ctx.config.devices.command_timeout

        async def work(dev: Device) -> DeviceOutcome:
            output: dict[str, Any] = {"device": dev.name, "host": dev.host, "lines": lines}
            artifacts: list[ArtifactData] = []
            if opts.backup:
                output["backup_before"], arts = await backup_device(ctx, dev, None, timeout)
                artifacts.extend(arts)

            def push(conn: Any) -> str:
                from netmiko.exceptions import ConfigInvalidException

                try:
                    text = str(
                        conn.send_config_set(
                            lines, error_pattern=opts.error_pattern, read_timeout=timeout
                        )
                    )
                except ConfigInvalidException as exc:
                    # Leave config mode so the session is clean for the next user.
                    conn.exit_config_mode()
                    raise PermanentError(f"{dev.name}: the device refused a line: {exc}") from exc
                if opts.save:
                    text += "\n" + str(conn.save_config())
                return text

            # No silent re-send on a dead session: a half-applied change needs a human.
            transcript = await pool.run(dev, push, retry_dead=False)
            output.update({"transcript": clip(transcript)["output"]})
            artifacts.append(_artifact(dev, "configure.txt", transcript))
            if opts.backup:
                after, arts = await backup_device(ctx, dev, None, timeout)
                output["backup_after"] = after
                output["diff"] = after["diff"]
                artifacts.extend(arts)
            ctx.log.info("device.configured", device=dev.name, lines=len(lines))
            return DeviceOutcome(output, artifacts)

        return await run_targets(ctx, opts, work, changes=True)
