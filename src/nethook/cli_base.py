"""What every ``nethook`` command shares: the two consoles, ``--config``, config loading.

It lives apart from :mod:`nethook.cli` so that the command modules split out of it
(:mod:`nethook.cli_events`, :mod:`nethook.cli_rules`, :mod:`nethook.cli_send`) can import it
at module level: importing ``nethook.cli`` from them would be circular, and under
``python -m nethook.cli`` it would even build a second copy of the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import config as config_mod
from .config import Config
from .exceptions import ConfigError

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


def load_config(path: Path | None) -> Config:
    """The config at ``path`` (or the embedded default); on errors print each one and exit 2."""
    try:
        return config_mod.load(path) if path is not None else config_mod.default_config()
    except ConfigError as exc:
        err.print(f"[red]config error[/red] in {path or 'the default config'}:")
        for line in exc.errors:
            err.print(f"  - {line}")
        raise typer.Exit(2) from None
