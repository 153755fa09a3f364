"""``nethook rules test EVENT.json --config FILE``: matches, reasons, rendered actions, and
nothing run (a stand-in target must see no request)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from conftest import NETHOOK

pytestmark = pytest.mark.integration


def config(tmp_path: Path, hook: str) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{tmp_path / 'never.db'}", "data_dir": str(tmp_path / "d")},
        "sources": {"devices": {"auth": {"type": "none"}}},
        "vars": {"core": ["r1", "r2"]},
        "notify": {"allow_private": True},
        "rules": [
            {
                "name": "alerts only",
                "on": {"type": "alert"},
                "do": [{"log": {"message": "x"}}],
            },
            {
                "name": "bgp flap",
                "on": {"type": "syslog"},
                "when": "event.data.mnemonic is match('BGP-5-ADJCHANGE')",
                "do": [{"log": {"message": "bgp"}}],
            },
            {
                "name": "core interface down",
                "on": {"type": "syslog", "source": "devices"},
                "when": "event.data.mnemonic == 'LINK-3-UPDOWN' and event.data.device in vars.core",
                "throttle": {"once_within": "60s", "group_by": ["event.data.interface"]},
                "do": [
                    {
                        "notify": {
                            "target": "slack",
                            "url": hook,
                            "text": "{{ event.data.device }} {{ event.data.interface | upper }} down",
                        }
                    },
                    {"http": {"url": hook, "method": "POST", "json": {"n": "{{ event.data.n }}"}}},
                    {
                        "when": "event.data.n > 10",
                        "log": {"message": "many: {{ event.data.n }}"},
                    },
                ],
            },
            {
                "name": "edge only",
                "on": {"type": "syslog"},
                "when": "event.data.device not in vars.core",
                "do": [{"log": {"message": "edge"}}],
            },
        ],
    }


def run_rules_test(tmp_path: Path, event: dict[str, Any], cfg: dict[str, Any]) -> str:
    cfg_path = tmp_path / "rules.yml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ev_path = tmp_path / "event.json"
    ev_path.write_text(json.dumps(event))
    done = subprocess.run(
        [*NETHOOK, "rules", "test", str(ev_path), "--config", str(cfg_path), "--source", "devices"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rules_test_explains_matches_non_matches_and_renders(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    hook = httpserver.url_for("/hook")
    event = {
        "event": "syslog",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"mnemonic": "LINK-3-UPDOWN", "device": "r1", "interface": "gi2", "n": 3},
    }
    out = run_rules_test(tmp_path, event, config(tmp_path, hook))
    lines = [line.rstrip() for line in out.splitlines()]

    assert "event type syslog from source devices" in out
    # Non-matches say why: the on: filter, or the condition with its value.
    assert "  no   alerts only: on.type ['alert'] does not include 'syslog'" in lines
    assert (
        "  no   bgp flap: when: event.data.mnemonic is match('BGP-5-ADJCHANGE') -> False" in lines
    )
    assert "  no   edge only: when: event.data.device not in vars.core -> False" in lines
    # The match, its storm control, and each action rendered with the event's values.
    assert "  yes  core interface down (storm control: once_within 60s)" in lines
    rendered = "\n".join(lines)
    assert f'0. notify: {{"target":"slack","url":"{hook}","text":"r1 GI2 down"}}' in rendered
    assert f'1. http: {{"url":"{hook}","method":"POST","json":{{"n":3}}}}' in rendered
    assert '2. log when event.data.n > 10: {"message":"many: 3"}' in rendered
    assert lines[-1] == "1 of 4 rules match; nothing was run."
    # Nothing ran: the stand-in saw no request and no store was created.
    assert httpserver.log == []
    assert not (tmp_path / "never.db").exists()


def test_rules_test_with_no_match(tmp_path: Path, httpserver: HTTPServer) -> None:
    event = {"event": "syslog", "data": {"mnemonic": "SYS-5-CONFIG_I", "device": "r1"}}
    out = run_rules_test(tmp_path, event, config(tmp_path, httpserver.url_for("/hook")))
    assert (
        "no   core interface down: when: event.data.mnemonic == 'LINK-3-UPDOWN' and "
        "event.data.device in vars.core -> False" in out
    )
    assert "0 of 4 rules match; nothing was run." in out
    assert httpserver.log == []
