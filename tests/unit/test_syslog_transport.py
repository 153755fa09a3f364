"""Syslog plumbing without sockets (issue part 5/7): ``listen:`` parsing, RFC 6587 framing,
and device resolution through the inventory shapes the listener accepts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from nethook.exceptions import ConfigError
from nethook.ingress.syslog import resolve_device
from nethook.ingress.syslog_transport import Framer, parse_listen, plain_address


def test_parse_listen() -> None:
    parsed = parse_listen("udp://0.0.0.0:514, tcp://[::]:6514 udp://[::1]:0", "x")
    assert [str(a) for a in parsed] == ["udp://0.0.0.0:514", "tcp://[::]:6514", "udp://[::1]:0"]
    assert (parsed[1].transport, parsed[1].host, parsed[1].port) == ("tcp", "::", 6514)
    for bad in (None, "", "http://1.2.3.4:5", "udp://1.2.3.4", "udp://1.2.3.4:99999", "1.2.3.4"):
        with pytest.raises(ConfigError, match=r"sources\.x\.listen"):
            parse_listen(bad, "sources.x.listen")


def _config(sources: dict[str, Any]) -> Any:
    from nethook.config import from_dict

    return from_dict({"store": {"url": "sqlite:///:memory:"}, "sources": sources})


def test_config_check_finds_bad_and_overlapping_listeners() -> None:
    from nethook.runtime import Runtime, check_syslog_listeners

    cfg = _config(
        {
            "default": {"auth": {"type": "none"}},
            "a": {"type": "syslog", "listen": "udp://127.0.0.1:5514, tcp://127.0.0.1:5514"},
            # Same port, other host: fine. Same port on the wildcard: overlaps a.
            "b": {"type": "syslog", "listen": "udp://127.0.0.2:5514"},
            "c": {"type": "syslog", "listen": "tcp://[::]:5514"},
            "d": {"type": "syslog", "listen": "http://127.0.0.1:80"},
            "e": {"type": "syslog", "listen": "udp://127.0.0.1:6514", "allow": ["10.0.0.0/33"]},
            # 0.0.0.0 takes IPv4 only: no clash with ::1. Any spelling of :: takes all.
            "f": {"type": "syslog", "listen": "udp://0.0.0.0:5600 udp://[::1]:5600"},
            "g": {"type": "syslog", "listen": "udp://[0:0::0]:5601, tcp://localhost:5601"},
            "h": {"type": "syslog", "listen": "udp://10.0.0.1:5601 tcp://LOCALHOST:5601"},
        }
    )
    errors = check_syslog_listeners(cfg)
    assert len(errors) == 5, errors
    assert errors[3] == "sources.h.listen: udp://10.0.0.1:5601 overlaps udp port 5601 of sources.g"
    assert errors[4].startswith("sources.h.listen: tcp://localhost:5601 overlaps tcp port 5601")
    errors = errors[:3]
    assert errors[0].startswith(
        "sources.c.listen: tcp://[::]:5514 overlaps tcp port 5514 of sources.a"
    )
    assert errors[1].startswith("sources.d.listen: 'http://127.0.0.1:80'")
    assert errors[2].startswith("sources.e.allow")
    with pytest.raises(ConfigError) as info:
        Runtime.build(cfg)
    assert info.value.errors[:3] == errors


def test_plain_address() -> None:
    assert plain_address("::ffff:10.0.0.1") == "10.0.0.1"
    assert plain_address("2001:DB8::1") == "2001:db8::1"
    assert plain_address("fe80::1%eth0") == "fe80::1"
    assert plain_address("not-an-ip") == "not-an-ip"


# --------------------------------------------------------------------------- framing


def test_newline_and_octet_counting_mixed() -> None:
    f = Framer(limit=1000)
    stream = b"<13>one\n10 <13>two\nxx\n\r\n<13>three\n"
    assert f.feed(stream) == [b"<13>one", b"<13>two\nxx", b"<13>three"]
    assert f.flush() is None


def test_frames_split_anywhere() -> None:
    stream = b"9 <13>a b c<189>1431: r1: %LINK-3-UPDOWN: x\n5 <13>z"
    for cut in range(len(stream) + 1):
        f = Framer(limit=1000)
        frames = f.feed(stream[:cut]) + f.feed(stream[cut:])
        assert frames == [b"<13>a b c", b"<189>1431: r1: %LINK-3-UPDOWN: x", b"<13>z"], cut


def test_digits_without_space_are_a_line() -> None:
    # Cisco text without a PRI starts with its sequence number: newline framing.
    f = Framer(limit=1000)
    assert f.feed(b"1431: r1: %SYS-5-CONFIG_I: x\n") == [b"1431: r1: %SYS-5-CONFIG_I: x"]
    assert f.feed(b"12345678901234 not a length\n") == [b"12345678901234 not a length"]


def test_last_message_without_newline_at_end_of_stream() -> None:
    f = Framer(limit=1000)
    assert f.feed(b"<13>first\n<13>last") == [b"<13>first"]
    assert f.flush() == b"<13>last"


def test_over_long_line_is_skipped_and_counted() -> None:
    f = Framer(limit=10)
    assert f.feed(b"<13>" + b"x" * 20) == []
    assert f.feed(b"yyy\n<13>ok\n") == [b"<13>ok"]
    assert f.too_large == 1 and not f.broken
    assert f.feed(b"<13>" + b"z" * 20 + b"\n<13>ok2\n") == [b"<13>ok2"]
    assert f.too_large == 2


def test_bogus_octet_count_breaks_the_stream() -> None:
    f = Framer(limit=100)
    assert f.feed(b"5 <13>a999999 <13>b") == [b"<13>a"]
    assert f.broken and f.too_large == 1
    assert f.feed(b"<13>more\n") == []
    assert f.flush() is None


# --------------------------------------------------------------------------- devices


class FakeInventory:
    """The lookups part 4/7's Inventory offers: by_address and find."""

    def __init__(self) -> None:
        self.devices = {
            "r1": SimpleNamespace(name="r1", host="192.0.2.11"),
            "core-sw": SimpleNamespace(name="core-sw", host="sw1.example"),
        }

    def by_address(self, address: str) -> Any:
        return next((d for d in self.devices.values() if d.host == address), None)

    def find(self, key: str) -> Any:
        return self.devices.get(key) or self.by_address(key)


