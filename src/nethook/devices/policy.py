"""Command policy: what a device command built from event data may look like.

An event payload must never become arbitrary CLI on a router. Every command that
``device.command`` (and ``device.backup``) sends passes :meth:`CommandPolicy.check`:

- it starts with an allowed prefix, compared word by word (``show``, ``ping``, ...;
  ``config.devices.allowed_commands``). Abbreviations are refused (``sh run``): the
  device would expand them, possibly into a command we did not allow;
- it is one line with no control or invisible format characters (a newline would be a
  second command, a tab is completion on IOS, ``\\x1b`` and bidi overrides hide text);
- it has no ``;`` (a command separator on NX-OS, Junos and shells) and no ``<``/``>``
  (file redirection on NX-OS and Junos);
- every ``|`` is followed by a read-only output filter (``include``, ``exclude``,
  ``begin``, ``section``, ``count`` and a few others, or an unambiguous abbreviation of
  one); ``| redirect``, ``| append``, ``| tee``, ``| save`` write files and are refused.

Config lines for ``device.configure`` (a rule that set ``allow_config: true``) are not
held to the read-only allowlist, but each must still be one clean line
(:func:`check_config_line`).

Pure: no I/O. A violation raises :class:`CommandRefused`, a permanent error; the caller
logs it as the security event ``security.command_refused``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from ..exceptions import PermanentError

#: Longest command accepted; real show commands are far shorter.
MAX_COMMAND_LENGTH = 512

#: Output filters after ``|`` that only narrow what is shown (IOS, NX-OS, EOS, Junos).
READ_ONLY_FILTERS = (
    "include",
    "exclude",
    "begin",
    "section",
    "count",
    "json",
    "xml",
    "no-more",
    "last",
    "match",
    "except",
    "find",
    "trim",
    "display",
)
#: Filters that write or send output somewhere: never allowed, even abbreviated.
WRITING_FILTERS = ("redirect", "append", "tee", "save", "format", "copy", "write")

#: Characters refused anywhere in a command.
FORBIDDEN_CHARS = {";": "';' (command separator)", ">": "'>' (redirection)", "<": "'<'"}
# Unicode categories that are never part of a printable one-line command: controls (Cc:
# \n, \r, \t, \x00, \x1b, \x7f, \x85), format characters (Cf: zero-width, bidi
# overrides), and line/paragraph separators (Zl, Zp: U+2028, U+2029).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class CommandRefused(PermanentError):
    """A command or config line violates the policy. ``reason`` says which rule."""

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"command refused by policy: {reason}: {shown(command)}")


def shown(text: str, limit: int = 120) -> str:
    """A command as it is safe to print in an error or a log line: escaped and cut."""
    rep = repr(text)
    return rep if len(rep) <= limit else rep[: limit - 3] + "..."


def _check_characters(text: str) -> None:
    for ch in text:
        category = unicodedata.category(ch)
        if category in _FORBIDDEN_CATEGORIES:
            what = "a line break" if ch in "\r\n\x85\u2028\u2029" else "a control character"
            raise CommandRefused(text, f"contains {what} (U+{ord(ch):04X})")


def _filter_allowed(word: str) -> bool:
    """An output filter, possibly abbreviated (IOS accepts ``inc``), that only narrows."""
    word = word.lower()
    if any(w.startswith(word) for w in WRITING_FILTERS):
        return False
    return any(f.startswith(word) for f in READ_ONLY_FILTERS)


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """The read-only allowlist. ``allowed`` holds command prefixes such as ``show``."""

    allowed: tuple[tuple[str, ...], ...]

    @classmethod
    def from_prefixes(cls, prefixes: Iterable[str]) -> CommandPolicy:
        """Build from prefixes as written in the config (``"terminal length"``)."""
        words = tuple(tuple(p.lower().split()) for p in prefixes if p.split())
        return cls(words)

    def check(self, command: object) -> str:
        """Return the command (outer whitespace stripped) or raise :class:`CommandRefused`."""
        if not isinstance(command, str):
            raise CommandRefused(str(command), f"must be text, not {type(command).__name__}")
        _check_characters(command)
        text = command.strip()
        if not text:
            raise CommandRefused(command, "empty command")
        if len(text) > MAX_COMMAND_LENGTH:
            raise CommandRefused(text, f"longer than {MAX_COMMAND_LENGTH} characters")
        for ch, what in FORBIDDEN_CHARS.items():
            if ch in text:
                raise CommandRefused(text, f"contains {what}")
        head, *pipes = text.split("|")
        for segment in pipes:
            words = segment.split()
            if not words:
                raise CommandRefused(text, "empty filter after '|'")
            if not _filter_allowed(words[0]):
                raise CommandRefused(
                    text,
                    f"'| {words[0]}' is not a read-only output filter "
                    f"(allowed: {', '.join(READ_ONLY_FILTERS[:5])}, ...)",
                )
        head_words = tuple(w.lower() for w in head.split())
        if not any(head_words[: len(prefix)] == prefix for prefix in self.allowed):
            allowed = ", ".join(" ".join(p) for p in self.allowed)
            raise CommandRefused(text, f"does not start with an allowed command ({allowed})")
        return text

    def check_all(self, commands: Iterable[object]) -> list[str]:
        """Check every command; the first violation raises."""
        return [self.check(c) for c in commands]


def check_config_line(line: object) -> str:
    """A config line for ``device.configure``: text, one line, no control characters.

    Leading spaces are kept (they carry meaning in IOS config blocks); trailing ones are
    dropped.
    """
    if not isinstance(line, str):
        raise CommandRefused(str(line), f"config line must be text, not {type(line).__name__}")
    _check_characters(line)
    if len(line) > MAX_COMMAND_LENGTH:
        raise CommandRefused(line, f"longer than {MAX_COMMAND_LENGTH} characters")
    return line.rstrip()
