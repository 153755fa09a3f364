"""The rendered EEM scripts against a live nethook (issue part 5/7).

* The guestshell Python script (variant b) runs under ``python3 -I -S`` (no site-packages:
  the standard library only, as in a guestshell) and posts over HTTPS to a server whose
  certificate comes from ``nethook init --self-signed localhost``.
* The Tcl policy (variant c) runs in ``tclsh`` with the EEM commands it calls stubbed
  (event_reqinfo, sys_reqinfo_routername, action_syslog) and posts over plain HTTP.

Both post to a ``format: syslog`` source, so the stored events are parsed like syslog.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import NETHOOK, TOKEN, Server, free_port
from nethook.config import load_yaml
from nethook.eem import EemOptions, render_parts

pytestmark = pytest.mark.integration

EEM_TOKEN = "eem-source-token-6d2f9a41c7b3"
LINK_DOWN = (
    "*Nov 30 09:12:03.201: %LINK-3-UPDOWN: Interface GigabitEthernet2, changed state to down"
)
PYTHON = shutil.which("python3") or sys.executable
TCLSH = shutil.which("tclsh")

EEM_SOURCE = {
    "format": "syslog",
    "auth": {"type": "token", "header": "X-Webhook-Token", "secret": EEM_TOKEN},
}


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """``nethook init --self-signed localhost`` as a user runs it, plus an ``eem`` source."""
    workdir = tmp_path_factory.mktemp("eem")
    port = free_port()
    config = workdir / "nethook.yml"
    proc = subprocess.run(
        [*NETHOOK, "init", str(config), "--self-signed", "localhost", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    cfg = load_yaml(config.read_text())  # YAML 1.2 booleans: `on:` stays a key
    cfg["server"]["host"] = "127.0.0.1"
    cfg["store"] = {"url": f"sqlite:///{workdir / 'nethook.db'}", "data_dir": "data"}
    cfg["sources"]["eem"] = EEM_SOURCE
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = Server(config, port, workdir, scheme="https").start()
    yield srv, workdir / "tls" / "server.pem"
    srv.stop()


def _events(srv: Server, marker: str) -> list[dict[str, Any]]:
    rows = srv.db_rows(
        "SELECT type, source, data, delivery_id FROM events WHERE CAST(data AS TEXT) LIKE ?",
        (f"%{marker}%",),
    )
    return [
        {"type": r["type"], "source": r["source"], "delivery_id": r["delivery_id"]}
        | json.loads(r["data"])
        for r in rows
    ]


def _script(tmp_path: Path, url: str, ca_file: Path | None) -> Path:
    opts = EemOptions(url=url, ca_file=str(ca_file) if ca_file else None)
    path = tmp_path / "nethook_eem.py"
    path.write_text(render_parts(opts, ("script",))["script"])
    return path


def _run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env={}
    )


def test_guestshell_script_posts_over_https(
    https_server: tuple[Server, Path], tmp_path: Path
) -> None:
    srv, cert = https_server
    script = _script(tmp_path, f"https://localhost:{srv.port}/hooks/eem", cert)
    marker = "Gi7e41"
    message = LINK_DOWN.replace("GigabitEthernet2", marker)
    # What the applet runs: `--host $_info_routername --token $var --applet NAME -- 'MSG'`,
    # here with the quotes passed through as `guestshell run` may do.
    proc = _run(
        PYTHON,
        "-I",
        "-S",
        script,
        "--host",
        "r1",
        "--token",
        EEM_TOKEN,
        "--applet",
        "nethook-LINK-3-UPDOWN",
        "--",
        f"'{message}'",
    )
    assert proc.returncode == 0, proc.stderr
    assert "nethook: 202" in proc.stdout
    (event,) = _events(srv, marker)
    assert (event["type"], event["source"]) == ("syslog", "eem")
    assert (event["host"], event["device"]) == ("r1", "r1")
    assert (event["mnemonic"], event["interface"], event["state"]) == (
        "LINK-3-UPDOWN",
        marker,
        "down",
    )
    assert event["message"] == f"Interface {marker}, changed state to down"
    assert event["extra"] == {"applet": "nethook-LINK-3-UPDOWN", "via": "eem"}
    assert event["delivery_id"]  # the Idempotency-Key: a retry would be stored once


def test_guestshell_script_token_sources_and_failures(
    https_server: tuple[Server, Path], tmp_path: Path
) -> None:
    srv, cert = https_server
    url = f"https://localhost:{srv.port}/hooks/eem"
    script = _script(tmp_path, url, cert)
    # Message split into words (the applet's quotes consumed by a shell): joined again.
    words = ["%SYS-5-CONFIG_I:", "Configured", "from", "console", "by", "admin", "on", "vty0"]
    words += ["(10.0.0.5)", "mk91c"]
    env_token = subprocess.run(
        [PYTHON, "-I", "-S", str(script), "--host", "r2", "--", *words],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NETHOOK_TOKEN": EEM_TOKEN},
    )
    assert env_token.returncode == 0, env_token.stderr
    (event,) = _events(srv, "mk91c")
    assert (event["user"], event["device"]) == ("admin", "r2")
    # An EEM variable that is not defined arrives unexpanded and no other token exists.
    missing = _run(PYTHON, "-I", "-S", script, "--token", "$_nethook_token", "--", "x")
    assert missing.returncode == 2 and "no token" in missing.stderr
    wrong = _run(PYTHON, "-I", "-S", script, "--token", "wrong-token-0000000000", "--", "x")
    assert wrong.returncode == 1 and "401" in wrong.stderr
    # Without the CA file the self-signed certificate is refused: nothing is sent.
    unverified = _run(
        PYTHON, "-I", "-S", script, "--cafile", "", "--attempts", "1", "--token", EEM_TOKEN,
        "--", "unverified-9f1",
    )  # fmt: skip
    assert unverified.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
    assert _events(srv, "unverified-9f1") == []


@pytest.fixture
def http_server(make_server: Callable[..., Server]) -> Server:
    return make_server(
        sources={"default": {"auth": {"type": "token", "secret": TOKEN}}, "eem": EEM_SOURCE},
        rules=[],
    )


TCL_STUBS = """
namespace eval ::cisco::eem {
    proc event_register_syslog {args} {}
    proc event_reqinfo {} { return [list msg $::test_message event_id 1] }
    proc sys_reqinfo_routername {} { return [list routername r9] }
    proc action_syslog {args} { puts stderr "action_syslog $args" }
    namespace export *
}
namespace eval ::cisco::lib {
    proc cli_open {} { error "no CLI in this test" }
    namespace export *
}
set _nethook_pattern {%LINK-3-UPDOWN}
set _nethook_token {@TOKEN@}
set test_message {@MESSAGE@}
source {@POLICY@}
"""


def _tcl_main(token: str, message: str, policy: Path) -> str:
    return (
        TCL_STUBS.replace("@TOKEN@", token)
        .replace("@MESSAGE@", message)
        .replace("@POLICY@", str(policy))
    )


def test_tcl_policy_posts_over_http(http_server: Server, tmp_path: Path) -> None:
    if TCLSH is None:
        pytest.fail("tclsh is required for the EEM Tcl test (Debian package tcl)")
    url = f"http://127.0.0.1:{http_server.port}/hooks/eem"
    policy = tmp_path / "nethook_eem.tcl"
    policy.write_text(render_parts(EemOptions(url=url), ("tcl",))["tcl"])
    # Quotes, a backslash and non-ASCII: the policy's JSON must carry them intact.
    message = (
        '*Nov 30 10:01:07.512: %SYS-5-CONFIG_I: Configured from console by "ad\\min" on vty0 '
        "(10.0.0.5) caf\u00e9 tcl4e2"
    )
    main = tmp_path / "main.tcl"
    main.write_text(_tcl_main(EEM_TOKEN, message, policy), encoding="utf-8")
    proc = subprocess.run(
        [TCLSH, str(main)], capture_output=True, text=True, timeout=30, env={"LANG": "C.UTF-8"}
    )
    assert proc.returncode == 0, proc.stderr
    (event,) = _events(http_server, "tcl4e2")
    assert (event["type"], event["host"], event["device"]) == ("syslog", "r9", "r9")
    assert event["mnemonic"] == "SYS-5-CONFIG_I"
    assert event["user"] == '"ad\\min"'
    assert event["message"].endswith("caf\u00e9 tcl4e2")
    assert event["extra"] == {"via": "eem-tcl"}
    # A wrong token: the policy reports the refusal through action_syslog and exits 1.
    main.write_text(_tcl_main("wrong-token", "x tcl-wrong", policy), encoding="utf-8")
    refused = subprocess.run([TCLSH, str(main)], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "post refused" in refused.stderr
