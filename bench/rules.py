"""Rule evaluation throughput: 100 rules with Jinja2 ``when:`` conditions, one core.

    .venv/bin/python bench/rules.py [--seconds 1.0] [--repeats 5] [--rules 100] [--json OUT]
                                    [--eda PATH/TO/ansible-rulebook [--eda-events 5000]]

What is timed, per event, is exactly what the dispatcher does before any I/O:
``Rulebook.match(event)`` (``on:`` filters, then every candidate rule's compiled ``when:``)
and rendering the arguments of every step of every matched rule (``names_for`` +
``Step.render``). No store, no actions, no network.

Two scenarios over the same kind of rulebook:

* ``all-match``: every event matches all 100 rules (the worst case, and the setting of the
  anchor below);
* ``typical``: 100 rules spread over five event types with selective conditions, so an
  event passes the ``on:`` filter of 20 rules and matches about one in two events (many
  events match nothing: a config change, an OSPF message nobody wrote a rule for).

Anchor: Event-Driven Ansible's rule engine (ansible-rulebook 1.3.2, Drools via JPY) at
about 7,000 events/s when every event matches, on this machine class. That is a QUOTED
figure, not measured by this script; its rulebook is not known to us, so that ratio
compares orders of magnitude, not identical workloads. ``--eda`` measures ansible-rulebook
live on the same core with the same conditions and events (bench/_eda.py), in two modes:
all 100 rules fire per event (what nethook does) and its default, first match only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nethook.config import RuleConfig
from nethook.engine.rules import Rulebook, compile_rules, names_for
from nethook.events import Event, EventStatus
from nethook.runtime import check_action

EDA_EVENTS_PER_S = 7_000.0
EDA_LABEL = "Event-Driven Ansible (ansible-rulebook 1.3.2), every event matches: quoted ~7,000 ev/s"

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 130)
err = Console(stderr=True, highlight=False)

VARS = {
    "sites": ["hq", "dc1", "dc2", "branch-12"],
    "critical": ["core-r1", "core-r2", "dist-s1"],
    "hook": "https://hooks.example.com/nethook",
}

# Conditions network engineers write (as in Ansible `when:`), true for the all-match events.
# {k} varies a constant per rule so no two rules are the same expression.
ALL_MATCH_CONDITIONS = [
    "event.data.mnemonic == 'LINK-3-UPDOWN' and event.data.state == 'down'",
    "event.data.severity | int <= {sev}",
    "event.data.device is match('^(core|dist)-')",
    "event.data.interface | regex_search('^Gi') is not none",
    "event.data.site in vars.sites",
    "event.data.device | lower in vars.critical",
    "event.data.interface is defined and event.data.interface.startswith('Gi')",
    "event.data.count | default(1) >= {k}",
    "event.data.facility | default('LINK') | upper == 'LINK'",
    "'UPDOWN' in event.data.mnemonic and event.data.vrf | default('default') == 'default'",
]

# Action arguments with templates: what gets rendered for each matched rule.
STEP_TEMPLATES = [
    {
        "log": {
            "message": "{{ event.data.device }} {{ event.data.interface }} is {{ event.data.state }}"
        }
    },
    {
        "notify": {
            "target": "slack",
            "url": "{{ vars.hook }}",
            "text": "*{{ event.data.device | upper }}* {{ event.data.interface }} down ({{ event.data.site }})",
        }
    },
    {
        "emit": {
            "type": "interface_down",
            "data": {
                "device": "{{ event.data.device }}",
                "interface": "{{ event.data.interface | regex_replace('^GigabitEthernet', 'Gi') }}",
                "severity": "{{ event.data.severity }}",
            },
        }
    },
    {
        "http": {
            "url": "{{ vars.hook }}/{{ event.data.device }}",
            "method": "POST",
            "json": {"iface": "{{ event.data.interface }}", "state": "{{ event.data.state }}"},
        }
    },
]

TYPES = ["syslog", "snmp_trap", "alertmanager", "github", "meraki"]
MNEMONICS = [
    "LINK-3-UPDOWN",
    "LINEPROTO-5-UPDOWN",
    "BGP-5-ADJCHANGE",
    "OSPF-5-ADJCHG",
    "SYS-5-CONFIG_I",
]


def all_match_rules(n: int) -> list[dict[str, Any]]:
    rules = []
    for i in range(n):
        cond = ALL_MATCH_CONDITIONS[i % len(ALL_MATCH_CONDITIONS)].format(sev=5 + i % 3, k=i % 2)
        on = {"type": "syslog"} if i % 3 else {"type": ["syslog", "snmp_trap"]}
        rules.append(
            {
                "name": f"rule {i}",
                "on": on,
                "when": cond,
                "do": [STEP_TEMPLATES[i % len(STEP_TEMPLATES)]],
            }
        )
    return rules


def typical_rules(n: int) -> list[dict[str, Any]]:
    """n rules over five types; each condition picks one mnemonic and a device group."""
    rules = []
    for i in range(n):
        mnemonic = MNEMONICS[(i // len(TYPES)) % len(MNEMONICS)]
        group = ("core", "dist", "edge", "wan")[(i // 25) % 4]
        cond = (
            f"event.data.mnemonic == '{mnemonic}' and event.data.device is match('^{group}-')"
            f" and event.data.severity | int <= {4 + i % 3}"
        )
        rules.append(
            {
                "name": f"rule {i}",
                "on": {"type": TYPES[i % len(TYPES)]},
                "when": cond,
                "do": [STEP_TEMPLATES[i % len(STEP_TEMPLATES)]],
            }
        )
    return rules


def make_event(i: int, type_: str, data: dict[str, Any]) -> Event:
    return Event(
        id=f"E{i:08d}",
        source="devices",
        type=type_,
        timestamp="2026-01-01T00:00:00Z",
        received_at=time.time(),
        data=data,
        meta={"client": "192.0.2.10"},
        status=EventStatus.RUNNING,
    )


def all_match_events(count: int, rng: random.Random) -> list[Event]:
    return [
        make_event(
            i,
            "syslog",
            {
                "mnemonic": "LINK-3-UPDOWN",
                "state": "down",
                "severity": rng.choice([3, 4, 5]),
                "device": rng.choice(["core-r1", "core-r2", "dist-s1"]),
                "interface": f"GigabitEthernet0/{rng.randrange(48)}",
                "site": rng.choice(VARS["sites"]),
                "count": rng.randrange(1, 9),
            },
        )
        for i in range(count)
    ]


def typical_events(count: int, rng: random.Random) -> list[Event]:
    return [
        make_event(
            i,
            rng.choice(TYPES),
            {
                "mnemonic": rng.choice(MNEMONICS),
                "state": rng.choice(["up", "down"]),
                "severity": rng.randrange(2, 8),
                "device": f"{rng.choice(['core', 'dist', 'edge', 'wan', 'lab'])}-r{rng.randrange(20)}",
                "interface": f"GigabitEthernet0/{rng.randrange(48)}",
                "site": rng.choice(VARS["sites"]),
            },
        )
        for i in range(count)
    ]


def one_event(book: Rulebook, event: Event) -> tuple[int, int]:
    """What the dispatcher does for one event before I/O: match, then render every step."""
    rendered = 0
    rules = book.match(event)
    for rule in rules:
        results: dict[str, Any] = {}
        for step in rule.steps:
            names = names_for(event, book.variables, None, results, None)
            results[str(step.index)] = step.render(names)
            rendered += 1
    return len(rules), rendered


@dataclass
class Result:
    scenario: str
    rules: int
    events: int
    matched_per_event: float
    candidates_per_event: float
    renders_per_event: float
    events_per_s: float
    best_events_per_s: float
    match_only_per_s: float
    us_per_event: float

    @property
    def ratio(self) -> float:
        return self.events_per_s / EDA_EVENTS_PER_S


def timed_rate(fn: Any, events: list[Event], seconds: float) -> float:
    """Events/s of ``fn`` over ``events`` (cycled) for about ``seconds``."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for ev in events:
            fn(ev)
        done += len(events)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


