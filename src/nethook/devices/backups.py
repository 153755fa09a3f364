"""Versioned config backups: ``<data_dir>/backups/<device>/<timestamp>.cfg``.

A new file is written only when the config changed; the unified diff against the previous
version is returned (and the action stores it as output and artifact). Lines that change on
every read without the config changing (IOS's ``! Last configuration change at ...``,
``Current configuration : N bytes``, ``ntp clock-period``) are ignored when comparing, so a
quiet device does not produce a version per backup.

Blocking file I/O: call :meth:`BackupStore.save` from a thread.
"""

from __future__ import annotations

import calendar
import difflib
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import safe_name

_VOLATILE = re.compile(
    r"^(?:Building configuration\.\.\.|Current configuration ?: ?\d+ bytes"
    r"|! (?:Last configuration change|NVRAM config last updated|No configuration change)\b.*"
    r"|ntp clock-period \d+|!Time: .*|## Last commit: .*)\s*$"
)


def normalize(config: str) -> list[str]:
    """The lines that matter for "did the config change": volatile lines and line-end
    noise removed, leading/trailing blank lines dropped."""
    lines = [ln.rstrip() for ln in config.replace("\r\n", "\n").split("\n")]
    kept = [ln for ln in lines if not _VOLATILE.match(ln)]
    while kept and not kept[0]:
        kept.pop(0)
    while kept and not kept[-1]:
        kept.pop()
    return kept


def _stamp(micros: int) -> str:
    """``20250928T101000.123456Z``: UTC, sortable, no ':' (portable file names)."""
    secs, frac = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(secs)) + f".{frac:06d}Z"


def _micros(stamp: str) -> int:
    try:
        base, frac = stamp.rstrip("Z").split(".")
        return int(calendar.timegm(time.strptime(base, "%Y%m%dT%H%M%S"))) * 1_000_000 + int(frac)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class BackupResult:
    device: str
    changed: bool
    path: Path
    previous: Path | None
    diff: str
    added: int
    removed: int
    sha256: str
    version: int

    def as_output(self) -> dict[str, object]:
        return {
            "device": self.device,
            "changed": self.changed,
            "path": str(self.path),
            "previous": str(self.previous) if self.previous else None,
            "version": self.version,
            "diff": self.diff,
            "lines_added": self.added,
            "lines_removed": self.removed,
            "sha256": self.sha256,
        }


class BackupStore:
    """One folder per device, one file per distinct config, named by UTC time."""

    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "backups"

    def folder(self, device: str) -> Path:
        return self.root / safe_name(device)

    def versions(self, device: str) -> list[Path]:
        """Stored versions, oldest first (names sort by time)."""
        folder = self.folder(device)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".cfg")

    def latest(self, device: str) -> Path | None:
        versions = self.versions(device)
        return versions[-1] if versions else None

    def _lock(self, device: str) -> threading.Lock:
        # Two events backing up one device at once must not both write "the new version".
        with self._locks_guard:
            return self._locks.setdefault(str(self.folder(device)), threading.Lock())

    def save(self, device: str, config: str, now: float | None = None) -> BackupResult:
        """Store ``config`` if it differs from the latest version; return what happened."""
        with self._lock(device):
            return self._save(device, config, time.time() if now is None else now)

    def _save(self, device: str, config: str, now: float) -> BackupResult:
        text = config if config.endswith("\n") else config + "\n"
        digest = hashlib.sha256(text.encode()).hexdigest()
        versions = self.versions(device)
        previous = versions[-1] if versions else None
        new_lines = normalize(text)
        old_lines: list[str] = []
        if previous is not None:
            old_lines = normalize(previous.read_text(encoding="utf-8", errors="replace"))
            if old_lines == new_lines:
                return BackupResult(
                    device, False, previous, previous, "", 0, 0, digest, len(versions)
                )
        folder = self.folder(device)
        folder.mkdir(parents=True, exist_ok=True)
        micros = int(now * 1e6)
        if previous is not None:
            # Names must sort in save order even if the clock stepped back or repeated.
            micros = max(micros, _micros(previous.stem) + 1)
        path = folder / f"{_stamp(micros)}.cfg"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        diff_lines = list(
            difflib.unified_diff(
                old_lines,
                new_lines,
                fromfile=previous.name if previous else "/dev/null",
                tofile=path.name,
                lineterm="",
            )
        )
        added = sum(1 for ln in diff_lines if ln.startswith("+") and not ln.startswith("+++"))
        removed = sum(1 for ln in diff_lines if ln.startswith("-") and not ln.startswith("---"))
        diff = "\n".join(diff_lines) + ("\n" if diff_lines else "")
        return BackupResult(
            device, True, path, previous, diff, added, removed, digest, len(versions) + 1
        )
