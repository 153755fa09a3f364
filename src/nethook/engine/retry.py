"""Retry policy: exponential backoff with jitter. Pure, so it is tested without a clock."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    base: float = 1.0,
    cap: float = 300.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    "Equal jitter": half of ``min(cap, base * 2**(attempt-1))`` is fixed and half is random,
    so retries spread out (no thundering herd after an outage) yet never come back at once.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return ceiling / 2 + rand() * ceiling / 2


def schedule(attempts: int, base: float = 1.0, cap: float = 300.0) -> list[tuple[float, float]]:
    """The (min, max) wait after each of ``attempts`` failures: what users see in the docs."""
    return [
        (backoff_delay(n, base, cap, lambda: 0.0), backoff_delay(n, base, cap, lambda: 1.0))
        for n in range(1, attempts + 1)
    ]
