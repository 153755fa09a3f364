"""Ingest benchmark: nethook variants vs. anchors measured in the same run.

    .venv/bin/python bench/ingest.py [--duration 10] [--rounds 3] [--connections 32]
                                     [--threads 2] [--only NAME ...] [--json OUT]

Each target is started on a free 127.0.0.1 port, checked with one good and one bad
request, warmed up, then driven by wrk for ``--duration`` seconds with the same JSON body.
With ``--rounds N`` every target runs N times, interleaved round by round: a shared
machine's speed drifts by tens of percent within minutes, and a target measured a minute
after its anchor can look better or worse than it is. The table shows each target's median
run with the spread of its rounds; each ratio is the median of the per-round ratios (a
target and its anchor measured minutes apart, not rounds apart). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _targets import TARGETS, Server, Target, TargetFailed, TargetUnavailable, free_port
from _wrk import WrkError, WrkResult, lua_script, run_wrk, wrk_path
from rich.console import Console
from rich.table import Table

#: uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop too.
CLEAN_EXITS = (None, 0, -signal.SIGTERM, 128 + signal.SIGTERM)

console = Console(stderr=True, highlight=False)
# Not a terminal (CI log, `| tee`): wide enough that the header and table don't wrap.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


@dataclass
class Outcome:
    name: str
    status: str = "ok"  # ok | unavailable | failed
    reason: str = ""
    result: WrkResult | None = None
    warmup: WrkResult | None = None
    checked_ok: int = 0  # check requests that got expected_status
    expected_status: int | None = None  # what every benchmark request should get
    server_cpu_s: float = 0.0
    exit_code: int | None = None
    stored_events: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.result.rps if self.result is not None else 0.0

    @property
    def accepted(self) -> int:
        """Responses with ``expected_status``: check request, warm-up and measured run.

        For nethook that is every 202, i.e. every event it said it stored.  A 200 (a
        duplicate delivery) adds no row, so it is not counted here; it is flagged as
        unexpected instead.
        """
        done = [r for r in (self.warmup, self.result) if r is not None]
        return self.checked_ok + sum(r.statuses.get(self.expected_status or 0, 0) for r in done)

    def unexpected(self, result: WrkResult | None = None) -> dict[int, int]:
        """Status -> count for responses other than ``expected_status`` (measured run)."""
        r = result or self.result
        if r is None or self.expected_status is None:
            return {}
        return {code: n for code, n in sorted(r.statuses.items()) if code != self.expected_status}

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        if self.result is not None:
            d.update(self.result.as_dict())
            d["expected_status"] = self.expected_status
            d["unexpected"] = sum(self.unexpected().values())
            d["server_cpu_s"] = round(self.server_cpu_s, 3)
        if self.warmup is not None:
            d["warmup"] = self.warmup.as_dict()
        if self.status != "unavailable":
            d["exit_code"] = self.exit_code
        if self.stored_events is not None:
            d["stored_events"] = self.stored_events
            d["accepted"] = self.accepted
        return d


def bench_target(target: Target, args: argparse.Namespace) -> Outcome:
    oc = Outcome(target.name)
    try:
        target.check_available()
    except TargetUnavailable as exc:
        return Outcome(target.name, "unavailable", str(exc))
    with tempfile.TemporaryDirectory(prefix=f"nethook-bench-{target.name}-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        launch = target.prepare(workdir, port)
        oc.expected_status = launch.expected_status
        script = workdir / "bench.lua"
        script.write_text(lua_script(launch.request), encoding="utf-8")
        server = Server(launch, port, workdir)
        url = server.base_url + launch.request.path
        wrk_opts = {"connections": args.connections, "threads": args.threads}
        console.print(f"[bold]{target.name}[/]: {target.description} on port {port}")
        try:
            server.start()
            server.wait_ready()
            oc.checked_ok = server.check()
            if args.warmup > 0:
                console.print(f"  warm-up {args.warmup}s")
                oc.warmup = run_wrk(url, script, duration=args.warmup, **wrk_opts)
            console.print(f"  measuring {args.duration}s")
            cpu0 = server.cpu_seconds()
            oc.result = run_wrk(url, script, duration=args.duration, **wrk_opts)
            oc.server_cpu_s = server.cpu_seconds() - cpu0
        except (TargetFailed, WrkError, OSError) as exc:
            oc.status, oc.reason = "failed", str(exc)
        finally:
            oc.exit_code = server.stop()
        if oc.status == "failed":
            tail = server.stderr_tail()
            if tail:
                oc.reason += "\n--- server stderr (tail) ---\n" + tail
        elif oc.exit_code not in CLEAN_EXITS:
            oc.extra["stderr_tail"] = server.stderr_tail()
        if oc.result is not None:
            try:
                oc.stored_events = target.stored_events(workdir)
            except (sqlite3.Error, OSError) as exc:  # report it, don't lose the other numbers
                oc.extra["stored_events_error"] = f"{type(exc).__name__}: {exc}"
    return oc


# --------------------------------------------------------------------------- reporting


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "python": platform.python_version(),
    }


def _pct(cpu_s: float, wall_s: float) -> str:
    return f"{100 * cpu_s / wall_s:.0f}%" if wall_s else "-"


def median_run(runs: list[Outcome]) -> Outcome:
    """The run with the median req/s (a real run, not an average of several)."""
    measured = sorted((oc for oc in runs if oc.result is not None), key=lambda oc: oc.rps)
    return measured[(len(measured) - 1) // 2] if measured else runs[0]


def spread(runs: list[Outcome]) -> str:
    rates = [oc.rps for oc in runs if oc.result is not None]
    if len(rates) < 2:
        return "-"
    mid = statistics.median(rates)
    return f"±{50 * (max(rates) - min(rates)) / mid:.0f}%" if mid else "-"


def table(rounds: dict[str, list[Outcome]]) -> Table:
    t = Table(show_edge=False, pad_edge=False)
    t.add_column("target")
    cols = ("req/s", "spread", "p50 ms", "p99 ms", "unexpected", "errors", "server CPU", "wrk CPU")
    for col in cols:
        t.add_column(col, justify="right")
    for runs in rounds.values():
        oc = median_run(runs)
        r = oc.result
        if r is None:
            t.add_row(oc.name, f"[yellow]{oc.status}[/]", *["-"] * 7)
            continue
        t.add_row(
            oc.name,
            f"{r.rps:,.0f}",
            spread(runs),
            f"{r.latency_ms['p50']:.2f}",
            f"{r.latency_ms['p99']:.2f}",
            str(sum(oc.unexpected().values())),
            str(r.errors),
            _pct(oc.server_cpu_s, r.duration_s),
            _pct(r.wrk_cpu_s, r.duration_s),
        )
    return t


def median_ratios(rounds: dict[str, list[Outcome]], n: int) -> dict[str, float | None]:
    """Per ratio, the median over rounds of that round's ratio (None when never measured)."""
    per_round = [ratios([runs[i] for runs in rounds.values() if i < len(runs)]) for i in range(n)]
    keys = list(per_round[0]) if per_round else []
    result: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in per_round if r.get(key) is not None]
        result[key] = statistics.median(values) if values else None  # type: ignore[type-var]
    return result


