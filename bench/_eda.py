"""Live Event-Driven Ansible measurement for bench/rules.py (optional: ``--eda``).

Runs ``ansible-rulebook`` (Drools through JPY; needs Java 17 and ``ansible-galaxy`` beside
it, i.e. ansible-core in the same environment) on a rulebook shaped like the ``all-match``
scenario: 100 rules with the same kinds of conditions, all true for every event, action
``none``. Events come from a local source plugin that queues COUNT events and then a
``done`` marker that a last rule answers with ``shutdown``.

Rate = (COUNT - 1) / (time for COUNT events - time for 1 event): start-up (JVM, rule
compilation) is subtracted. The child inherits the bench's CPU affinity (one core).

Install (a separate venv keeps nethook's clean)::

    python3 -m venv /tmp/eda-venv
    /tmp/eda-venv/bin/pip install ansible-rulebook==1.3.2 ansible-core
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 .venv/bin/python bench/rules.py \
        --eda /tmp/eda-venv/bin/ansible-rulebook
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

SOURCE = '''\
"""Bench source: COUNT syslog-like events that every bench rule matches, then a marker."""
import random


async def main(queue, args):
    rng = random.Random(7)
    for i in range(int(args["count"])):
        await queue.put({"i": i, "data": {
            "mnemonic": "LINK-3-UPDOWN", "state": "down", "severity": rng.choice([3, 4, 5]),
            "device": rng.choice(["core-r1", "core-r2", "dist-s1"]),
            "interface": f"GigabitEthernet0/{rng.randrange(48)}",
            "site": rng.choice(["hq", "dc1", "dc2", "branch-12"]),
            "count": rng.randrange(1, 9)}})
    await queue.put({"done": True})
'''

# The all-match conditions of bench/rules.py in ansible-rulebook's condition language.
CONDITIONS = [
    'event.data.mnemonic == "LINK-3-UPDOWN" and event.data.state == "down"',
    "event.data.severity <= {sev}",
    'event.data.device is match("^(core|dist)-")',
    'event.data.interface is search("^Gi")',
    'event.data.site in ["hq", "dc1", "dc2", "branch-12"]',
    'event.data.device in ["core-r1", "core-r2", "dist-s1"]',
    'event.data.interface is defined and event.data.interface is match("Gi")',
    "event.data.count >= {k}",
    'event.data.mnemonic is search("LINK")',
    'event.data.mnemonic is search("UPDOWN") and event.data.state != "up"',
]

MODES = {
    "all fire": True,  # match_multiple_rules: every matching rule fires (as nethook runs all)
    "first match": False,  # ansible-rulebook's default: the first matching rule consumes it
}


def rulebook(n_rules: int, count: int, multiple: bool) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "name": f"r{i}",
            "condition": CONDITIONS[i % len(CONDITIONS)].format(sev=5 + i % 3, k=i % 2),
            "action": {"none": {}},
        }
        for i in range(n_rules)
    ]
    rules.append(
        {"name": "stop", "condition": "event.done == true", "action": {"shutdown": {"delay": 0}}}
    )
    return [
        {
            "name": "bench",
            "hosts": "all",
            "match_multiple_rules": multiple,
            "sources": [{"gen": {"count": count}}],
            "rules": rules,
        }
    ]


def _run(binary: Path, work: Path, n_rules: int, count: int, multiple: bool) -> float:
    book = work / f"rb-{count}-{int(multiple)}.yml"
    book.write_text(yaml.safe_dump(rulebook(n_rules, count, multiple), sort_keys=False))
    env = dict(os.environ)
    # ansible-rulebook looks for ansible-galaxy on PATH, even for local sources.
    env["PATH"] = f"{binary.parent}{os.pathsep}{env.get('PATH', '')}"
    default_jdk = Path("/usr/lib/jvm/java-17-openjdk-amd64")
    if "JAVA_HOME" not in env and default_jdk.exists():
        env["JAVA_HOME"] = str(default_jdk)
    started = time.perf_counter()
    done = subprocess.run(
        [str(binary), "-r", str(book), "-S", str(work / "sources"), "-i", str(work / "inv.yml")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=work,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "initiated shutdown" not in done.stdout + done.stderr:
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"ansible-rulebook failed (exit {done.returncode}):\n{tail}")
    return elapsed


def measure(binary: Path, n_rules: int, counts: dict[str, int]) -> dict[str, float]:
    """Events/s per mode (``counts``: events to send per mode)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nethook-eda-") as tmp:
        work = Path(tmp)
        (work / "sources").mkdir()
        (work / "sources" / "gen.py").write_text(SOURCE)
        (work / "inv.yml").write_text("all:\n  hosts:\n    localhost:\n")
        for mode, multiple in MODES.items():
            count = counts[mode]
            base = _run(binary, work, n_rules, 1, multiple)
            full = _run(binary, work, n_rules, count, multiple)
            out[mode] = (count - 1) / max(full - base, 1e-9)
    return out
