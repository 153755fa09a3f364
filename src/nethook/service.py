"""The running service: runtime (swappable on reload), store, dispatcher and components.

Components are the parts that live as long as the process and need starting and stopping:
the device inventory and SSH session pool, syslog listeners. Each part adds its factory to
``component_factories``; a factory returns None when the config does not use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog

from .config import Config
from .engine.dispatcher import Dispatcher, Outcome
from .exceptions import ConfigError
from .runtime import Runtime
from .security.limits import FailedLogins
from .store import Store

log = structlog.get_logger("nethook.service")


class Component(Protocol):
    """Something with a lifetime: started after the store opens, stopped before it closes."""

    async def start(self, service: Service) -> None: ...

    async def stop(self) -> None: ...


ComponentFactory = Callable[["Service"], "Component | None"]


def component_factories() -> list[ComponentFactory]:
    """Factories in start order. Imports are local: a part's optional dependencies are only
    needed by configs that use it."""
    factories: list[ComponentFactory] = []
    factories.append(_devices)
    factories.append(_syslog_listeners)
    factories.append(_retention)
    return factories


def _devices(service: Service) -> Component | None:
    """Device inventory and SSH session pool when the config names an ``inventory``."""
    from .devices import devices_component

    return devices_component(service)


def _retention(service: Service) -> Component | None:
    """The periodic purge when ``store.retention`` is set (every node; chunks never block)."""
    from .store.retention import Purger

    return Purger.from_service(service)


def _syslog_listeners(service: Service) -> Component | None:
    """Syslog listeners for every ``type: syslog`` source (ingress processes only)."""
    from .ingress.syslog import SyslogComponent

    return SyslogComponent.from_service(service)


class Service:
    """One nethook process: ``ingress`` serves HTTP (and listeners); ``workers`` dispatch."""

    def __init__(
        self, runtime: Runtime, store: Store, workers: int = 1, ingress: bool = True
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.workers = workers
        self.ingress = ingress
        self.dispatcher: Dispatcher | None = None
        self.http: httpx.AsyncClient | None = None
        #: Shared objects components publish for actions (ActionContext.extras), e.g.
        #: "inventory" and "sessions".
        self.extras: dict[str, Any] = {}
        self.components: list[Component] = []
        self.config_path: Path | None = None
        #: Wrong admin credentials per client (see api.failed_logins).
        self.failed_logins: FailedLogins | None = None

    @property
    def config(self) -> Config:
        return self.runtime.config

    async def start(self) -> None:
        await self.store.open()
        self.http = httpx.AsyncClient(follow_redirects=False)
        for factory in component_factories():
            component = factory(self)
            if component is not None:
                await component.start(self)
                self.components.append(component)
        if self.workers > 0:
            self.dispatcher = Dispatcher(
                self.store,
                self.config,
                lambda: self.runtime.rulebook,
                self.http,
                inventory=lambda: self.extras.get("inventory"),
                extras=self.extras,
            )
            self.dispatcher.cfg = self.config.dispatcher.model_copy(
                update={"concurrency": self.config.dispatcher.concurrency * self.workers}
            )
            self.dispatcher.start()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:
                log.exception("component.stop_failed", component=type(component).__name__)
        if self.http is not None:
            await self.http.aclose()
        await self.store.close()

    def reload(self, config: Config) -> Runtime:
        """Swap in a new runtime built from ``config``; on error the running one stays.

        Rules, sources, limits and the device inventory change at once for new requests and
        new events; the store, listeners and pools keep running (changing those needs a
        restart).
        """
        runtime = Runtime.build(config)  # raises ConfigError, leaving self.runtime as it was
        if config.store.url != self.config.store.url:
            raise ConfigError("store.url: changing the store needs a restart")
        if self.config.inventory is None and config.inventory is not None:
            raise ConfigError("inventory: adding an inventory needs a restart")
        # Components that follow the config (the inventory) load and check everything
        # first; only when all of them can does anything change.
        commits = [
            prepare(config)
            for component in self.components
            if (prepare := getattr(component, "prepare_reload", None)) is not None
        ]
        for commit in commits:
            commit()
        self.runtime = runtime
        if self.dispatcher is not None:
            self.dispatcher.config = config
        log.info(
            "service.reloaded", sources=sorted(runtime.sources), rules=len(runtime.rulebook.rules)
        )
        return runtime

    def reload_from_file(self, log_errors: bool = False) -> Runtime:
        """Re-read ``config_path`` and swap; ConfigError (or a log line) when it is bad."""
        from . import config as config_mod

        if self.config_path is None:
            raise ConfigError("no config file to reload: the service runs the embedded default")
        try:
            return self.reload(config_mod.load(self.config_path))
        except ConfigError as exc:
            if not log_errors:
                raise
            log.error("reload.refused", errors=exc.errors, config=str(self.config_path))
            return self.runtime

    async def wait_outcome(self, event_id: str, timeout: float) -> Outcome | None:
        """Wait up to ``timeout`` for this node's dispatcher to finish an event."""
        if self.dispatcher is None:
            return None
        fut = self.dispatcher.wait_for(event_id)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        finally:
            self.dispatcher.forget(event_id, fut)
