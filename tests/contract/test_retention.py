"""Retention on both backends: the periodic purger (a service component) and
``nethook events purge``; artifact files go with their events, live events stay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from nethook import artifacts
from nethook.actions.base import ArtifactData
from nethook.cli import app
from nethook.config import StoreConfig
from nethook.events import EventDraft, EventStatus
from nethook.store.base import EventFilter, Store
from nethook.store.retention import Purger, remove_artifacts

from .conftest import StoreFactory


async def seed(store: Store, data_dir: Path, n: int) -> list[str]:
    """``n`` events, all finished but the newest two, each with an artifact file."""
    ids = [
        r.id for r in await store.append_many([EventDraft("s", "t", {"i": i}) for i in range(n)])
    ]
    for e in await store.claim("w", n - 2, 30):
        art = artifacts.write(data_dir, e.id, "r#0", None, ArtifactData("out.txt", b"x"))
        await store.add_artifact(art)
        await store.finish(e.id, "w", EventStatus.SUCCEEDED)
    return ids


async def test_purger_keeps_the_newest_and_deletes_files(
    stores: StoreFactory, tmp_path: Path
) -> None:
    store = await stores()
    data_dir = tmp_path / "data"
    ids = await seed(store, data_dir, 12)
    cfg = StoreConfig(data_dir=data_dir, retention={"max_events": 5}, purge_interval=0.05)
    purger = Purger(store, cfg)
    await purger.start()
    try:
        deadline = time.monotonic() + 15
        while purger.runs < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        await purger.stop()
    left = [e.id for e in await store.list_events(EventFilter(limit=100))]
    assert sorted(left) == sorted(ids[-5:]) and purger.purged == 7
    folders = sorted(p.name for p in (data_dir / "artifacts").iterdir())
    assert folders == sorted(ids[-5:-2])  # the purged events' folders are gone


def test_remove_artifacts_stays_inside_the_data_dir(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    inside = tmp_path / "data" / "artifacts" / "E1" / "f"
    inside.parent.mkdir(parents=True)
    inside.write_text("x")
    removed = remove_artifacts(tmp_path / "data", (str(outside), str(inside), "/etc/passwd"))
    assert removed == 1 and outside.exists() and not inside.parent.exists()


def test_events_purge_command(backend: str, tmp_path: Path) -> None:
    from .conftest import pg_url_or_skip

    url = f"sqlite:///{tmp_path / 'p.db'}" if backend == "sqlite" else pg_url_or_skip()
    store_cfg: dict[str, Any] = {"url": url, "data_dir": str(tmp_path / "data")}
    cfg_path = tmp_path / "nethook.yml"
    cfg_path.write_text(yaml.safe_dump({"store": store_cfg}))
    try:
        from nethook.store import open_store

        async def prepare() -> list[str]:
            s = open_store(StoreConfig(**store_cfg))
            await s.open()
            try:
                return await seed(s, tmp_path / "data", 6)
            finally:
                await s.close()

        ids = asyncio.run(prepare())
        runner = CliRunner()
        res = runner.invoke(app, ["events", "purge", "--config", str(cfg_path)])
        assert res.exit_code == 2 and "nothing to purge by" in res.output
        res = runner.invoke(app, ["events", "purge", "--config", str(cfg_path), "--keep", "3"])
        assert res.exit_code == 0, res.output
        assert "purged 3 events, 3 artifact files" in res.output
        res = runner.invoke(
            app, ["events", "purge", "--config", str(cfg_path), "--older-than-days", "0"]
        )
        assert "purged 1 events" in res.output  # the two queued ones stay
        listed = runner.invoke(app, ["events", "list", "--config", str(cfg_path), "--json"])
        assert sorted(e["id"] for e in yaml.safe_load(listed.output)) == sorted(ids[-2:])
    finally:
        if backend == "postgres":
            import pgtools

            pgtools.drop(url)


async def test_service_starts_a_purger_only_when_retention_is_set(tmp_path: Path) -> None:
    from nethook import config as config_mod
    from nethook.runtime import Runtime
    from nethook.service import Service
    from nethook.store.sqlite import SQLiteStore

    for retention, expected in (({}, False), ({"max_age_days": 30}, True)):
        cfg = config_mod.from_dict(
            {"store": {"url": f"sqlite:///{tmp_path / 'svc.db'}", "retention": retention}}
        )
        service = Service(Runtime.build(cfg), SQLiteStore(tmp_path / "svc.db"), workers=0)
        await service.start()
        try:
            assert any(isinstance(c, Purger) for c in service.components) is expected
        finally:
            await service.stop()
