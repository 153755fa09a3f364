"""The dashboard: server-rendered pages at ``/`` and ``/ui/...``, the live event stream at
``/api/events/stream``, and the static files (CSS, a small script, vendored htmx) under
``/ui/static``. Routes in :mod:`.routes`, the stream in :mod:`.stream`, sign-in in
:mod:`.auth`.
"""

from __future__ import annotations

from .routes import STATIC_DIR, router

__all__ = ["STATIC_DIR", "router"]
