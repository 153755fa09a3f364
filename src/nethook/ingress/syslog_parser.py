"""Syslog lines -> structured messages. Pure: no I/O, no clock, no configuration.

Shapes recognised, in this order:

* RFC 5424: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD...] MSG``;
* Cisco IOS / IOS-XE: ``<PRI>seq: host: *timestamp: %FAC-SEV-MNEMONIC: text`` where every part
  before ``%`` is optional (``service sequence-numbers``, ``logging origin-id``, ``service
  timestamps`` each add one), ``*`` marks an unsynchronised clock;
* RFC 3164 (BSD): ``<PRI>Mmm dd hh:mm:ss HOST TAG[pid]: MSG``.

A Cisco ``%FAC-SEV-MNEMONIC:`` is also recognised at the start of an RFC 5424 or 3164 MSG
(relays and ``logger`` wrap Cisco text that way). A line that fits none of these is kept
whole as the message (format ``unparsed``): nothing a device sends is dropped.

For well-known messages the text is mined for fields rules need (interface and state,
neighbor and state, user and source); see :func:`extract_fields`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FACILITY_NAMES = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)
SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# Formats a message can have (SyslogMessage.format).
RFC5424 = "rfc5424"
RFC3164 = "rfc3164"
CISCO = "cisco"
UNPARSED = "unparsed"

_PRI = re.compile(r"<(\d{1,3})>")
_5424 = re.compile(
    r"(?P<version>[1-9]\d{0,2}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) ?(?P<rest>.*)",
    re.S,
)
# A timestamp as BSD syslog and Cisco write it: "Nov 30 09:12:03", "Nov  3 2026 09:12:03.201".
_BSD_TIME = r"[A-Z][a-z]{2} +\d{1,2}(?: \d{4})? \d{1,2}:\d\d:\d\d(?:\.\d+)?"
_ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_3164 = re.compile(
    rf"(?P<ts>{_BSD_TIME}|{_ISO_TIME}) +(?:(?P<host>[^\s:\[\]]+) +)?(?P<msg>.*)",
    re.S,
)
_TAG = re.compile(r"(?P<tag>[^\s:\[\]]{1,48})(?:\[(?P<pid>[^\]\s]{1,32})\])?: ?(?P<text>.*)", re.S)
# One Cisco timestamp: calendar (optionally with year and zone), NX-OS "2026 Nov 30 ...",
# uptime "00:01:23" or "1d02h", or ISO 8601. '*' = clock not set, '.' = clock lost its sync.
_CISCO_TIME = re.compile(
    r"(?P<sync>[*.])?(?P<ts>"
    rf"(?:{_BSD_TIME}|\d{{4}} [A-Z][a-z]{{2}} +\d{{1,2}} \d{{1,2}}:\d\d:\d\d(?:\.\d+)?)"
    r"(?: [A-Za-z]{2,5}(?:[+-]\d{1,2}(?::?\d\d)?)?)?"
    r"|\d+:\d\d:\d\d(?:\.\d+)?"
    r"|(?:\d+[ywdhm]){1,3}"
    rf"|{_ISO_TIME}"
    r")"
)
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}")
# %FACILITY-SEVERITY-MNEMONIC: facilities may carry '_' and inner '-' (OSPFv3, IOSXE_OIR).
_MNEMONIC = re.compile(
    r"%(?P<fac>[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*?)-(?P<sev>[0-7])-(?P<name>[A-Za-z0-9_]+)"
    r"\s*:\s?"
)
# How far into a message a Cisco mnemonic may start: further in, "%X-1-Y:" is just text.
_MNEMONIC_WINDOW = 160


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """One parsed syslog message. ``raw`` is always the line as received (decoded)."""

    raw: str
    format: str
    facility: int | None = None
    severity: int | None = None
    timestamp: str | None = None
    host: str | None = None
    app: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: dict[str, dict[str, str]] | None = None
    seq: int | None = None
    clock_synced: bool | None = None
    mnemonic: str | None = None
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def facility_name(self) -> str | None:
        if self.facility is None or self.facility >= len(FACILITY_NAMES):
            return None
        return FACILITY_NAMES[self.facility]

    @property
    def severity_name(self) -> str | None:
        return None if self.severity is None else SEVERITY_NAMES[self.severity]


def decode(line: bytes) -> str:
    """Bytes off the wire -> text: UTF-8 (invalid bytes replaced), framing residue stripped."""
    text = line.decode("utf-8", "replace")
    return text.strip("\r\n\x00").removeprefix("\ufeff")


def parse(line: str | bytes) -> SyslogMessage:
    """Parse one syslog message; never raises, never loses the text (see module doc)."""
    raw = decode(line) if isinstance(line, bytes) else line.strip("\r\n\x00")
    facility = severity = None
    body = raw
    pri = _PRI.match(raw)
    if pri is not None and int(pri.group(1)) <= 191:
        value = int(pri.group(1))
        facility, severity = value >> 3, value & 7
        body = raw[pri.end() :]
    base: dict[str, Any] = {"raw": raw, "facility": facility, "severity": severity}
    if pri is not None and facility is not None:
        m = _5424.fullmatch(body)
        if m is not None and (m.group("ts") == "-" or m.group("ts")[:1].isdigit()):
            parsed = _parse_5424(m, base)
            if parsed is not None:
                return parsed
    cisco = _parse_cisco(body, base)
    if cisco is not None:
        return cisco
    m = _3164.fullmatch(body)
    if m is not None:
        return _with_mnemonic(
            RFC3164, m.group("msg"), base | {"timestamp": m.group("ts"), "host": m.group("host")}
        )
    if facility is not None:
        # A valid PRI and nothing else recognisable: RFC 3164 section 4.3.2 still calls this a
        # message; its content is the text after the PRI.
        return SyslogMessage(**base, format=RFC3164, message=body.strip())
    return SyslogMessage(raw=raw, format=UNPARSED, message=raw.strip())


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _parse_5424(m: re.Match[str], base: dict[str, Any]) -> SyslogMessage | None:
    rest = m.group("rest")
    sd: dict[str, dict[str, str]] | None = None
    if rest.startswith("-"):
        msg = rest[1:]
    elif rest.startswith("["):
        parsed = _structured_data(rest)
        if parsed is None:
            return None
        sd, end = parsed
        msg = rest[end:]
    else:
        return None
    if msg and not msg.startswith(" "):
        return None
    fields = {
        "timestamp": _nil(m.group("ts")),
        "host": _nil(m.group("host")),
        "app": _nil(m.group("app")),
        "procid": _nil(m.group("procid")),
        "msgid": _nil(m.group("msgid")),
        "structured_data": sd,
    }
    return _with_mnemonic(RFC5424, msg[1:].removeprefix("\ufeff"), base | fields)


def _structured_data(text: str) -> tuple[dict[str, dict[str, str]], int] | None:
    """``[id k="v" ...][id2 ...]`` -> ({id: {k: v}}, end index); None if malformed."""
    out: dict[str, dict[str, str]] = {}
    i, n = 0, len(text)
    while i < n and text[i] == "[":
        j = i + 1
        while j < n and text[j] not in " ]":
            j += 1
        sd_id = text[i + 1 : j]
        params: dict[str, str] = {}
        while j < n and text[j] == " ":
            eq = text.find('="', j)
            if eq < 0:
                return None
            name = text[j + 1 : eq]
            k = eq + 2
            value: list[str] = []
            while k < n and text[k] != '"':
                if text[k] == "\\" and k + 1 < n and text[k + 1] in '"\\]':
                    k += 1  # RFC 5424 section 6.3.3: only these three are escaped
                value.append(text[k])
                k += 1
            if k >= n:
                return None
            params[name] = "".join(value)
            j = k + 1
        if j >= n or text[j] != "]" or not sd_id:
            return None
        out[sd_id] = params
        i = j + 1
    return out, i


def _with_mnemonic(fmt: str, msg: str, base: dict[str, Any]) -> SyslogMessage:
    """An RFC 5424/3164 message whose MSG may itself be Cisco text (``%FAC-SEV-MN: ...``)."""
    if fmt == RFC3164:
        tag = _TAG.fullmatch(msg)
        if tag is not None and not tag.group("tag").startswith("%"):
            base = base | {"app": tag.group("tag"), "procid": tag.group("pid")}
            msg = tag.group("text")
    inner = _cisco_parts(msg)
    if inner is not None:
        inner.pop("bsd_header", None)
    if inner is None:
        return SyslogMessage(**base, format=fmt, message=msg.strip())
    # What the wrapper said (host, timestamp) wins over the inner Cisco preamble's.
    for key in ("host", "timestamp"):
        if base.get(key):
            inner.pop(key, None)
    return SyslogMessage(**(base | inner), format=fmt)


def _parse_cisco(body: str, base: dict[str, Any]) -> SyslogMessage | None:
    parts = _cisco_parts(body)
    if parts is None:
        return None
    # A BSD header before the mnemonic ("Nov 30 09:12:03 host tag: %...") is RFC 3164 framing.
    fmt = RFC3164 if parts.pop("bsd_header", False) else CISCO
    return SyslogMessage(**(base | parts), format=fmt)


def _cisco_parts(body: str) -> dict[str, Any] | None:
    """Preamble fields, mnemonic, message and extracted fields of Cisco text, or None."""
    m = _MNEMONIC.search(body, 0, _MNEMONIC_WINDOW + 64)
    if m is None or m.start() > _MNEMONIC_WINDOW:
        return None
    pre = _preamble(body[: m.start()])
    if pre is None:
        return None
    fac, sev, name = m.group("fac"), int(m.group("sev")), m.group("name")
    text = body[m.end() :].strip()
    mnemonic = f"{fac}-{sev}-{name}"
    # The mnemonic's severity is the device's own judgement of the message; a PRI may have
    # been rewritten by a relay (or be logger's default user.notice), so the mnemonic wins.
    return pre | {
        "severity": sev,
        "mnemonic": mnemonic,
        "message": text,
        "fields": extract_fields(mnemonic, text),
    }


def _preamble(prefix: str) -> dict[str, Any] | None:
    """``"1431: r1: *Nov 30 09:12:03.201: "`` -> seq, host, timestamp, clock_synced.

    None when the text before the mnemonic is not a Cisco (or BSD) preamble: then the
    ``%...:`` is part of some other message, not a Cisco mnemonic.
    """
    out: dict[str, Any] = {}
    text = prefix.strip()
    if not text:
        return out
    if not text.endswith(":"):
        # "Nov 30 09:12:03 host tag" style (BSD header, no colon before the mnemonic).
        text += ":"
    for seg in text[:-1].split(": "):
        seg = seg.strip()
        if not seg:
            continue
        if seg.isdigit() and not out:
            out["seq"] = int(seg)
            continue
        t = _CISCO_TIME.fullmatch(seg)
        if t is not None and "timestamp" not in out:
            out["timestamp"] = t.group("ts")
            out["clock_synced"] = t.group("sync") is None
            continue
        if _HOSTNAME.fullmatch(seg) and "host" not in out and "timestamp" not in out:
            out["host"] = seg
            continue
        bsd = _3164.fullmatch(seg)
        if bsd is not None and "timestamp" not in out:
            out["timestamp"] = bsd.group("ts")
            if bsd.group("host"):
                out.setdefault("host", bsd.group("host"))
            tag = bsd.group("msg").strip()
            if tag and _TAG.fullmatch(tag + ":"):
                out["app"] = tag
            out["bsd_header"] = True
            continue
        return None
    return out


# --------------------------------------------------------------------------- fields

_INTERFACE_STATE = re.compile(r"Interface (?P<interface>[^\s,]+),? changed state to (?P<state>.+)")
_BGP = re.compile(
    r"neighbor \*?(?P<neighbor>[^\s,]+)(?: (?:vpn )?vrf (?P<vrf>\S+))?(?: Passive)?"
    r" (?P<state>Up|Down|Idle)\b\s*(?P<reason>.*)",
    re.I,
)
_OSPF = re.compile(
    r"Process (?P<process>[^\s,]+),(?: IPv6,)? Nbr (?P<neighbor>\S+) on (?P<interface>\S+) "
    r"from (?P<from_state>[\w/-]+) to (?P<state>[\w/-]+)(?:,\s*(?P<reason>.*))?",
    re.I,
)
_EIGRP = re.compile(
    r"Neighbor (?P<neighbor>\S+) \((?P<interface>[^)]+)\) is (?P<state>\w+)(?::\s*(?P<reason>.*))?"
)
_CONFIG_I = re.compile(
    r"Configured from (?P<method>\S+) by (?P<who>\S+)(?: on (?P<line>\S+))?"
    r"(?: \((?P<address>[^)]+)\))?"
)
_LINE = re.compile(r"(?:vty|tty|con|console|aux)\d*(?:/\d+)*", re.I)
_LOGIN = re.compile(r"\[user: (?P<user>[^\]]*)\]\s*\[Source: (?P<source>[^\]]*)\]", re.I)


def _interface_state(text: str) -> dict[str, Any]:
    m = _INTERFACE_STATE.search(text)
    if m is None:
        return {}
    return {"interface": m.group("interface"), "state": m.group("state").strip().lower()}


def _neighbor(pattern: re.Pattern[str]) -> Callable[[str], dict[str, Any]]:
    def extract(text: str) -> dict[str, Any]:
        m = pattern.search(text)
        if m is None:
            return {}
        out: dict[str, Any] = {k: v for k, v in m.groupdict().items() if v}
        out["state"] = out["state"].lower()
        if "from_state" in out:
            out["from_state"] = out["from_state"].lower()
        return out

    return extract


def _config_i(text: str) -> dict[str, Any]:
    m = _CONFIG_I.search(text)
    if m is None:
        return {}
    who, line, address = m.group("who"), m.group("line"), m.group("address")
    user: str | None = who
    if line is None and _LINE.fullmatch(who):
        # "Configured from console by vty0 (10.0.0.5)": no AAA user, only the line.
        user, line = None, who
    source = address or line or m.group("method")
    out = {"user": user, "source": source, "method": m.group("method"), "line": line}
    return {k: v for k, v in out.items() if v is not None}


def _login(text: str) -> dict[str, Any]:
    m = _LOGIN.search(text)
    return {} if m is None else {"user": m.group("user"), "source": m.group("source")}


# (FACILITY, MNEMONIC) upper-cased -> extractor over the message text.
EXTRACTORS: dict[tuple[str, str], Callable[[str], dict[str, Any]]] = {
    ("LINK", "UPDOWN"): _interface_state,
    ("LINK", "CHANGED"): _interface_state,
    ("LINEPROTO", "UPDOWN"): _interface_state,
    ("BGP", "ADJCHANGE"): _neighbor(_BGP),
    ("OSPF", "ADJCHG"): _neighbor(_OSPF),
    ("OSPFV3", "ADJCHG"): _neighbor(_OSPF),
    ("DUAL", "NBRCHANGE"): _neighbor(_EIGRP),
    ("SYS", "CONFIG_I"): _config_i,
    ("SEC_LOGIN", "LOGIN_SUCCESS"): _login,
    ("SEC_LOGIN", "LOGIN_FAILED"): _login,
}


def extract_fields(mnemonic: str, text: str) -> dict[str, Any]:
    """Fields mined from a known message's text, e.g. LINK-3-UPDOWN -> interface, state."""
    fac, _, rest = mnemonic.partition("-")
    name = rest.partition("-")[2]
    extractor = EXTRACTORS.get((fac.upper(), name.upper()))
    return extractor(text) if extractor is not None else {}


