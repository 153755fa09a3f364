"""Rate limits shared across nodes through Redis (``security.rate_limit.storage: redis://``).

Two real ``nethook serve`` processes with the same limit: per-node buckets (the default)
admit the burst on each node; a shared limit admits it once across both. Redis runs on
127.0.0.1:6379 (``NETHOOK_TEST_REDIS_URL``); with ``CI=true`` a missing server fails.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import TOKEN, Server, base_config, free_port, require_service
from nethook.config import RateLimitConfig
from nethook.exceptions import ConfigError
from nethook.runtime import build_limiter

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("NETHOOK_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture
def redis_url() -> str:
    pytest.importorskip("limits", reason="the redis extra is not installed")
    parts = urlsplit(REDIS_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1).close()
    except OSError as exc:
        require_service("Redis", f"{REDIS_URL}: {exc}")
    return REDIS_URL


def post_burst(servers: list[Server], source: str, n: int) -> list[int]:
    codes = []
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            srv = servers[i % len(servers)]
            r = client.post(
                f"{srv.url}/hooks/{source}",
                json={"event": "rl", "data": {"i": i}},
                headers={"X-Webhook-Token": TOKEN},
            )
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
    return codes


@pytest.mark.parametrize("shared", [False, True])
def test_two_nodes_share_one_limit(
    make_server: Callable[..., Server], tmp_path: Path, redis_url: str, shared: bool
) -> None:
    # A source name of its own: counts from earlier runs in Redis cannot leak in.
    source = f"rl{uuid.uuid4().hex[:10]}"
    rate = {"requests_per_minute": 60, "burst": 5}
    if shared:
        rate["storage"] = redis_url  # type: ignore[assignment]
    servers = []
    for i in range(2):
        cfg = base_config(tmp_path / f"n{i}", 0)
        (tmp_path / f"n{i}").mkdir()
        cfg["sources"] = {source: {"auth": {"type": "token", "secret": TOKEN}}}
        cfg["security"] = {"rate_limit": rate}
        cfg["logging"] = {"level": "WARNING"}
        srv = make_server(cfg, start=False)
        srv.start(extra_args=["--no-workers"])
        servers.append(srv)
    codes = post_burst(servers, source, 16)
    accepted = sum(c == 202 for c in codes)
    assert set(codes) <= {202, 429}, codes
    # burst 5: each node alone admits 5; shared, the two admit 5 together.
    assert accepted == (5 if shared else 10), codes


async def test_redis_down_falls_back_to_the_local_bucket(redis_url: str) -> None:
    limiter = build_limiter(
        "s",
        RateLimitConfig(
            requests_per_minute=60, burst=3, storage=f"redis://127.0.0.1:{free_port()}"
        ),
    )
    assert limiter is not None
    waits = [await limiter.acquire("1.2.3.4") for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0


async def test_shared_limiter_counts_across_instances(redis_url: str) -> None:
    rate = RateLimitConfig(requests_per_minute=60, burst=4, storage=redis_url)
    key = uuid.uuid4().hex
    a, b = build_limiter("s", rate), build_limiter("s", rate)
    assert a is not None and b is not None
    waits = await asyncio.gather(*(lim.acquire(key) for lim in (a, b) * 4))
    assert sum(w == 0.0 for w in waits) == 4
    assert all(0 < w <= 4.5 for w in waits if w)


def test_unknown_storage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neither memory:// nor redis://"):
        build_limiter("s", RateLimitConfig(storage="memcached://x"))


def test_window_terms_keep_the_rate_and_the_burst() -> None:
    from nethook.security.shared_limits import window_terms

    assert window_terms(60, 5) == (5, 5)  # 5 per 5 s: 60/min, bursts of 5
    assert window_terms(600, None) == (100, 10)  # the default burst: 100 per 10 s
    assert window_terms(6000, 10) == (100, 1)  # under a second of traffic: one second's
