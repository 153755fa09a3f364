"""Rules: load and compile once, match events, plan actions. Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import RuleConfig
from ..events import Event
from ..exceptions import ConfigError
from .templates import Expression, compile_expression, compile_tree, render_tree
from .throttle import Policy, compile_policy

# Checks an action name and its argument keys at load; returns an error text or None.
ActionChecker = Callable[[str, Mapping[str, Any]], str | None]


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    key: str
    action: str
    args: Any
    when: Expression | None = None
    continue_on_error: bool = False
    timeout: float | None = None
    retries: int | None = None
    label: str | None = None

    def render(self, names: Mapping[str, Any]) -> Any:
        return render_tree(self.args, names)


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    types: frozenset[str] | None
    sources: frozenset[str] | None
    when: Expression | None
    steps: tuple[Step, ...]
    stop: bool = False
    policy: Policy | None = None
    allow_config: bool = False
    config: RuleConfig | None = field(default=None, compare=False)

    def selects(self, event: Event) -> bool:
        """The cheap part of matching: ``on:`` type and source."""
        if self.types is not None and event.type not in self.types:
            return False
        return self.sources is None or event.source in self.sources


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a rule did or did not match one event (for ``nethook rules test``)."""

    rule: Rule
    matched: bool
    reason: str
    value: Any = None


def names_for(
    event: Event,
    variables: Mapping[str, Any],
    inventory: Any = None,
    results: Mapping[str, Any] | None = None,
    throttle: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The names templates see: ``event``, ``vars``, ``inventory``, ``results``, ``throttle``."""
    return {
        "event": event.template_view(),
        "vars": variables,
        "inventory": inventory if inventory is not None else {},
        "results": results if results is not None else {},
        "throttle": throttle if throttle is not None else {},
    }


@dataclass(frozen=True, slots=True)
class Rulebook:
    rules: tuple[Rule, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)

    def explain(self, event: Event, inventory: Any = None) -> list[Verdict]:
        """Every rule with its verdict, in file order, honouring ``stop``."""
        names = names_for(event, self.variables, inventory)
        out: list[Verdict] = []
        stopped: str | None = None
        for rule in self.rules:
            if stopped is not None:
                out.append(Verdict(rule, False, f"not evaluated: rule {stopped!r} has stop: true"))
                continue
            if self.types_reject(rule, event):
                out.append(
                    Verdict(
                        rule,
                        False,
                        f"on.type {sorted(rule.types or [])} does not include {event.type!r}",
                    )
                )
                continue
            if rule.sources is not None and event.source not in rule.sources:
                out.append(
                    Verdict(
                        rule,
                        False,
                        f"on.source {sorted(rule.sources)} does not include {event.source!r}",
                    )
                )
                continue
            if rule.when is not None:
                value = rule.when(names)
                if not value:
                    out.append(
                        Verdict(rule, False, f"when: {rule.when.source} -> {value!r}", value)
                    )
                    continue
            out.append(Verdict(rule, True, "matched"))
            if rule.stop:
                stopped = rule.name
        return out

    @staticmethod
    def types_reject(rule: Rule, event: Event) -> bool:
        return rule.types is not None and event.type not in rule.types

    def match(self, event: Event, inventory: Any = None) -> list[Rule]:
        """The rules that run for ``event``, in file order."""
        matched: list[Rule] = []
        names: dict[str, Any] | None = None
        for rule in self.rules:
            if not rule.selects(event):
                continue
            if rule.when is not None:
                if names is None:
                    names = names_for(event, self.variables, inventory)
                if not rule.when(names):
                    continue
            matched.append(rule)
            if rule.stop:
                break
        return matched


def _as_set(value: str | list[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def compile_rules(
    rules: list[RuleConfig],
    variables: Mapping[str, Any] | None = None,
    check_action: ActionChecker | None = None,
) -> Rulebook:
    """Compile every rule; all problems are collected into one ConfigError naming each rule."""
    errors: list[str] = []
    compiled: list[Rule] = []
    seen: set[str] = set()
    for i, rc in enumerate(rules):
        where = f"rules[{i}] ({rc.name!r})"
        if rc.name in seen:
            errors.append(f"{where}: duplicate rule name")
        seen.add(rc.name)
        try:
            compiled.append(_compile_rule(i, rc, where, check_action))
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return Rulebook(tuple(compiled), dict(variables or {}))


def _compile_rule(i: int, rc: RuleConfig, where: str, check: ActionChecker | None) -> Rule:
    when = None
    if isinstance(rc.when, bool):
        when = compile_expression("true" if rc.when else "false", f"{where}.when")
    elif rc.when is not None:
        when = compile_expression(rc.when, f"{where}.when")
    steps = []
    errors: list[str] = []
    for j, raw in enumerate(rc.do):
        step_where = f"{where}.do[{j}]"
        action = next(
            k for k in raw if k not in ("when", "continue_on_error", "timeout", "retries", "name")
        )
        args = raw[action] if raw[action] is not None else {}
        if not isinstance(args, dict):
            errors.append(f"{step_where}.{action}: arguments must be a mapping")
            continue
        if check is not None:
            problem = check(action, args)
            if problem:
                errors.append(f"{step_where}: {problem}")
                continue
        try:
            step_when = raw.get("when")
            steps.append(
                Step(
                    index=j,
                    key=f"{rc.name}#{j}",
                    action=action,
                    args=compile_tree(args, f"{step_where}.{action}"),
                    when=compile_expression(str(step_when), f"{step_where}.when")
                    if step_when is not None
                    else None,
                    continue_on_error=bool(raw.get("continue_on_error", False)),
                    timeout=float(raw["timeout"]) if raw.get("timeout") is not None else None,
                    retries=int(raw["retries"]) if raw.get("retries") is not None else None,
                    label=raw.get("name"),
                )
            )
        except ConfigError as exc:
            errors.extend(exc.errors)
        except (TypeError, ValueError) as exc:
            errors.append(f"{step_where}: {exc}")
    policy = None
    try:
        policy = compile_policy(rc.throttle, rc.accumulate, where)
    except ConfigError as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return Rule(
        policy=policy,
        allow_config=rc.allow_config,
        index=i,
        name=rc.name,
        types=_as_set(rc.on.type),
        sources=_as_set(rc.on.source),
        when=when,
        steps=tuple(steps),
        stop=rc.stop,
        config=rc,
    )
