"""Pure helpers for the dashboard: filters, row summaries, redaction, diffs, the chart.

No I/O here: the routes fetch, these functions shape what the templates show.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from markupsafe import Markup, escape

from ..events import Event, EventStatus
from ..store.base import ActivityRow, EventFilter

STATUSES = [str(s) for s in EventStatus]
LIVE = frozenset({EventStatus.QUEUED, EventStatus.RUNNING})

# Header names that may carry a credential. meta.headers is already an allowlist chosen at
# ingest; this is the second lock, for headers someone adds to that list later.
_SECRET_HEADER = re.compile(r"auth|token|signature|secret|cookie|passw|api[-_]?key|session", re.I)
REDACTED = "•••• (redacted)"


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class Filters:
    """The dashboard's filters; empty strings mean "any"."""

    source: str = ""
    type: str = ""
    status: str = ""
    device: str = ""
    text: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        def get(name: str) -> str:
            return (query.get(name) or "").strip()[:200]

        status = get("status")
        return cls(
            source=get("source"),
            type=get("type"),
            status=status if status in STATUSES else "",
            device=get("device"),
            text=get("q"),
        )

    def store_filter(self, before: int | None, limit: int) -> EventFilter:
        """What the store can filter itself. The store has no device column: a device
        filter narrows by text (the name must appear in the payload) and is then checked
        exactly by :meth:`matches`."""
        return EventFilter(
            status=self.status or None,
            type=self.type or None,
            source=self.source or None,
            text=self.text or self.device or None,
            before_seq=before,
            limit=limit,
        )

    def query_string(self) -> str:
        """The filters as URL query parameters (for links and the stream URL)."""
        from urllib.parse import urlencode

        pairs = {
            "source": self.source,
            "type": self.type,
            "status": self.status,
            "device": self.device,
            "q": self.text,
        }
        return urlencode({k: v for k, v in pairs.items() if v})

    def matches(self, event: Event, *, status: bool = True) -> bool:
        """The same filters in Python, for the live stream (``status=False`` ignores the
        status filter: an update may move an event into or out of the filtered view)."""
        if self.source and event.source != self.source:
            return False
        if self.type and event.type != self.type:
            return False
        if status and self.status and str(event.status) != self.status:
            return False
        if self.device and (device_of(event) or "").lower() != self.device.lower():
            return False
        if self.text:
            needle = self.text.lower()
            blob = orjson.dumps(event.data).decode(errors="replace").lower()
            if needle not in blob and needle not in event.type.lower() and event.id != self.text:
                return False
        return True


# --------------------------------------------------------------------------- rows


def device_of(event: Event) -> str | None:
    """``data.device`` when the payload names one (adapters normalise it there)."""
    if isinstance(event.data, dict):
        device = event.data.get("device")
        if isinstance(device, str | int):
            return str(device)
    return None


_SUMMARY_KEYS = ("summary", "message", "msg", "description", "title", "alertname", "text")


def summary_of(event: Event, width: int = 120) -> str:
    """One line about the payload: a summary-like field, else compact JSON."""
    data = event.data
    if isinstance(data, dict):
        # Alertmanager keeps its human text in annotations; look there first.
        for where in (data.get("annotations"), data):
            if not isinstance(where, dict):
                continue
            for key in _SUMMARY_KEYS:
                value = where.get(key)
                if isinstance(value, str) and value.strip():
                    return _clip(" ".join(value.split()), width)
        # No summary field: the scalar fields as k=v (device has its own column).
        pairs = [
            f"{k}={' '.join(str(v).split())}"
            for k, v in data.items()
            if k != "device" and isinstance(v, str | int | float | bool)
        ]
        return _clip(" ".join(pairs), width)
    return _clip(orjson.dumps(data).decode(errors="replace"), width)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def utc(ts: float | None, with_date: bool = False) -> str:
    """An epoch time as ``HH:MM:SS`` (or ``YYYY-MM-DD HH:MM:SS``) UTC."""
    if ts is None:
        return ""
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return datetime.fromtimestamp(ts, UTC).strftime(fmt)


def row(event: Event) -> dict[str, Any]:
    """What a table row (server-rendered or built by the live stream) shows."""
    return {
        "id": event.id,
        "seq": event.seq,
        "status": str(event.status),
        "source": event.source,
        "type": event.type,
        "device": device_of(event) or "",
        "summary": summary_of(event),
        "time": utc(event.received_at),
        "attempts": event.attempts,
        "error": _clip(event.error, 200) if event.error else "",
        "replay_of": event.replay_of or "",
    }


# --------------------------------------------------------------------------- event page


def redact_headers(headers: Any) -> list[tuple[str, str]]:
    """Header pairs for display, values of credential-looking names replaced."""
    if not isinstance(headers, dict):
        return []
    out = []
    for name, value in sorted(headers.items()):
        shown = REDACTED if _SECRET_HEADER.search(str(name)) else str(value)
        out.append((str(name), shown))
    return out


