"""Artifact files: raw outputs kept under ``<data_dir>/artifacts/<event id>/``.

Files, not blobs in the database, so that users can open a saved config or response with
the tools they already have.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from .actions.base import ArtifactData
from .events import Artifact

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder (no separators, no leading dots)."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".") or "artifact"
    return cleaned[:120]


def write(
    data_dir: Path, event_id: str, step: str, run_id: int | None, data: ArtifactData
) -> Artifact:
    """Write one artifact file (blocking: call it from a thread)."""
    folder = data_dir / "artifacts" / event_id
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{run_id or 0:06d}-{safe_name(step)}-{safe_name(data.name)}"
    path = folder / stem
    path.write_bytes(data.content)
    return Artifact(
        event_id=event_id,
        run_id=run_id,
        step=step,
        name=data.name,
        path=str(path),
        content_type=data.content_type,
        size=len(data.content),
        sha256=hashlib.sha256(data.content).hexdigest(),
        created_at=time.time(),
    )