def ratios(outcomes: list[Outcome]) -> dict[str, float | None]:
    """``target/anchor`` req/s for every non-anchor target that was tried, per its anchors."""
    by_name = {oc.name: oc for oc in outcomes}
    result: dict[str, float | None] = {}
    for name, target in TARGETS.items():
        if target.anchor or name not in by_name:
            continue
        for anchor in target.anchors:
            mine = by_name[name].result
            ref = by_name[anchor].result if anchor in by_name else None
            ok = mine is not None and ref is not None and ref.rps > 0
            result[f"{name}/{anchor}"] = mine.rps / ref.rps if mine and ref and ok else None
    return result


def unexpected_line(oc: Outcome) -> str | None:
    """Non-empty when responses other than the expected status came back (health check)."""
    parts = []
    for label, r in (("warm-up", oc.warmup), ("run", oc.result)):
        odd = oc.unexpected(r) if r is not None else {}
        if odd:
            hist = ", ".join(f"{code}: {n:,}" for code, n in odd.items())
            parts.append(f"{label} {hist}")
    if not parts:
        return None
    return (
        f"[red]{oc.name}: responses other than {oc.expected_status}[/] ({'; '.join(parts)}); "
        "the numbers measure something else (e.g. 200 duplicates, 401, 429)"
    )


