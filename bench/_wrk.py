"""Drive a target with wrk: generate the Lua script, run wrk, parse what ``done()`` prints.

The Lua script sends one fixed request (method, path, headers, body) on every connection,
counts response status codes per wrk thread in ``response()``, and at the end prints one
JSON line (prefixed with :data:`MARKER`) with the summary, latency percentiles and the
merged status histogram, so nothing depends on wrk's human-readable output.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "@@BENCH_JSON@@"


class WrkError(RuntimeError):
    """wrk could not run, or printed no result."""


@dataclass(frozen=True)
class HttpRequest:
    """The one request a benchmark repeats."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class WrkResult:
    duration_s: float
    requests: int  # completed responses, any status
    statuses: dict[int, int]  # status code -> count
    socket_errors: dict[str, int]  # connect / read / write / timeout
    latency_ms: dict[str, float]  # min / mean / max / p50 / p90 / p99
    wrk_cpu_s: float  # user + system CPU seconds wrk itself used

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def non_2xx(self) -> int:
        return self.requests - self.ok_2xx

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "ok_2xx": self.ok_2xx,
            "non_2xx": self.non_2xx,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "socket_errors": self.socket_errors,
            "latency_ms": self.latency_ms,
            "wrk_cpu_s": round(self.wrk_cpu_s, 3),
        }


def lua_string(value: str | bytes) -> str:
    """A Lua string literal for ``value``; anything but printable ASCII becomes ``\\ddd``."""
    data = value.encode() if isinstance(value, str) else value
    out = []
    for byte in data:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


_LUA_TAIL = """
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local codes = {}
  for code, n in pairs(merged) do
    table.insert(codes, string.format('"%d":%d', code, n))
  end
  local e = summary.errors
  io.write(MARKER, string.format(
    '{"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%.0f,"mean":%.1f,"max":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f},' ..
    '"statuses":{%s}}\\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    table.concat(codes, ",")))
end
"""


def lua_script(req: HttpRequest) -> str:
    """The wrk Lua script that repeats ``req`` and reports JSON from ``done()``."""
    lines = [
        f"MARKER = {lua_string(MARKER)}",
        f"wrk.method = {lua_string(req.method)}",
        f"wrk.path = {lua_string(req.path)}",
        f"wrk.body = {lua_string(req.body)}",
    ]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in req.headers.items()]
    return "\n".join(lines) + "\n" + _LUA_TAIL


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_wrk(
    url: str,
    script: Path,
    *,
    duration: int,
    connections: int,
    threads: int,
    timeout_s: int = 10,
) -> WrkResult:
    """Run wrk against ``url`` for ``duration`` seconds and parse its JSON summary.

    ``timeout_s`` is wrk's per-request timeout; it is generous so that a slow commit shows
    up in p99 rather than as a "timeout" socket error.
    """
    exe = wrk_path()
    if exe is None:
        raise WrkError("wrk not found on PATH (run scripts/install-bench-deps.sh)")
    cmd = [
        exe,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration}s",
        f"--timeout={timeout_s}s",
        f"--script={script}",
        url,
    ]
    cpu_before = _children_cpu()  # servers are not reaped yet, so the delta is wrk's alone
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration + 60}s") from exc
    wrk_cpu = _children_cpu() - cpu_before
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise WrkError(f"wrk exited {proc.returncode}: {detail}")
    raw = json.loads(line.removeprefix(MARKER))
    lat = raw["latency_us"]
    errs = raw["errors"]
    return WrkResult(
        duration_s=raw["duration_us"] / 1e6,
        requests=int(raw["requests"]),
        statuses={int(k): int(v) for k, v in raw["statuses"].items()},
        socket_errors={k: int(errs[k]) for k in ("connect", "read", "write", "timeout")},
        latency_ms={k: round(float(v) / 1000, 3) for k, v in lat.items()},
        wrk_cpu_s=wrk_cpu,
    )
