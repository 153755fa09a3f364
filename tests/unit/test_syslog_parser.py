"""The syslog parser (issue part 5/7): pure, no sockets. Every line of the vendor vector,
RFC 3164 and RFC 5424 as ``logger`` writes them, the fields rules use, and lines that do not
parse (kept whole, never dropped)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import VECTORS
from nethook.ingress.syslog_parser import event_data, extract_fields, parse


def _vector_lines() -> list[str]:
    text = (VECTORS / "cisco_syslog.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


LINES = _vector_lines()

# For each vector line: the fields a rule would read (subset of the event data).
EXPECTED: list[dict[str, Any]] = [
    {
        "format": "cisco",
        "facility": "local7",
        "severity": 3,
        "mnemonic": "LINK-3-UPDOWN",
        "host": "r1",
        "seq": 1431,
        "timestamp": "Nov 30 09:12:03.201",
        "clock_synced": False,
        "interface": "GigabitEthernet2",
        "state": "down",
        "message": "Interface GigabitEthernet2, changed state to down",
    },
    {"mnemonic": "LINEPROTO-5-UPDOWN", "interface": "GigabitEthernet2", "state": "down"},
    {"mnemonic": "LINK-3-UPDOWN", "interface": "GigabitEthernet2", "state": "up", "seq": 1433},
    {"mnemonic": "LINEPROTO-5-UPDOWN", "interface": "GigabitEthernet2", "state": "up"},
    {
        "mnemonic": "LINK-5-CHANGED",
        "host": "router1",
        "clock_synced": True,
        "interface": "GigabitEthernet3",
        "state": "administratively down",
    },
    {
        # No hostname in the line: host falls back to the sender's address.
        "mnemonic": "SYS-5-CONFIG_I",
        "host": "192.0.2.99",
        "seq": 88,
        "timestamp": "Nov 30 10:01:07.512 UTC",
        "user": "admin",
        "source": "10.0.0.5",
        "line": "vty0",
    },
    {
        "mnemonic": "BGP-5-ADJCHANGE",
        "host": "r2",
        "neighbor": "192.0.2.1",
        "state": "down",
        "reason": "BGP Notification sent",
    },
    {"mnemonic": "BGP-5-ADJCHANGE", "neighbor": "192.0.2.1", "state": "up"},
    {
        "mnemonic": "OSPF-5-ADJCHG",
        "host": "r3",
        "neighbor": "10.255.0.2",
        "interface": "GigabitEthernet1",
        "from_state": "full",
        "state": "down",
        "process": "1",
    },
    {"mnemonic": "SYS-2-MALLOCFAIL", "severity": 2, "facility": "local7", "host": "r3"},
    {
        "format": "rfc5424",
        "mnemonic": "LINK-3-UPDOWN",
        "host": "r1",
        "timestamp": "2026-11-30T09:12:03.201Z",
        "interface": "GigabitEthernet2",
        "state": "down",
    },
]


def test_vector_has_the_expected_lines() -> None:
    assert len(LINES) == len(EXPECTED) == 11


@pytest.mark.parametrize(("line", "expected"), list(zip(LINES, EXPECTED, strict=True)))
def test_every_vector_line(line: str, expected: dict[str, Any]) -> None:
    data = event_data(parse(line), address="192.0.2.99")
    for key, value in expected.items():
        assert data[key] == value, key
    assert data["raw"] == line
    assert data["device"] == data["host"]  # no inventory: the hostname is the device


def test_logger_rfc3164_wrapping_cisco_text() -> None:
    msg = parse(
        b"<13>Nov 30 09:12:03 labhost root: %LINK-3-UPDOWN: Interface Gi0/1, "
        b"changed state to down\n"
    )
    assert msg.format == "rfc3164"
    assert (msg.host, msg.app, msg.facility) == ("labhost", "root", 1)
    # The Cisco severity wins over logger's default user.notice.
    assert msg.severity == 3
    assert msg.mnemonic == "LINK-3-UPDOWN"
    assert msg.fields == {"interface": "Gi0/1", "state": "down"}


def test_logger_rfc5424_with_structured_data() -> None:
    line = (
        '<13>1 2026-11-30T05:10:26.815660+00:00 labhost root 4711 ID47 [timeQuality tzKnown="1" '
        'isSynced="0"][ex@32473 k="a \\"quoted\\" \\]value"] \ufeffplain text'
    )
    msg = parse(line)
    assert msg.format == "rfc5424"
    assert (msg.host, msg.app, msg.procid, msg.msgid) == ("labhost", "root", "4711", "ID47")
    assert msg.timestamp == "2026-11-30T05:10:26.815660+00:00"
    assert msg.structured_data == {
        "timeQuality": {"tzKnown": "1", "isSynced": "0"},
        "ex@32473": {"k": 'a "quoted" ]value'},
    }
    assert msg.message == "plain text"
    assert msg.mnemonic is None


def test_rfc5424_nil_values() -> None:
    msg = parse("<165>1 - - - - - -")
    assert msg.format == "rfc5424"
    assert (msg.facility, msg.severity) == (20, 5)
    assert msg.host is None and msg.timestamp is None and msg.message == ""


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        (
            "<189>12: 00:01:23: %OSPFv3-5-ADJCHG: Process 1, IPv6, Nbr 10.0.0.2 on Gi0/1 "
            "from LOADING to FULL, Loading Done",
            {"neighbor": "10.0.0.2", "interface": "Gi0/1", "state": "full"},
        ),
        (
            "<189>13: 1d02h: %DUAL-5-NBRCHANGE: EIGRP-IPv4 100: Neighbor 10.1.1.2 "
            "(GigabitEthernet0/1) is down: holding time expired",
            {"neighbor": "10.1.1.2", "interface": "GigabitEthernet0/1", "state": "down"},
        ),
        (
            "<189>14: r9: Nov 30 10:02:41 UTC: %BGP-5-ADJCHANGE: neighbor 2001:db8::1 vpn vrf "
            "CUST Up",
            {"neighbor": "2001:db8::1", "vrf": "CUST", "state": "up"},
        ),
        (
            "*Nov 30 09:12:03.201: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.5)",
            {"source": "10.0.0.5", "line": "vty0"},
        ),
        (
            "<189>15: %SYS-5-CONFIG_I: Configured from console by console",
            {"source": "console", "line": "console"},
        ),
        (
            "<190>%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: admin] [Source: 10.1.1.1] "
            "[localport: 22] at 10:00:00 UTC",
            {"user": "admin", "source": "10.1.1.1"},
        ),
    ],
)
def test_more_cisco_shapes(line: str, fields: dict[str, Any]) -> None:
    msg = parse(line)
    assert msg.mnemonic is not None
    for key, value in fields.items():
        assert msg.fields[key] == value, key


def test_nxos_preamble_and_eem_message_without_pri() -> None:
    nxos = parse(
        "<189>: 2026 Nov 30 10:00:00 UTC: %ETHPORT-5-IF_DOWN_LINK_FAILURE: "
        "Interface Ethernet1/1 is down (Link failure)"
    )
    assert (nxos.format, nxos.mnemonic) == ("cisco", "ETHPORT-5-IF_DOWN_LINK_FAILURE")
    assert nxos.timestamp == "2026 Nov 30 10:00:00 UTC"
    # What EEM's $_syslog_msg holds: no PRI, the local timestamp, the mnemonic.
    eem = parse("*Nov 30 09:12:03.201: %LINK-3-UPDOWN: Interface Gi2, changed state to down")
    assert eem.facility is None and eem.severity == 3
    assert eem.fields == {"interface": "Gi2", "state": "down"}


@pytest.mark.parametrize(
    "line",
    [
        "complete garbage without any header",
        "<999>not a valid PRI",
        "",
        "\x00\x01\x02 binary-ish",
        "the cost is 5%FOO-1-BAR: x",
    ],
)
def test_unparsable_lines_are_kept(line: str) -> None:
    msg = parse(line)
    assert msg.format == "unparsed"
    assert msg.mnemonic is None
    assert msg.raw == line.strip("\r\n\x00")
    data = event_data(msg, address="10.0.0.1")
    assert data["message"] == msg.raw.strip()
    assert data["host"] == data["device"] == "10.0.0.1"


def test_pri_only_is_a_lenient_rfc3164_message() -> None:
    msg = parse("<13>just some text")
    assert (msg.format, msg.facility, msg.severity, msg.message) == (
        "rfc3164",
        1,
        5,
        "just some text",
    )


def test_mnemonic_deep_in_free_text_is_not_a_mnemonic() -> None:
    msg = parse("<13>Nov 30 09:12:03 h app: user wrote: see %LINK-3-UPDOWN: in the docs")
    assert msg.mnemonic is None
    assert msg.app == "app"


def test_invalid_utf8_is_replaced_not_refused() -> None:
    msg = parse(b"<13>Nov 30 09:12:03 h app: caf\xe9")
    assert msg.message == "caf\ufffd"


def test_extract_fields_unknown_mnemonic() -> None:
    assert extract_fields("FOO-3-BAR", "Interface Gi1, changed state to down") == {}
    assert extract_fields("LINK-3-UPDOWN", "something unexpected") == {}


def test_event_data_device_and_field_precedence() -> None:
    msg = parse(LINES[0])
    data = event_data(msg, address="10.0.0.1", device="core-r1")
    assert (data["host"], data["device"], data["address"]) == ("r1", "core-r1", "10.0.0.1")
    assert data["severity_name"] == "err"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_never_raises(blob: bytes) -> None:
    msg = parse(blob)
    data = event_data(msg, address="10.0.0.1")
    assert isinstance(data["message"], str)
    assert data["raw"] == msg.raw


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises_on_text(text: str) -> None:
    assert parse("<189>1: r1: *Nov 30 09:12:03.201: %LINK-3-UPDOWN: " + text).mnemonic
    parse(text)
