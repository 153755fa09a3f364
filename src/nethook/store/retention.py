"""Retention: finished events older than ``store.retention.max_age_days``, or beyond the
newest ``store.retention.max_events``, are deleted with their runs and artifact files.

The purge runs in the background of every node (``Purger``, a service component) every
``store.purge_interval`` seconds, and on demand (``nethook events purge``). The store deletes
in small chunks, each its own short transaction (SQLite: its own writer turn), so ingest
keeps committing between chunks; on PostgreSQL, purgers on several nodes skip each other's
locked rows instead of waiting. Queued and running events are never purged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ..config import StoreConfig
from ..exceptions import StoreUnavailable
from .base import PurgeResult, Store

if TYPE_CHECKING:
    from ..service import Service

log = structlog.get_logger("nethook.retention")

DAY = 86_400.0


async def purge_once(
    store: Store,
    data_dir: Path,
    max_age_days: float | None,
    max_events: int | None,
    now: float | None = None,
) -> PurgeResult:
    """Purge by age and/or count now; deletes the purged events' artifact files too."""
    if max_age_days is None and max_events is None:
        return PurgeResult()
    before = None
    if max_age_days is not None:
        before = (time.time() if now is None else now) - max_age_days * DAY
    result = await store.purge(before=before, keep=max_events)
    if result.artifact_paths:
        await asyncio.to_thread(remove_artifacts, data_dir, result.artifact_paths)
    return result


def remove_artifacts(data_dir: Path, paths: tuple[str, ...]) -> int:
    """Delete artifact files, then their emptied event folders; returns files removed.

    Only paths under ``<data_dir>/artifacts`` are touched: a database row is not trusted to
    name an arbitrary file.
    """
    root = (data_dir / "artifacts").resolve()
    removed = 0
    folders = set()
    for raw in paths:
        path = Path(raw).resolve()
        if not path.is_relative_to(root) or path == root:
            log.warning("retention.artifact_outside_data_dir", path=raw)
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        folders.add(path.parent)
    for folder in folders:
        if folder != root and folder.is_relative_to(root):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
    return removed


class Purger:
    """The periodic purge of one node (a :class:`~nethook.service.Component`)."""

    def __init__(self, store: Store, cfg: StoreConfig) -> None:
        self.store = store
        self.cfg = cfg
        self._task: asyncio.Task[None] | None = None
        #: Totals since start (tests and logs).
        self.purged = 0
        self.runs = 0

    @classmethod
    def from_service(cls, service: Service) -> Purger | None:
        retention = service.config.store.retention
        if retention.max_age_days is None and retention.max_events is None:
            return None
        return cls(service.store, service.config.store)

    async def start(self, service: Service | None = None) -> None:
        self._task = asyncio.create_task(self._loop(), name="nethook-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> PurgeResult:
        retention = self.cfg.retention
        started = time.monotonic()
        result = await purge_once(
            self.store, self.cfg.data_dir, retention.max_age_days, retention.max_events
        )
        self.runs += 1
        self.purged += result.events
        if result.events or result.kv:
            log.info(
                "retention.purged",
                events=result.events,
                artifacts=len(result.artifact_paths),
                kv=result.kv,
                seconds=round(time.monotonic() - started, 3),
            )
        return result

    async def _loop(self) -> None:
        interval = self.cfg.purge_interval
        # Nodes started together spread their purges out (they would only skip each
        # other's rows, but there is no point in all of them scanning at once).
        await asyncio.sleep(random.uniform(0, min(interval, 10.0)))
        while True:
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.warning("retention.store_unavailable", error=str(exc))
            except Exception:
                log.exception("retention.failed")
            await asyncio.sleep(interval)
