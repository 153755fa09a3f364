"""Shared fixtures: real nethook servers in subprocesses, free ports, vectors."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(__file__).resolve().parent / "vectors"
NETHOOK = [sys.executable, "-m", "nethook.cli"]
TOKEN = "test-token-0123456789abcdef"


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


class ProcessHandle:
    """A nethook subprocess writing to ``log_path``: read its log, stop it, kill it."""

    proc: subprocess.Popen[bytes] | None
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Server(ProcessHandle):
    """A ``nethook serve`` subprocess on loopback."""

    config_path: Path
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "nethook.db"

    def start(
        self,
        extra_args: list[str] | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> Server:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            [*NETHOOK, "serve", "--config", str(self.config_path), *(extra_args or [])],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=1.0, verify=False)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready:\n{self.log()}")

    def db_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def event_count(self) -> int:
        if not self.db_path.exists():
            return 0
        return int(self.db_rows("SELECT count(*) FROM events")[0][0])

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Wait until no event is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.db_rows("SELECT count(*) FROM events WHERE status IN ('queued', 'running')")
            if rows[0][0] == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("events still pending")


def base_config(workdir: Path, port: int, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "store": {
            "url": f"sqlite:///{workdir / 'nethook.db'}",
            "data_dir": str(workdir / "data"),
            "poll_interval": 0.2,
        },
        "logging": {"level": "INFO"},
        # Tests send bursts from one address; the rate limit has its own tests.
        "security": {"rate_limit": {"requests_per_minute": 1_000_000, "burst": 100_000}},
        "sources": {"default": {"auth": {"type": "token", "secret": TOKEN}}},
        "dispatcher": {"backoff_base": 0.05, "backoff_max": 0.5},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``nethook serve`` with a config dict; every server is stopped after the test."""
    servers: list[Server] = []

    def factory(
        config: dict[str, Any] | None = None, start: bool = True, **overrides: Any
    ) -> Server:
        port = free_port()
        cfg = config if config is not None else base_config(tmp_path, port, **overrides)
        cfg.setdefault("server", {})["port"] = port
        path = tmp_path / f"nethook-{port}.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        srv = Server(path, port, tmp_path)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield factory
    for srv in servers:
        srv.stop()


def post_event(url: str, body: Any, token: str = TOKEN, **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Webhook-Token": token}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(f"{url}/events", json=body, headers=headers, timeout=10, **kwargs)


def require_service(name: str, reason: str) -> None:
    """Skip locally when a service is missing; fail in CI (CI=true), where it must exist."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")
