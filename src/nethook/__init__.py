"""nethook: event-driven network automation (webhooks and syslog in, rules, device actions)."""

from __future__ import annotations

__version__ = "0.1.0"
