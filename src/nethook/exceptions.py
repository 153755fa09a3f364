"""One root error and a shallow tree.

Whether an error is *transient* (retry with backoff) or *permanent* (dead-letter at once)
is the only distinction the dispatcher needs; third-party errors are converted at the
boundary with ``raise OurError(...) from exc``.
"""

from __future__ import annotations


class NethookError(Exception):
    """Root of every error nethook raises on purpose."""


class ConfigError(NethookError):
    """The configuration is invalid. ``errors`` lists one message per problem, each naming its key."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


class TransientError(NethookError):
    """Worth retrying later: timeouts, refused connections, 5xx, a locked database.

    ``retry_after`` (seconds) is the peer's own hint (an HTTP ``Retry-After``); the
    dispatcher waits at least that long before the next attempt.
    """

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(NethookError):
    """Retrying will not help: bad arguments, 4xx, authentication refused, policy violation."""


class ActionTimeout(TransientError):
    """An action ran past its timeout."""


class StoreUnavailable(TransientError):
    """The store cannot take or serve data right now (ingress answers 503 + Retry-After)."""


class AuthError(NethookError):
    """A request failed authentication. ``reason`` is safe to log; it never holds a secret."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RequestRejected(NethookError):
    """An HTTP request is refused with a status, a short code and a human detail."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{status} {code}: {detail}")