def measure(
    name: str, raw: list[dict[str, Any]], events: list[Event], seconds: float, repeats: int
) -> Result:
    book = compile_rules([RuleConfig.model_validate(r) for r in raw], VARS, check_action)
    matched = rendered = candidates = 0
    for ev in events:
        m, r = one_event(book, ev)
        matched += m
        rendered += r
        candidates += sum(rule.selects(ev) for rule in book.rules)
    if name == "all-match" and matched != len(events) * len(book.rules):
        raise SystemExit(f"all-match: {matched} matches for {len(events)} events: rules broken")
    timed_rate(lambda ev: one_event(book, ev), events, min(0.3, seconds))  # warm-up
    rates = []
    gc.collect()
    for _ in range(repeats):
        rates.append(timed_rate(lambda ev: one_event(book, ev), events, seconds))
    match_only = statistics.median(
        timed_rate(book.match, events, seconds) for _ in range(max(1, repeats // 2))
    )
    rate = statistics.median(rates)
    n = len(events)
    return Result(
        scenario=name,
        rules=len(book.rules),
        events=n,
        matched_per_event=matched / n,
        candidates_per_event=candidates / n,
        renders_per_event=rendered / n,
        events_per_s=rate,
        best_events_per_s=max(rates),
        match_only_per_s=match_only,
        us_per_event=1e6 / rate,
    )


def table(results: list[Result]) -> Table:
    t = Table(show_edge=False, pad_edge=False, title="nethook rule evaluation, one core")
    for col in (
        "scenario",
        "rules",
        "on: pass/ev",
        "matched/ev",
        "renders/ev",
        "match only ev/s",
        "match+render ev/s",
        "µs/event",
        "÷ EDA 7,000 (quoted)",
    ):
        t.add_column(col, justify="left" if col == "scenario" else "right")
    for r in results:
        t.add_row(
            r.scenario,
            str(r.rules),
            f"{r.candidates_per_event:.1f}",
            f"{r.matched_per_event:.1f}",
            f"{r.renders_per_event:.1f}",
            f"{r.match_only_per_s:,.0f}",
            f"{r.events_per_s:,.0f}",
            f"{r.us_per_event:,.1f}",
            f"{r.ratio:.2f}x",
        )
    return t


def eda_table(live: dict[str, float], all_match: Result) -> Table:
    t = Table(show_edge=False, pad_edge=False, title="ansible-rulebook 1.3.2, measured live here")
    for col in (
        "EDA mode (100 rules, every event matches)",
        "ev/s",
        "÷ 7,000 quoted",
        "nethook all-match ÷ this",
    ):
        t.add_column(col, justify="left" if col.startswith("EDA") else "right")
    for mode, rate in live.items():
        t.add_row(
            mode,
            f"{rate:,.0f}",
            f"{rate / EDA_EVENTS_PER_S:.2f}x",
            f"{all_match.events_per_s / rate:.2f}x",
        )
    return t


def pin_one_core() -> str:
    """Run on one CPU so "single core" is a fact, not a hope (Linux only)."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each timed run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per scenario (median)")
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--events", type=int, default=2000, help="distinct events, cycled")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--eda",
        type=Path,
        default=None,
        metavar="ANSIBLE_RULEBOOK",
        help="also measure ansible-rulebook live (path to its executable; see bench/_eda.py)",
    )
    ap.add_argument("--eda-events", type=int, default=5000, help="events per live EDA run")
    ap.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    args = ap.parse_args(argv)

    pinned = pin_one_core()
    rng = random.Random(args.seed)
    err.print(f"python {platform.python_version()} on {platform.machine()}, {pinned}")
    results = [
        measure(
            "all-match",
            all_match_rules(args.rules),
            all_match_events(args.events, rng),
            args.seconds,
            args.repeats,
        ),
        measure(
            "typical",
            typical_rules(args.rules),
            typical_events(args.events, rng),
            args.seconds,
            args.repeats,
        ),
    ]
    out.print(table(results))
    out.print(f"anchor: {EDA_LABEL}; quoted, not measured by this script.")
    out.print(
        "nethook: median of "
        f"{args.repeats} runs x {args.seconds:g}s; match = on: filters + compiled when:, "
        "render = names_for + Step.render of every matched step."
    )
    live: dict[str, float] | None = None
    if args.eda is not None:
        import _eda

        err.print(f"measuring {args.eda} live ({args.eda_events} events per mode)...")
        try:
            live = _eda.measure(
                args.eda,
                args.rules,
                # "first match" is ~10x faster: give it more events for a stable figure.
                {"all fire": args.eda_events, "first match": args.eda_events * 4},
            )
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            err.print(f"[red]EDA live measurement failed:[/] {exc}")
        else:
            out.print(eda_table(live, results[0]))
            out.print(
                "EDA: same conditions and events, action none, start-up subtracted, same core."
            )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "anchor": {
                        "label": EDA_LABEL,
                        "events_per_s": EDA_EVENTS_PER_S,
                        "measured": False,
                    },
                    "eda_live": live,
                    "python": platform.python_version(),
                    "results": [asdict(r) | {"ratio_to_anchor": r.ratio} for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
