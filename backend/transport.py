"""The HTTP/1.1 protocol `fer-hybrid serve` runs: Uvicorn's httptools protocol with limits.

Uvicorn 0.54 with httptools installed (uvicorn[standard]) picks `HttpToolsProtocol` for
`http="auto"`. It has no limit on the request head (`h11_max_incomplete_event_size` only applies
to the h11 protocol: httptools buffers a 64 MiB header whole and answers 200) and no timeout
before a request's headers are complete (the keep-alive timer is cancelled by the first byte, and
is not armed at all before the first request). This subclass adds, per connection:

* a head size limit: once more than `max_head_bytes` of a request line + headers have arrived
  and the head is still incomplete, it answers 431 (JSON `detail`) and closes, so at most one
  read (256 KiB) beyond the limit is ever buffered;
* a head timeout: the request line and headers must be complete within `head_timeout` seconds
  of the connection being made (or of a kept-alive request's first byte); a silent connection is
  then closed, a partly sent head gets 408 (JSON `detail`) first;
* the parser's own 400 for a request it cannot parse answered like the two above: JSON
  `detail` and the security headers every answer of the app carries (backend/middleware.py);
* a body idle timeout: while a request body is being received, `body_timeout` seconds without
  a byte close the connection (the app sees a disconnect). Slow bodies are fine; only silence
  counts, and never while the app itself is not reading.

On TLS connections all of this starts after the handshake, which asyncio bounds (60 s).
Only the request line + headers are limited here; the app's own header limits are
`middleware.HeaderLimitMiddleware`, its body limit `middleware.BodySizeLimitMiddleware`.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .middleware import HSTS, NO_STORE, SECURITY_HEADERS

HEAD_TOO_LARGE = "request line and headers too large: the limit is {limit} bytes"
HEAD_TOO_SLOW = "request headers took too long to arrive: the limit is {timeout:g} seconds"
MALFORMED = "malformed HTTP request: its request line or headers could not be parsed"
#: What every answer of this protocol's own carries (the app's middleware never sees them).
_GUARD_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()] + [
    (b"cache-control", NO_STORE.encode())
]


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` + head size limit, head timeout and body idle timeout (see module)."""

    max_head_bytes: int = 64 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 60.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._received = 0  # bytes received on this connection
        self._chunk_start = 0  # self._received before the chunk being parsed
        self._head_start: int | None = None  # where the current, incomplete head began
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_start = 0  # waiting for the first request
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._chunk_start = self._received
        self._received += len(data)
        super().data_received(data)
        if (
            self._head_start is not None
            and self._received - self._head_start > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(431, HEAD_TOO_LARGE.format(limit=self.max_head_bytes))

    # -- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_start is None:  # a kept-alive or pipelined request begins in this chunk
            self._head_start = self._chunk_start
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._head_start = None
        self._cancel_head_timer()
        super().on_headers_complete()
        self._arm_body_timer()  # on_message_complete cancels it when there is no body

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    # -- timers
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None or self.transport.is_closing() or self._head_start is None:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a pipelined head waits for the running response
            return
        if self._received > self._head_start:
            self._refuse(408, HEAD_TOO_SLOW.format(timeout=self.head_timeout))
        else:
            self.transport.close()  # nothing was sent: just hang up

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm_body_timer()  # the app is not reading: not the client's fault
            return
        self.transport.close()  # the app sees http.disconnect

    def send_400_response(self, msg: str) -> None:  # httptools could not parse the request
        self._refuse(400, MALFORMED)

    def _refuse(self, status: int, detail: str) -> None:
        self._cancel_timers()
        body = json.dumps({"detail": detail}).encode()
        head = [STATUS_LINE[status]]
        guard = list(_GUARD_HEADERS)
        if self.transport.get_extra_info("sslcontext") is not None:
            guard.append((b"strict-transport-security", HSTS.encode()))
        for name, value in [*self.server_state.default_headers, *guard]:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def guarded_protocol(settings) -> type[GuardedHttpToolsProtocol]:
    """A protocol class carrying `settings`' limits, for `uvicorn.Config(http=...)`."""
    return type(
        "FerHybridHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_head_bytes": settings.max_request_head_bytes,
            "head_timeout": settings.header_timeout_seconds,
            "body_timeout": settings.body_timeout_seconds,
        },
    )
