"""Storm control: per rule and group, decide whether an event runs, waits or is suppressed.

Pure: ``decide(policy, state, event_id, now)`` returns a decision and the group's next
state. The store applies it atomically (read state, decide, write state and the decision)
so concurrent events, restarts and several nodes all see one history per group.

* ``once_within: 60s``: the first event of a group runs; the rest of the window is suppressed.
* ``once_after: 60s``: the first event opens a window and waits; the others are collected
  into it; at the end of the window the first one runs once, with all of them.
* ``accumulate: {threshold: N, within: 60s}``: runs only when N events of the group arrive
  within a sliding window; the ones before are suppressed (counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..config import AccumulateConfig, ThrottleConfig
from ..exceptions import ConfigError
from .templates import Expression, compile_expression

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
#: Ids kept per window: enough to show what was collected, bounded against storms.
MAX_IDS = 1000


def parse_duration(value: str | float | int, where: str = "duration") -> float:
    """``"250ms"``, ``"60s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise ConfigError(f"{where}: {value!r} is not a duration (e.g. 30s, 5m, 1h)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{where}: must be positive")
    return seconds


class Mode(StrEnum):
    ONCE_WITHIN = "once_within"
    ONCE_AFTER = "once_after"
    ACCUMULATE = "accumulate"


class Verdict(StrEnum):
    RUN = "run"
    SUPPRESS = "suppress"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode
    window: float
    group_by: tuple[Expression, ...] = ()
    threshold: int = 1


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str
    events: tuple[str, ...] = ()
    due: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "reason": self.reason,
            "events": list(self.events),
            "due": self.due,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(Verdict(d["verdict"]), d["reason"], tuple(d.get("events") or ()), d.get("due"))


@dataclass(frozen=True, slots=True)
class Window:
    """A group's state, stored as JSON in the store's kv table."""

    started: float
    events: tuple[str, ...] = ()
    times: tuple[float, ...] = ()
    owner: str | None = None
    suppressed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "events": list(self.events),
            "times": list(self.times),
            "owner": self.owner,
            "suppressed": self.suppressed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Window | None:
        if not d:
            return None
        return cls(
            d["started"],
            tuple(d.get("events") or ()),
            tuple(d.get("times") or ()),
            d.get("owner"),
            int(d.get("suppressed") or 0),
        )


def _append(ids: tuple[str, ...], event_id: str) -> tuple[str, ...]:
    return ids if len(ids) >= MAX_IDS or event_id in ids else (*ids, event_id)


def decide(
    policy: Policy, state: Window | None, event_id: str, now: float
) -> tuple[Decision, Window | None]:
    """One event meets its group's window. Returns the decision and the new state."""
    if policy.mode is Mode.ONCE_WITHIN:
        if state is None or now >= state.started + policy.window:
            return (
                Decision(Verdict.RUN, "first in window", (event_id,)),
                Window(started=now, events=(event_id,), owner=event_id),
            )
        left = state.started + policy.window - now
        return (
            Decision(
                Verdict.SUPPRESS,
                f"ran {state.owner} {now - state.started:.1f}s ago; window closes in {left:.1f}s",
            ),
            Window(
                state.started,
                _append(state.events, event_id),
                (),
                state.owner,
                state.suppressed + 1,
            ),
        )

    if policy.mode is Mode.ONCE_AFTER:
        if state is None:
            due = now + policy.window
            return (
                Decision(Verdict.DEFER, "opened the window", (event_id,), due),
                Window(started=now, events=(event_id,), owner=event_id),
            )
        due = state.started + policy.window
        if event_id == state.owner:
            if now >= due:
                return Decision(Verdict.RUN, "window closed", state.events), None
            return Decision(Verdict.DEFER, "window still open", state.events, due), state
        return (
            Decision(Verdict.SUPPRESS, f"collected into {state.owner}"),
            Window(
                state.started,
                _append(state.events, event_id),
                (),
                state.owner,
                state.suppressed + 1,
            ),
        )

    # ACCUMULATE: a sliding window of arrival times.
    keep = (
        [(t, e) for t, e in zip(state.times, state.events, strict=False) if t > now - policy.window]
        if state
        else []
    )
    keep.append((now, event_id))
    if len(keep) >= policy.threshold:
        return Decision(
            Verdict.RUN, f"{len(keep)} events within the window", tuple(e for _, e in keep)
        ), None
    return (
        Decision(Verdict.SUPPRESS, f"accumulating {len(keep)}/{policy.threshold}"),
        Window(
            started=keep[0][0],
            events=tuple(e for _, e in keep[-MAX_IDS:]),
            times=tuple(t for t, _ in keep[-MAX_IDS:]),
        ),
    )


def compile_policy(
    throttle: ThrottleConfig | None, accumulate: AccumulateConfig | None, where: str
) -> Policy | None:
    """The rule's storm-control settings, validated at load (one mode per rule)."""
    modes = []
    if throttle is not None:
        if throttle.once_within is not None:
            modes.append((Mode.ONCE_WITHIN, throttle.once_within, throttle.group_by, 1))
        if throttle.once_after is not None:
            modes.append((Mode.ONCE_AFTER, throttle.once_after, throttle.group_by, 1))
        if throttle.once_within is None and throttle.once_after is None:
            raise ConfigError(f"{where}.throttle: set once_within or once_after")
    if accumulate is not None:
        modes.append(
            (Mode.ACCUMULATE, accumulate.within, accumulate.group_by, accumulate.threshold)
        )
    if not modes:
        return None
    if len(modes) > 1:
        raise ConfigError(
            f"{where}: use one of throttle.once_within, throttle.once_after, accumulate"
        )
    mode, window, group_by, threshold = modes[0]
    return Policy(
        mode=mode,
        window=parse_duration(window, f"{where}.{mode.value}"),
        group_by=tuple(
            compile_expression(g, f"{where}.group_by[{i}]") for i, g in enumerate(group_by)
        ),
        threshold=threshold,
    )


def group_key(rule: str, policy: Policy, names: dict[str, Any]) -> str:
    """The state key for one group: the rule name and the group_by values."""
    import orjson

    values = [expr(names) for expr in policy.group_by]
    return rule + "|" + orjson.dumps(values, default=str).decode()
