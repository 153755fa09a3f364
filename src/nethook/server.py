"""The HTTP server: uvicorn with limits against slow and abusive clients.

uvicorn's httptools protocol has no limit on header bytes (llhttp leaves that to its user)
and no timeout for a request's head: a client can send headers forever, or open
connections and send nothing. ``LimitedHttpTools`` adds both, answering 431 or 408 with
a JSON body and closing the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _response(status: int, reason: str, code: str, detail: str) -> bytes:
    body = orjson.dumps({"error": code, "detail": detail})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class LimitedHttpTools(HttpToolsProtocol):
    """httptools protocol with a cap on header bytes and a deadline for the request head."""

    max_header_bytes: int = 16384
    head_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is a slow client too.
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, payload: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(payload)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers parser errors in text/plain; every nethook error is JSON.
        self._refuse(_response(400, "Bad Request", "bad_request", msg))

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(
                _response(
                    408,
                    "Request Timeout",
                    "request_timeout",
                    f"request head not received within {self.head_timeout:g}s",
                )
            )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Most heads arrive in one read: only a head still incomplete needs a deadline.
            if self._head_timer is None:
                self._arm()
            # Still inside a request head after this chunk: count what it has cost so far.
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(
                    _response(
                        431,
                        "Request Header Fields Too Large",
                        "headers_too_large",
                        f"request headers exceed {self.max_header_bytes} bytes",
                    )
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between keep-alive requests uvicorn's own keep-alive timeout applies.
        self._in_head = False


def protocol_class(max_header_bytes: int, head_timeout: float) -> type[LimitedHttpTools]:
    """A protocol class with these limits (uvicorn instantiates it per connection)."""
    return type(
        "NethookHttpTools",
        (LimitedHttpTools,),
        {"max_header_bytes": max_header_bytes, "head_timeout": head_timeout},
    )
