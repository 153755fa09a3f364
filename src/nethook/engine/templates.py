"""Jinja2 in a sandbox: conditions and action arguments, compiled once at load.

A template string that is a single ``{{ expression }}`` renders to the expression's native
value (an int stays an int, a list a list), as in Ansible; any other string renders to text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from jinja2 import ChainableUndefined, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..exceptions import ConfigError, PermanentError

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)


def _regex_search(value: Any, pattern: str, *groups: str, ignorecase: bool = False) -> Any:
    flags = re.I if ignorecase else 0
    m = re.search(pattern, str(value), flags)
    if m is None:
        return None
    if not groups:
        return m.group(0)
    picked = [m.group(int(g[1:]) if g.startswith("\\") else g) for g in groups]
    return picked


def _regex_replace(
    value: Any, pattern: str = "", replacement: str = "", ignorecase: bool = False, count: int = 0
) -> str:
    flags = re.I if ignorecase else 0
    return re.sub(pattern, replacement, str(value), count=count, flags=flags)


def _test_match(value: Any, pattern: str, ignorecase: bool = False) -> bool:
    return re.match(pattern, str(value), re.I if ignorecase else 0) is not None


def _test_search(value: Any, pattern: str, ignorecase: bool = False) -> bool:
    return re.search(pattern, str(value), re.I if ignorecase else 0) is not None


def _to_json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _from_json(value: Any) -> Any:
    return orjson.loads(value)


class _Sandbox(ImmutableSandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # The stock sandbox returns an Undefined that only fails when used; with
        # ChainableUndefined it would render as "" and hide the attempt. Refuse loudly.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} is not allowed"
        )


def make_environment() -> ImmutableSandboxedEnvironment:
    """The one sandbox rules use: Ansible's common filters and tests, no attribute escapes."""
    env = _Sandbox(undefined=ChainableUndefined, autoescape=False)
    env.filters.update(
        regex_search=_regex_search,
        regex_replace=_regex_replace,
        to_json=_to_json,
        from_json=_from_json,
        bool=lambda v: (
            str(v).lower() in ("1", "true", "yes", "on") if isinstance(v, str) else bool(v)
        ),
    )
    env.tests.update(match=_test_match, search=_test_search, regex=_test_search)
    return env


ENV = make_environment()


def _check_names(ast: nodes.Node, where: str) -> None:
    """Unknown filters and tests are load-time errors, not 3 a.m. surprises."""
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        table = ENV.filters if isinstance(node, nodes.Filter) else ENV.tests
        if node.name not in table:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise ConfigError(f"{where}: unknown {kind} {node.name!r}")


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled ``when:`` condition."""

    source: str
    fn: Callable[..., Any]

    def __call__(self, names: Mapping[str, Any]) -> Any:
        try:
            value = self.fn(**names)
        except TemplateError as exc:
            raise PermanentError(f"condition {self.source!r}: {exc}") from exc
        return None if isinstance(value, ChainableUndefined) else value


def _flatten_template(tmpl: Any) -> Any:
    # Jinja copies a template's globals (a ChainMap over the environment's) into every render
    # context; a plain dict copies several times faster. Globals never change after load.
    tmpl.globals = dict(tmpl.globals)
    return tmpl


def _flatten(expr: Any) -> Any:
    _flatten_template(expr._template)
    return expr


def compile_expression(source: str, where: str) -> Expression:
    """Compile a bare Jinja2 expression (``event.data.state == 'down'``)."""
    try:
        _check_names(ENV.parse("{{ " + source + " }}"), where)
        fn = _flatten(ENV.compile_expression(source, undefined_to_none=False))
    except TemplateError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Expression(source, fn)


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled argument: a native expression, a text template, or a constant."""

    source: Any
    render_fn: Callable[[Mapping[str, Any]], Any] | None

    def render(self, names: Mapping[str, Any]) -> Any:
        if self.render_fn is None:
            return self.source
        try:
            return self.render_fn(names)
        except TemplateError as exc:
            raise PermanentError(f"template {self.source!r}: {exc}") from exc


def compile_template(source: Any, where: str) -> Template:
    if not isinstance(source, str) or ("{{" not in source and "{%" not in source):
        return Template(source, None)
    try:
        _check_names(ENV.parse(source), where)
        m = _SINGLE_EXPR.match(source)
        if m is not None:
            expr = _flatten(ENV.compile_expression(m.group("expr"), undefined_to_none=False))

            def native(names: Mapping[str, Any]) -> Any:
                value = expr(**names)
                return None if isinstance(value, ChainableUndefined) else value

            return Template(source, native)
        tmpl = _flatten_template(ENV.from_string(source))
        return Template(source, lambda names: tmpl.render(**names))
    except TemplateError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def compile_tree(value: Any, where: str) -> Any:
    """Compile every string in a nested structure of dicts and lists."""
    if isinstance(value, dict):
        return {k: compile_tree(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [compile_tree(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return compile_template(value, where)


def render_tree(compiled: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(compiled, dict):
        return {k: render_tree(v, names) for k, v in compiled.items()}
    if isinstance(compiled, list):
        return [render_tree(v, names) for v in compiled]
    assert isinstance(compiled, Template)
    return compiled.render(names)