# --------------------------------------------------------------------------- event data

# Keys of the event data that extracted fields may not overwrite.
_BASE_KEYS = frozenset(
    {
        "facility",
        "severity",
        "severity_name",
        "mnemonic",
        "message",
        "host",
        "device",
        "address",
        "format",
        "timestamp",
        "seq",
        "app",
        "raw",
    }
)


def event_data(
    msg: SyslogMessage, *, address: str | None = None, device: str | None = None
) -> dict[str, Any]:
    """The ``data`` of a ``syslog`` event: the message's fields, flat, for rules to read.

    ``host`` is the hostname in the message, else the sender's ``address`` (what RFC 3164
    relays do); ``device`` is the inventory name when one was resolved, else ``host``.
    Extracted fields (``interface``, ``state``, ``neighbor``, ``user``, ...) sit beside them.
    """
    host = msg.host or address
    data: dict[str, Any] = {
        "facility": msg.facility_name,
        "severity": msg.severity,
        "severity_name": msg.severity_name,
        "mnemonic": msg.mnemonic,
        "message": msg.message,
        "host": host,
        "device": device or host,
        "address": address,
        "format": msg.format,
        "timestamp": msg.timestamp,
        "seq": msg.seq,
        "app": msg.app,
        "raw": msg.raw,
    }
    if msg.clock_synced is not None:
        data["clock_synced"] = msg.clock_synced
    if msg.procid is not None:
        data["procid"] = msg.procid
    if msg.msgid is not None:
        data["msgid"] = msg.msgid
    if msg.structured_data:
        data["structured_data"] = msg.structured_data
    for key, value in msg.fields.items():
        if key not in _BASE_KEYS:
            data[key] = value
    return data
