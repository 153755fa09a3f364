from __future__ import annotations

import pytest

from nethook.config import AccumulateConfig, ThrottleConfig
from nethook.engine.throttle import (
    Mode,
    Policy,
    Verdict,
    Window,
    compile_policy,
    decide,
    parse_duration,
)
from nethook.exceptions import ConfigError


def run(policy: Policy, arrivals: list[tuple[str, float]]) -> list[tuple[str, Verdict]]:
    state: Window | None = None
    out = []
    for eid, now in arrivals:
        d, state = decide(policy, state, eid, now)
        # The store keeps state as JSON: round-trip it like the store does.
        state = Window.from_dict(state.as_dict()) if state else None
        out.append((eid, d.verdict))
    return out


def test_durations() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("60s") == 60
    assert parse_duration("5m") == 300
    assert parse_duration("1h") == 3600
    assert parse_duration(2) == 2
    for bad in ("soon", "-1s", "0s", "5 minutes"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_once_within_runs_first_of_each_window() -> None:
    p = Policy(Mode.ONCE_WITHIN, 60)
    got = run(p, [("a", 0), ("b", 1), ("c", 59.9), ("d", 60), ("e", 61), ("f", 200)])
    assert [v for _, v in got] == [
        Verdict.RUN,
        Verdict.SUPPRESS,
        Verdict.SUPPRESS,
        Verdict.RUN,
        Verdict.SUPPRESS,
        Verdict.RUN,
    ]


def test_once_after_collects_then_runs_once_with_all() -> None:
    p = Policy(Mode.ONCE_AFTER, 10)
    state = None
    d, state = decide(p, state, "a", 0)
    assert d.verdict is Verdict.DEFER and d.due == 10
    for i, eid in enumerate("bcd"):
        d, state = decide(p, state, eid, 1 + i)
        assert d.verdict is Verdict.SUPPRESS and "collected into a" in d.reason
    d, state = decide(p, state, "a", 5)  # too early: wait again
    assert d.verdict is Verdict.DEFER and d.due == 10
    d, state = decide(p, state, "a", 10)
    assert d.verdict is Verdict.RUN and d.events == ("a", "b", "c", "d")
    assert state is None
    d, state = decide(p, state, "e", 11)
    assert d.verdict is Verdict.DEFER and d.due == 21


def test_accumulate_needs_threshold_within_sliding_window() -> None:
    p = Policy(Mode.ACCUMULATE, 10, threshold=3)
    got = run(p, [("a", 0), ("b", 5), ("c", 11), ("d", 12), ("e", 13), ("f", 14)])
    # a expires before c arrives: b,c,d is the first run; then e,f start again.
    assert [v for _, v in got] == [
        Verdict.SUPPRESS,
        Verdict.SUPPRESS,
        Verdict.SUPPRESS,
        Verdict.RUN,
        Verdict.SUPPRESS,
        Verdict.SUPPRESS,
    ]
    d, _ = decide(p, None, "x", 0)
    assert "accumulating 1/3" in d.reason


def test_compile_policy_validates() -> None:
    assert compile_policy(None, None, "r") is None
    p = compile_policy(
        ThrottleConfig(once_within="60s", group_by=["event.data.interface"]), None, "r"
    )
    assert p is not None and p.mode is Mode.ONCE_WITHIN and p.window == 60
    assert len(p.group_by) == 1
    with pytest.raises(ConfigError, match="one of"):
        compile_policy(
            ThrottleConfig(once_within="1s"), AccumulateConfig(threshold=2, within="1s"), "r"
        )
    with pytest.raises(ConfigError, match="set once_within or once_after"):
        compile_policy(ThrottleConfig(group_by=["x"]), None, "r")
    with pytest.raises(ConfigError, match="unknown filter"):
        compile_policy(ThrottleConfig(once_within="1s", group_by=["x | nope"]), None, "r")
