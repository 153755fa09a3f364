"""`nethook demo --once` runs to the end on a machine with no devices and no internet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nethook.cli",
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    for label in (
        "joke_request",
        "card_draw",
        "device_status_check",
        "syslog LINK-3-UPDOWN",
        "alertmanager InterfaceDown",
    ):
        assert label in out
    assert out.count("succeeded") >= 5
    assert "Dashboard: http://127.0.0.1:" in out
    # The device answered for real: its output and a versioned backup are on disk.
    backups = list((tmp_path / "demo" / "data" / "backups" / "r1").glob("*.cfg"))
    assert len(backups) == 1 and "hostname r1" in backups[0].read_text()
    artifacts = list((tmp_path / "demo" / "data" / "artifacts").rglob("*"))
    assert any(
        "GigabitEthernet2 is down" in p.read_text(errors="ignore") for p in artifacts if p.is_file()
    )
