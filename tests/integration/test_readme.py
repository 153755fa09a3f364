"""What the README promises a fresh machine: ``nethook serve`` with no config serves the
embedded default, and ``data/curl_tests/test_webhooks.sh`` gets the statuses it lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import NETHOOK, ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CURL_SCRIPT = ROOT / "data" / "curl_tests" / "test_webhooks.sh"


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETHOOK_")}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    # No --config: the embedded default, as `scripts/run` starts it (SQLite and the token
    # file in the working folder).
    proc = subprocess.Popen(
        [*NETHOOK, "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        yield url, tmp_path
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_default_serve_and_the_curl_script(default_server: tuple[str, Path]) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is required (it is what the README's tour uses)")
    url, workdir = default_server
    token_file = workdir / "nethook.token"
    assert token_file.exists() and token_file.stat().st_mode & 0o777 == 0o600
    assert (workdir / "nethook.db").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETHOOK_")}
    done = subprocess.run(
        ["bash", str(CURL_SCRIPT), url],
        cwd=workdir,  # the script reads ./nethook.token, as after `scripts/run`
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line}
    assert lines == {
        "joke_request": "202",
        "card_draw": "202",
        "device_check": "202",
        "malformed_body": "400",
        "health": "200",
    }
    # Without a token the script says how to get one instead of sending anything.
    token_file.rename(workdir / "elsewhere.token")
    missing = subprocess.run(
        ["bash", str(CURL_SCRIPT), url], cwd=workdir, capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "no token" in missing.stderr
