"""The command policy: what an event may make a router run (pure, no devices)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nethook.config import DevicesConfig
from nethook.devices.policy import (
    CommandPolicy,
    CommandRefused,
    check_config_line,
)
from nethook.exceptions import PermanentError

POLICY = CommandPolicy.from_prefixes(DevicesConfig().allowed_commands)


@pytest.mark.parametrize(
    "command",
    [
        "show ip interface brief",
        "  show version  ",
        "SHOW CLOCK",
        "show running-config | include hostname",
        "show run | section interface",
        "show run | begin router bgp",
        "show ip route | exclude 10.",
        "show logging | count LINK",
        "show run | inc ntp",
        "show run | i ntp",
        "show interfaces status | json",
        "ping 192.0.2.1 repeat 5",
        "traceroute 192.0.2.1",
        "dir flash:",
        "terminal length 0",
    ],
)
def test_allowed(command: str) -> None:
    assert POLICY.check(command) == command.strip()


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("show run | redirect flash:x", "'| redirect'"),
        ("show run | red flash:x", "'| red'"),  # IOS abbreviation of redirect
        ("show run | append tftp://192.0.2.9/x", "'| append'"),
        ("show run | tee flash:x", "'| tee'"),
        ("show run | t flash:x", "'| t'"),  # ambiguous with tee: refused
        ("show configuration | save /tmp/x", "'| save'"),
        ("show run | format flash:spec.odm", "'| format'"),
        ("show run | include a | redirect flash:x", "'| redirect'"),
        ("show run |", "empty filter"),
        ("show run > bootflash:x", "'>'"),
        ("show run >> bootflash:x", "'>'"),
        ("show clock; reload", "';'"),
        ("show version\nreload", "line break"),
        ("show version\rreload", "line break"),
        ("show version\u2028reload", "line break"),
        ("show version\x85reload", "line break"),
        ("show\tversion", "control character"),
        ("show version\x00", "control character"),
        ("show clock\x1b[2K", "control character"),
        ("show \u202eclock", "control character"),  # bidi override hides text
        ("show \u200bclock", "control character"),  # zero-width space
        ("conf t", "allowed command"),
        ("configure terminal", "allowed command"),
        ("sh run", "allowed command"),  # abbreviations could expand to anything
        ("reload", "allowed command"),
        ("copy running-config tftp:", "allowed command"),
        ("terminal monitor", "allowed command"),  # only `terminal length` is allowed
        ("showrun", "allowed command"),
        ("", "empty"),
        ("   ", "empty"),
        ("show " + "x" * 600, "longer than"),
    ],
)
def test_refused(command: str, reason: str) -> None:
    with pytest.raises(CommandRefused) as info:
        POLICY.check(command)
    assert reason in str(info.value)
    assert isinstance(info.value, PermanentError)  # never retried
    # The message shows the command escaped: a newline cannot forge a log line.
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_not_text_is_refused() -> None:
    with pytest.raises(CommandRefused, match="must be text"):
        POLICY.check(["show", "version"])


def test_configurable_prefixes() -> None:
    policy = CommandPolicy.from_prefixes(["show ip", "display"])
    assert policy.check("display interface brief")
    assert policy.check("show ip route")
    with pytest.raises(CommandRefused):
        policy.check("show version")  # only "show ip ..." here
    with pytest.raises(CommandRefused):
        policy.check("show iproute")  # word by word, not characters


def test_check_all_stops_at_the_first_violation() -> None:
    assert POLICY.check_all(["show clock", "show version"]) == ["show clock", "show version"]
    with pytest.raises(CommandRefused, match="conf t"):
        POLICY.check_all(["show clock", "conf t"])


def test_config_lines() -> None:
    assert check_config_line(" ip address 192.0.2.1 255.255.255.0  ") == (
        " ip address 192.0.2.1 255.255.255.0"
    )
    assert check_config_line("description uplink; to core") == "description uplink; to core"
    for bad in ["ntp server 1\nreload", "hostname x\r", "banner \x1b", "x" * 600]:
        with pytest.raises(CommandRefused):
            check_config_line(bad)


_SPECIAL = st.sampled_from(["\n", "\r", "\x00", "\x1b", "\t", ";", ">", "\u2028", "\x7f"])


@given(st.text(max_size=40), _SPECIAL, st.text(max_size=40))
def test_any_command_with_a_separator_or_control_is_refused(
    before: str, special: str, after: str
) -> None:
    with pytest.raises(CommandRefused):
        POLICY.check("show " + before + special + after)


@given(st.text(alphabet=st.characters(whitelist_categories=("L", "N")), max_size=30))
def test_plain_show_arguments_are_allowed(arg: str) -> None:
    assert POLICY.check(f"show {arg}") == f"show {arg}".strip()