def pretty(value: Any) -> str:
    """JSON, indented, non-ASCII kept readable."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode(
        errors="replace"
    )


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "file", "ctx"
    text: str


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@", re.M)


def looks_like_diff(text: str) -> bool:
    """A unified diff: a hunk header, or ``---``/``+++`` file headers."""
    return bool(_HUNK.search(text)) or ("\n+++ " in text and text.lstrip().startswith("--- "))


def diff_lines(text: str) -> list[DiffLine]:
    """Classify each line of a unified diff for +/- colouring."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++ ", "--- ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    return out


def find_diffs(value: Any, path: str = "output") -> Iterator[tuple[str, list[DiffLine]]]:
    """Every string inside ``value`` that is a unified diff, with its JSON path
    (e.g. a device backup's ``output.diff``)."""
    if isinstance(value, str):
        if looks_like_diff(value):
            yield path, diff_lines(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find_diffs(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from find_diffs(item, f"{path}[{i}]")


def is_diff_artifact(name: str, content_type: str) -> bool:
    return "diff" in content_type or "patch" in content_type or name.endswith((".diff", ".patch"))


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


# --------------------------------------------------------------------------- stats

WINDOW_MINUTES = 60


@dataclass(slots=True)
class SourceStats:
    source: str
    total: int = 0
    succeeded: int = 0
    dead: int = 0
    pending: int = 0
    last_seen: float = 0.0


@dataclass(slots=True)
class Stats:
    """The last hour by source and by minute, plus all-time status counts."""

    per_minute: list[int]
    per_minute_dead: list[int]
    sources: list[SourceStats]
    statuses: dict[str, int]
    window_total: int
    now: float = field(default_factory=time.time)


def compute_stats(rows: Iterable[ActivityRow], statuses: dict[str, int], now: float) -> Stats:
    """The last hour (older rows are ignored) by minute and source, from store counts."""
    first = int(now) // 60 - (WINDOW_MINUTES - 1)
    per_minute = [0] * WINDOW_MINUTES
    dead = [0] * WINDOW_MINUTES
    by_source: dict[str, SourceStats] = {}
    total = 0
    for row in rows:
        slot = row.minute - first
        if not 0 <= slot < WINDOW_MINUTES:
            continue
        total += row.count
        per_minute[slot] += row.count
        s = by_source.setdefault(row.source, SourceStats(row.source))
        s.total += row.count
        s.last_seen = max(s.last_seen, row.last_seen)
        if row.status == EventStatus.DEAD:
            dead[slot] += row.count
            s.dead += row.count
        elif row.status == EventStatus.SUCCEEDED:
            s.succeeded += row.count
        elif row.status in LIVE:
            s.pending += row.count
    sources = sorted(by_source.values(), key=lambda s: (-s.total, s.source))
    ordered = {k: statuses.get(k, 0) for k in STATUSES}
    return Stats(per_minute, dead, sources, ordered, total, now)


def chart_svg(stats: Stats, width: int = 600, height: int = 130) -> Markup:
    """Events per minute over the last hour as an inline SVG bar chart (dead part in red).

    Built here rather than with a chart library: sixty rectangles need no dependency, and
    the page stays readable without JavaScript.
    """
    top = max(max(stats.per_minute), 1)
    plot_h = height - 18
    bar_w = width / WINDOW_MINUTES
    start = (int(stats.now) // 60 - (WINDOW_MINUTES - 1)) * 60
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="events per minute, last hour; peak {top}">',
        f'<line class="axis" x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}"/>',
    ]
    for i, (n, d) in enumerate(zip(stats.per_minute, stats.per_minute_dead, strict=True)):
        if n == 0:
            continue
        x = i * bar_w + 1
        h = max(2.0, n / top * (plot_h - 14))
        tip = escape(f"{utc(start + i * 60)[:5]} UTC: {n} events" + (f", {d} dead" if d else ""))
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}"><title>{tip}</title></rect>'
        )
        if d:
            dh = max(2.0, d / top * (plot_h - 14))
            parts.append(
                f'<rect class="bar dead" x="{x:.1f}" y="{plot_h - dh:.1f}" '
                f'width="{bar_w - 2:.1f}" height="{dh:.1f}"><title>{tip}</title></rect>'
            )
    parts += [
        f'<text class="label" x="2" y="10">peak {top}/min</text>',
        f'<text class="label" x="2" y="{height - 3}">-60 min</text>',
        f'<text class="label end" x="{width - 2}" y="{height - 3}">now</text>',
        "</svg>",
    ]
    return Markup("".join(parts))  # every interpolated text above is a number or escaped
