"""Network devices: the inventory, the SSH session pool, the command policy, backups.

:class:`DevicesComponent` is the service component (see ``service.component_factories``):
when the config names an ``inventory``, it loads it, opens the session pool, and publishes
``service.extras["inventory"]`` (the template view: ``inventory.devices.r1.host``, no
secrets) and ``service.extras["sessions"]`` (the :class:`SessionPool`, which carries the
:class:`Inventory` for actions). Nothing here imports Netmiko at import time: configs that
use no device action need none of the ``devices`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from ..exceptions import ConfigError
from .inventory import Credentials, Device, Inventory
from .policy import CommandPolicy, CommandRefused

if TYPE_CHECKING:
    from ..config import Config
    from ..service import Service
    from .sessions import SessionPool

__all__ = [
    "CommandPolicy",
    "CommandRefused",
    "Credentials",
    "Device",
    "DevicesComponent",
    "Inventory",
    "devices_component",
]

log = structlog.get_logger("nethook.devices")


class DevicesComponent:
    """Inventory and session pool for the life of one service process."""

    def __init__(self) -> None:
        self.pool: SessionPool | None = None
        self.service: Service | None = None

    async def start(self, service: Service) -> None:
        import asyncio

        from . import inventory as inventory_mod
        from .sessions import SessionPool

        cfg = service.config
        assert cfg.inventory is not None
        self.service = service
        try:
            inv = await asyncio.to_thread(inventory_mod.load, cfg.inventory)
        except ConfigError as exc:
            # Start-up stops here; say why in the service's own log format first.
            log.error("devices.inventory_invalid", errors=exc.errors)
            raise
        from .slots import SharedSlots

        # per_device counts sessions across every node that shares the store.
        self.pool = SessionPool(
            inv, cfg.devices, slots=SharedSlots(service.store, cfg.devices.per_device)
        )
        await self.pool.start()
        service.extras["inventory"] = inv.view()
        service.extras["sessions"] = self.pool
        log.info("devices.ready", inventory=str(cfg.inventory), devices=len(inv))

    def prepare_reload(self, config: Config) -> Callable[[], None]:
        """Load the inventory ``config`` names; the returned call puts it in use.

        A bad inventory raises ConfigError here, so the reload is refused as a whole and
        the running inventory stays. The pool's size (``max_sessions``, ``per_device``)
        is fixed at start-up; its other settings follow the new config.
        """
        from . import inventory as inventory_mod

        if config.inventory is None:
            raise ConfigError("inventory: removing the inventory needs a restart")
        # Small file, read once per reload: fine on the loop (reload is synchronous).
        inv = inventory_mod.load(config.inventory)
        view = inv.view()
        service, pool = self.service, self.pool

        def commit() -> None:
            if pool is None or service is None:
                return
            fixed = {"max_sessions": pool.config.max_sessions, "per_device": pool.config.per_device}
            if any(getattr(config.devices, k) != v for k, v in fixed.items()):
                log.warning("devices.pool_size_needs_restart", keeps=fixed)
            pool.config = config.devices.model_copy(update=fixed)
            diff = pool.swap_inventory(inv)
            service.extras["inventory"] = view
            log.info("devices.reloaded", inventory=str(config.inventory), devices=len(inv), **diff)

        return commit

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


def devices_component(service: Service) -> DevicesComponent | None:
    """The component factory: a :class:`DevicesComponent` when the config has an inventory."""
    return DevicesComponent() if service.config.inventory is not None else None
