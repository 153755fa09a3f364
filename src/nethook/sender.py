"""``nethook send``: post a payload exactly as a source's sender would, or many as a load test.

Each request is signed with the source's configured scheme (token, bearer, basic, hmac,
github, standard-webhooks, meraki), freshly per request, so timestamps stay in tolerance
and delivery ids stay unique.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson

from .config import Config, SourceConfig
from .exceptions import ConfigError
from .security.signing import sign


def source_url(cfg: Config, name: str, base: str | None = None) -> str:
    """Where a source receives: its own path, /events for ``default``, else /hooks/NAME."""
    sources = cfg.sources or {}
    if name not in sources:
        raise ConfigError(f"no source named {name!r} (have: {', '.join(sorted(sources))})")
    if base is None:
        scheme = "https" if cfg.server.tls else "http"
        host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
        base = f"{scheme}://{host}:{cfg.server.port}"
    src = sources[name]
    path = src.path or ("/events" if name == "default" else f"/hooks/{name}")
    return base.rstrip("/") + "/" + path.lstrip("/")


def signed_request(src: SourceConfig, body: bytes) -> tuple[dict[str, str], bytes]:
    """Headers (and, for Meraki, the body with its sharedSecret) for one delivery."""
    headers = {"Content-Type": "application/json"}
    auth = src.auth
    if auth is None or auth.type == "none":
        return headers, body
    if auth.type == "meraki":
        payload = orjson.loads(body)
        if not isinstance(payload, dict):
            raise ConfigError("a Meraki body must be a JSON object")
        payload["sharedSecret"] = auth.all_secrets()[0]
        return headers, orjson.dumps(payload)
    headers.update(sign(auth, body))
    return headers, body


@dataclass
class LoadReport:
    count: int
    elapsed: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def load(
    url: str,
    src: SourceConfig,
    body: bytes,
    count: int,
    concurrency: int,
    verify: bool | str = True,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Send ``count`` signed requests with ``concurrency`` in flight; never raises per request."""
    report = LoadReport(count=count, elapsed=0.0)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    # One client (one keep-alive connection) per worker: httpx's shared pool scans every
    # connection per request, which made 32 concurrent senders slower than 8.
    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(limits=limits, verify=verify, timeout=30) as client:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                headers, payload = signed_request(src, body)
                started = time.perf_counter()
                try:
                    resp = await client.post(url, content=payload, headers=headers)
                    key = str(resp.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                report.latencies.append(time.perf_counter() - started)
                report.statuses[key] += 1
                if progress is not None:
                    progress(1)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    report.elapsed = time.perf_counter() - started
    return report
