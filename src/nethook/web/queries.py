"""Store reads the dashboard needs beyond one ``list_events`` call.

Only the ``Store`` interface is used, so the dashboard works on SQLite and PostgreSQL alike.
Neither scans a huge history: the device filter reads a bounded number of rows, and the
counters are the store's own aggregate over the last hour.
"""

from __future__ import annotations

import time

from ..events import Event
from ..store.base import Store
from .views import WINDOW_MINUTES, Filters, Stats, compute_stats

_PAGE = 200
#: Rows a device-filtered listing reads at most before it gives up looking for more.
MAX_DEVICE_SCAN = 5000


async def query_events(
    store: Store, filters: Filters, before: int | None = None, limit: int = 50
) -> tuple[list[Event], int | None]:
    """Newest first: up to ``limit`` events matching ``filters`` below the ``before`` cursor,
    and the cursor for the next page (None at the end)."""
    if not filters.device:
        events = await store.list_events(filters.store_filter(before, limit))
        return events, (events[-1].seq if len(events) == limit else None)
    # The store narrows by text (the device name occurs in the payload); the exact
    # data.device comparison happens here, page by page.
    out: list[Event] = []
    cursor, scanned = before, 0
    while scanned < MAX_DEVICE_SCAN:
        page = await store.list_events(filters.store_filter(cursor, _PAGE))
        scanned += len(page)
        for event in page:
            if filters.matches(event):
                out.append(event)
                if len(out) == limit:
                    return out, event.seq
        if len(page) < _PAGE:
            return out, None
        cursor = page[-1].seq
    return out, cursor


async def load_stats(store: Store, now: float | None = None) -> Stats:
    """Per-source counters and events per minute over the last hour, status counts overall."""
    now = time.time() if now is None else now
    since = (int(now) // 60 - (WINDOW_MINUTES - 1)) * 60
    rows = await store.activity(since)
    statuses = await store.status_counts()
    return compute_stats(rows, statuses, now)