def durability_line(oc: Outcome, connections: int) -> tuple[str, bool]:
    """Events in the store vs. acknowledged (202s): fewer stored than acknowledged is a loss."""
    stored, acked = oc.stored_events, oc.accepted
    assert stored is not None
    diff = stored - acked
    # wrk abandons up to `connections` in-flight requests at the end of each of its runs;
    # the server may still have stored those, so a small surplus is expected.
    if diff < 0:
        verdict, ok = f"[red]LOST {-diff}[/]", False
    elif diff <= 2 * connections:
        verdict, ok = "[green]OK[/] (surplus = requests in flight when wrk stopped)", True
    else:
        verdict, ok = "[yellow]surplus larger than in-flight requests could explain[/]", True
    text = (
        f"{oc.name} durability: {stored:,} events in the database vs {acked:,} "
        f"{oc.expected_status}s "
        f"(check + warm-up + run), difference {diff:+,} -> {verdict}"
    )
    return text, ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10, metavar="SECONDS", help="per target")
    p.add_argument("--warmup", type=int, default=2, metavar="SECONDS", help="0 to skip")
    p.add_argument(
        "--rounds", type=int, default=3, metavar="N",
        help="run every target N times, interleaved; report medians",
    )  # fmt: skip
    p.add_argument("--connections", type=int, default=32, metavar="N")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="wrk threads")
    p.add_argument(
        "--only", action="append", choices=list(TARGETS), metavar="NAME",
        help=f"run only this target (repeatable): {', '.join(TARGETS)}",
    )  # fmt: skip
    p.add_argument("--json", type=Path, metavar="OUT", help="write raw numbers here")
    args = p.parse_args(argv)
    if min(args.duration, args.connections, args.threads, args.rounds) < 1 or args.warmup < 0:
        p.error("--duration, --rounds, --connections and --threads must be >= 1, --warmup >= 0")
    if args.threads > args.connections:
        p.error("wrk needs --connections >= --threads")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if wrk_path() is None:
        console.print("[red]wrk not found[/]: run scripts/install-bench-deps.sh")
        return 2
    names = [n for n in TARGETS if n in (args.only or TARGETS)]
    info = meta(args)
    started = time.monotonic()
    rounds: dict[str, list[Outcome]] = {n: [] for n in names}
    for i in range(args.rounds):
        if args.rounds > 1:
            console.print(f"[bold]round {i + 1}/{args.rounds}[/]")
        for n in names:
            if rounds[n] and rounds[n][-1].status == "unavailable":
                continue  # a missing binary stays missing
            rounds[n].append(bench_target(TARGETS[n], args))
    outcomes = [oc for runs in rounds.values() for oc in runs]

    out.print(
        f"\ningest benchmark | {info['date']} | {info['cpu']}, {info['cores']} cores | "
        f"{args.duration}s per target (+{args.warmup}s warm-up) x {args.rounds} rounds, "
        f"interleaved | {args.connections} conns, {args.threads} wrk threads"
    )
    out.print(table(rounds))
    by_name = {name: median_run(runs) for name, runs in rounds.items()}
    ratio = median_ratios(rounds, args.rounds)
    for key, value in ratio.items():
        if value is None:
            why = [
                f"{n} {by_name[n].status if n in by_name else 'not run'}"
                for n in key.split("/")
                if n not in by_name or by_name[n].result is None
            ]
            out.print(f"{key} (req/s): n/a ({', '.join(why)})")
        else:
            label = "median of per-round ratios" if args.rounds > 1 else "req/s"
            out.print(f"{key} ({label}): {value:.2f}")

    healthy = True
    for oc in outcomes:
        odd = unexpected_line(oc)
        if odd:
            out.print(odd)
            healthy = False
        if oc.stored_events is not None:
            line, ok = durability_line(oc, args.connections)
            out.print(line)
            healthy &= ok
        if "stored_events_error" in oc.extra:
            out.print(
                f"[red]{oc.name} durability: cannot count[/]: {oc.extra['stored_events_error']}"
            )
            healthy = False
        if oc.status == "failed":
            out.print(f"[red]{oc.name} failed[/]: {oc.reason}")
            healthy = False
        elif oc.status == "unavailable":
            out.print(f"[yellow]{oc.name} unavailable[/]: {oc.reason}")
        if oc.extra.get("stderr_tail"):
            out.print(f"{oc.name} exited {oc.exit_code}; stderr:\n{oc.extra['stderr_tail']}")
    console.print(f"[dim]total {time.monotonic() - started:.0f}s[/]")

    if args.json:
        doc = {
            "meta": info,
            "targets": {
                name: {
                    **median_run(runs).as_dict(),
                    "rounds": [oc.as_dict() | oc.extra for oc in runs],
                }
                for name, runs in rounds.items()
            },
            "ratios": {k: (round(v, 4) if v is not None else None) for k, v in ratio.items()},
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
