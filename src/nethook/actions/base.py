"""The Action interface, its registry, and results as data.

An action is a class with a pydantic ``Options`` model (validated after the rule's templates
are rendered) and ``async run(ctx, opts) -> ActionResult``. An action signals a failure by
raising :class:`~nethook.exceptions.TransientError` (retry later) or
:class:`~nethook.exceptions.PermanentError` (dead-letter); the dispatcher turns both into
stored results, so nothing an action does becomes a crash.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import httpx
    import structlog

    from ..config import Config
    from ..events import Event
    from ..store.base import Store


class Options(BaseModel):
    """Base for action options: unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class ArtifactData:
    """A raw output an action wants kept as a file (response body, config text...)."""

    name: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    output: Any = None
    error: str | None = None
    elapsed: float = 0.0
    transient: bool = False
    artifacts: tuple[ArtifactData, ...] = ()
    retry_after: float | None = None


@dataclass(slots=True)
class ActionContext:
    """What an action may use: the event, the config, shared clients and durable state."""

    event: Event
    rule: str
    step: str
    attempt: int
    config: Config
    store: Store
    http: httpx.AsyncClient
    log: structlog.typing.FilteringBoundLogger
    results: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    #: The rule set ``allow_config: true`` (actions that change devices require it).
    allow_config: bool = False


class Action(ABC):
    """One kind of action, e.g. ``http`` or ``device.command``."""

    name: ClassVar[str]
    Options: ClassVar[type[Options]]
    #: A rule must set ``allow_config: true`` to use an action that changes devices.
    changes_devices: ClassVar[bool] = False

    @abstractmethod
    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        """Do the work. Return a result; raise Transient/PermanentError on failure."""


# name -> "module:Class"; modules are imported on first use so an optional dependency
# (netmiko, ncclient) is only needed by the configs that use its actions.
_BUILTIN: dict[str, str] = {
    "log": "nethook.actions.log:LogAction",
    "http": "nethook.actions.http:HttpAction",
    "joke": "nethook.actions.apis:JokeAction",
    "card_draw": "nethook.actions.apis:CardDrawAction",
    "emit": "nethook.actions.emit:EmitAction",
    "notify": "nethook.actions.notify:NotifyAction",
    "device.command": "nethook.actions.device:CommandAction",
    "device.backup": "nethook.actions.device:BackupAction",
    "device.configure": "nethook.actions.device:ConfigureAction",
    "restconf.get": "nethook.actions.restconf:RestconfGetAction",
    "netconf.get": "nethook.actions.netconf:NetconfGetAction",
    "netconf.get_config": "nethook.actions.netconf:NetconfGetConfigAction",
}

REGISTRY: dict[str, Action] = {}


def register(action: Action) -> Action:
    """Add (or replace) an action in the registry; returns it for decorator-style use."""
    REGISTRY[action.name] = action
    return action


def get_action(name: str) -> Action:
    """The action called ``name``; KeyError if there is none."""
    if name not in REGISTRY and name in _BUILTIN:
        module, _, cls = _BUILTIN[name].partition(":")
        REGISTRY[name] = getattr(importlib.import_module(module), cls)()
    return REGISTRY[name]


def known_actions() -> list[str]:
    return sorted(set(REGISTRY) | set(_BUILTIN))