def test_resolve_device_object_inventory() -> None:
    inv = FakeInventory()
    assert resolve_device(inv, "192.0.2.11", "whatever") == "r1"
    # A relay's address is unknown: the hostname in the message decides.
    assert resolve_device(inv, "198.51.100.7", "core-sw") == "core-sw"
    assert resolve_device(inv, "198.51.100.7", "unknown") is None
    assert resolve_device(None, "192.0.2.11", "r1") is None


def test_resolve_device_template_view_and_mapping() -> None:
    view = {
        "devices": {
            "r1": {"name": "r1", "host": "192.0.2.11", "addresses": ["2001:db8::11"]},
            "r2": {"name": "r2", "host": "r2.example", "addresses": []},
        },
        "groups": {},
        "tags": {},
    }
    assert resolve_device(view, "192.0.2.11", None) == "r1"
    assert resolve_device(view, "2001:DB8::11", None) == "r1"
    assert resolve_device(view, "::ffff:192.0.2.11", None) == "r1"
    assert resolve_device(view, "10.9.9.9", "r2") == "r2"
    assert resolve_device(view, "10.9.9.9", "r2.example") == "r2"
    assert resolve_device({"r9": {"host": "10.0.0.9"}}, "10.0.0.9", None) == "r9"


def test_resolve_device_lookup_raising_means_not_found() -> None:
    class Raising:
        def resolve(self, key: str) -> Any:
            raise KeyError(key)

    assert resolve_device(Raising(), "10.0.0.1", "r1") is None
