"""``nethook eem render`` (issue part 5/7): golden files for the three variants, option
checks, and the generated script's promises (it compiles; standard library only).

Regenerate the golden files after an intended change with
``NETHOOK_UPDATE_GOLDEN=1 pytest tests/unit/test_eem.py``.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nethook.cli import app
from nethook.eem import EemOptions, render, render_parts
from nethook.exceptions import ConfigError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"

FULL = EemOptions(
    url="https://nethook.example:8443/hooks/eem",
    patterns=("%LINK-3-UPDOWN", "%SYS-5-CONFIG_I"),
    source_interface="GigabitEthernet0/0",
    vrf="Mgmt-vrf",
    ca_file="/bootflash/guest-share/nethook-ca.pem",
    tcl_url="http://10.0.0.10:8080/hooks/eem",
)
TCP_V6 = EemOptions(
    url="https://[2001:db8::10]:8443/hooks/eem",
    transport="tcp",
    syslog_port=6514,
    trap_level="notifications",
    token_var="nh_token",
    token="s3cr3t-token-value",
)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NETHOOK_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}: run with NETHOOK_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


def test_golden_all_variants() -> None:
    _golden("eem_all.txt", render(FULL))


def test_golden_tcp_ipv6_custom_token() -> None:
    _golden("eem_tcp_ipv6.txt", render(TCP_V6))


def test_three_variants_and_their_essentials() -> None:
    parts = render_parts(FULL)
    assert list(parts) == ["syslog", "applet", "script", "tcl"]
    assert "logging host nethook.example vrf Mgmt-vrf transport udp port 5514" in parts["syslog"]
    assert "logging source-interface GigabitEthernet0/0 vrf Mgmt-vrf" in parts["syslog"]
    applet = parts["applet"]
    assert applet.count("event manager applet ") == 2
    assert 'event syslog pattern "%LINK-3-UPDOWN"' in applet
    assert "guestshell run python3 /bootflash/guest-share/nethook_eem.py" in applet
    assert "--token $_nethook_token" in applet and "'$_syslog_msg'" in applet
    assert "http post" not in applet.lower()  # the command that does not exist
    assert "::cisco::eem::event_register_syslog pattern $_nethook_pattern" in parts["tcl"]
    assert "%LINK-3-UPDOWN|%SYS-5-CONFIG_I" in parts["tcl"]
    assert "set nethook_port 8080" in parts["tcl"]
    ipv6 = render_parts(TCP_V6, ("syslog",))["syslog"]
    assert "logging host ipv6 2001:db8::10 transport tcp port 6514" in ipv6


def test_script_is_stdlib_python3() -> None:
    script = render_parts(FULL, ("script",))["script"]
    tree = ast.parse(script)
    compile(tree, "nethook_eem.py", "exec")
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules and modules <= set(sys.stdlib_module_names), modules
    assert "URL = 'https://nethook.example:8443/hooks/eem'" in script
    assert "CA_FILE = '/bootflash/guest-share/nethook-ca.pem'" in script


def test_tcl_warning_for_https() -> None:
    opts = EemOptions(url="https://nethook.example/hooks/eem")
    render(opts)
    assert any("IOS Tcl has no TLS" in w for w in opts.warnings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "ftp://x/y"),
        ("tcl_url", "https://x/y"),
        ("token_var", "bad var"),
        ("token", "has space"),
        ("header", "Bad: header"),
        ("patterns", ('%LINK" \n event timer',)),
        ("patterns", ()),
        ("source_interface", "Gi0/0\nno logging"),
        ("vrf", "a b"),
        ("transport", "sctp"),
        ("syslog_port", 0),
        ("trap_level", "loud"),
        ("applet_name", "1-bad"),
        ("ca_file", "relative.pem"),
    ],
)
def test_options_that_would_break_config_are_refused(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"url": "https://n.example/hooks/eem", field: value}
    opts = EemOptions(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        render(opts)


def test_cli_prints_the_three_variants(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "eem",
            "render",
            "--url",
            "https://nethook.example:8443/hooks/eem",
            "--pattern",
            "%LINK-3-UPDOWN",
            "--vrf",
            "Mgmt-vrf",
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("(a) syslog", "(b) EEM applet", "(b) guestshell script", "(c) EEM Tcl"):
        assert heading in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nethook-applet.ios",
        "nethook-syslog.ios",
        "nethook_eem.py",
        "nethook_eem.tcl",
    ]
    assert os.access(tmp_path / "nethook_eem.py", os.X_OK)
    only = runner.invoke(app, ["eem", "render", "--url", "http://n/e", "-v", "syslog"])
    assert only.exit_code == 0 and "event manager" not in only.stdout
    bad = runner.invoke(app, ["eem", "render", "--url", "http://n/e", "--vrf", "a;b c"])
    assert bad.exit_code == 2
