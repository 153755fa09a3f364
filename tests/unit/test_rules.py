from __future__ import annotations

import time
from typing import Any

import pytest

from nethook.config import RuleConfig
from nethook.engine.retry import backoff_delay, schedule
from nethook.engine.rules import compile_rules
from nethook.engine.templates import compile_template, compile_tree, render_tree
from nethook.events import Event, EventStatus
from nethook.exceptions import ConfigError, PermanentError
from nethook.runtime import check_action


def ev(type: str = "syslog", source: str = "devices", **data: Any) -> Event:
    return Event(
        id="E1",
        source=source,
        type=type,
        timestamp="t",
        received_at=time.time(),
        data=data,
        meta={},
        status=EventStatus.RUNNING,
    )


def rules(*raw: dict[str, Any], **kw: Any) -> Any:
    return compile_rules(
        [RuleConfig.model_validate(r) for r in raw], check_action=check_action, **kw
    )


NAMES = {"event": ev(count=3, state="down", iface="Gi2").template_view(), "vars": {"site": "hq"}}


def test_single_expression_renders_native_values() -> None:
    assert compile_template("{{ event.data.count }}", "x").render(NAMES) == 3
    assert compile_template("{{ event.data.count + 1 }}", "x").render(NAMES) == 4
    assert compile_template("{{ [1, 2] }}", "x").render(NAMES) == [1, 2]
    assert compile_template("n={{ event.data.count }}", "x").render(NAMES) == "n=3"
    assert compile_template("plain", "x").render(NAMES) == "plain"
    assert compile_template(7, "x").render(NAMES) == 7


def test_missing_values_and_default() -> None:
    assert compile_template("{{ event.data.nope | default('new') }}", "x").render(NAMES) == "new"
    assert compile_template("{{ event.data.a.b.c | default(1) }}", "x").render(NAMES) == 1
    assert compile_template("{{ event.data.nope }}", "x").render(NAMES) is None


def test_ansible_filters_and_tests() -> None:
    r = compile_tree(
        {
            "a": "{{ 'GigabitEthernet2' | regex_replace('^GigabitEthernet', 'Gi') }}",
            "b": "{{ 'r1.example:161' | regex_search('^[^:]+') }}",
            "c": "{{ 'LINK-3-UPDOWN' is match('LINK-') }}",
            "d": "{{ event.data.state | upper }}",
        },
        "x",
    )
    assert render_tree(r, NAMES) == {"a": "Gi2", "b": "r1.example", "c": True, "d": "DOWN"}


def test_unknown_filter_is_a_load_error() -> None:
    with pytest.raises(ConfigError, match="unknown filter 'nosuch'"):
        compile_template("{{ x | nosuch }}", "rules[0].do[0].log.message")
    with pytest.raises(ConfigError, match=r"rules\[0\] \('bad'\)\.when"):
        rules({"name": "bad", "when": "event.data ==", "do": []})


@pytest.mark.parametrize(
    "expr",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ event.__class__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ [].append(1) }}",
    ],
)
def test_sandbox_refuses_escapes(expr: str) -> None:
    with pytest.raises(PermanentError):
        compile_template(expr, "x").render(NAMES)


def test_match_on_type_source_and_when_in_file_order() -> None:
    book = rules(
        {"name": "a", "on": {"type": "syslog"}, "do": [{"log": {"message": "a"}}]},
        {"name": "b", "on": {"source": ["other"]}, "do": [{"log": {"message": "b"}}]},
        {"name": "c", "when": "event.data.state == 'down'", "do": [{"log": {"message": "c"}}]},
        {"name": "d", "when": "event.data.state == 'up'", "do": []},
        {"name": "e", "on": {"type": ["syslog", "alert"], "source": "devices"}, "do": []},
    )
    assert [r.name for r in book.match(ev(state="down"))] == ["a", "c", "e"]
    assert [r.name for r in book.match(ev(type="alert", source="other"))] == ["b"]


def test_stop_ends_matching_and_explain_says_why() -> None:
    book = rules(
        {"name": "first", "on": {"type": "syslog"}, "stop": True, "do": []},
        {"name": "second", "do": []},
        {"name": "third", "on": {"type": "alert"}, "do": []},
    )
    assert [r.name for r in book.match(ev())] == ["first"]
    verdicts = {v.rule.name: v for v in book.explain(ev())}
    assert verdicts["first"].matched
    assert "stop" in verdicts["second"].reason
    book2 = rules({"name": "w", "when": "event.data.state == 'up'", "do": []})
    [v] = book2.explain(ev(state="down"))
    assert not v.matched and "-> False" in v.reason


def test_unknown_action_and_argument_are_load_errors() -> None:
    with pytest.raises(ConfigError, match="unknown action 'nope'"):
        rules({"name": "r", "do": [{"nope": {}}]})
    with pytest.raises(ConfigError, match="unknown argument"):
        rules({"name": "r", "do": [{"log": {"mesage": "typo"}}]})
    with pytest.raises(ConfigError, match="duplicate rule name"):
        rules({"name": "r", "do": []}, {"name": "r", "do": []})


def test_steps_render_with_event_and_vars() -> None:
    book = rules(
        {"name": "r", "do": [{"log": {"message": "{{ vars.site }} {{ event.data.iface }}"}}]},
        variables={"site": "hq"},
    )
    step = book.rules[0].steps[0]
    assert step.key == "r#0"
    assert step.render({"event": ev(iface="Gi2").template_view(), "vars": {"site": "hq"}}) == {
        "message": "hq Gi2"
    }


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    assert backoff_delay(1, 1.0, 300, lambda: 0.0) == 0.5
    assert backoff_delay(1, 1.0, 300, lambda: 1.0) == 1.0
    assert backoff_delay(4, 1.0, 300, lambda: 1.0) == 8.0
    assert backoff_delay(30, 1.0, 300, lambda: 1.0) == 300.0
    assert backoff_delay(1000, 1.0, 300, lambda: 0.5) == 225.0
    assert schedule(3, 2.0, 100) == [(1.0, 2.0), (2.0, 4.0), (4.0, 8.0)]
    delays = {backoff_delay(3) for _ in range(50)}
    assert len(delays) > 1 and all(2.0 <= d <= 4.0 for d in delays)
    with pytest.raises(ValueError):
        backoff_delay(0)
