"""Pure-ASGI middleware: security headers, cache policy, internal errors as JSON, body and header
limits, relative redirects."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self' blob:",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' blob: data:",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(self), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
    "x-frame-options": "DENY",
}
# Short on purpose: the generated certificate is self-signed and often used on `localhost`.
HSTS = "max-age=86400"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
NO_STORE = "no-store"


class SecurityHeadersMiddleware:
    """Adds the security headers and chooses Cache-Control for every HTTP response.

    * /static/vendor/* (versioned paths), and /static/* or /models/manifest.json requested with
      `?v=` equal to the current asset version, which is a hash of exactly those files (web/ and
      the manifest): `public, max-age=31536000, immutable` (only for 200 responses); a `?v=` on
      anything else (a member's weights, a page) changes nothing, since the version does not
      change when they do;
    * /api/*: `no-store` (responses may carry deletion tokens);
    * everything else (pages, /models/*, /sw.js, other /static files): `no-cache`, i.e. cache
      but revalidate with ETag / Last-Modified.
    """

    def __init__(self, app: ASGIApp, asset_version: Callable[[], str]) -> None:
        self.app = app
        self.asset_version = asset_version

    def _cache_control(self, scope: Scope, status: int) -> str:
        path: str = scope.get("path", "")
        if path.startswith("/api/"):
            return NO_STORE
        if status == 200 and scope.get("method") in ("GET", "HEAD"):
            if path.startswith("/static/vendor/"):
                return IMMUTABLE
            query = scope.get("query_string", b"").decode("latin-1")
            if query and (path.startswith("/static/") or path == "/models/manifest.json"):
                v = parse_qs(query).get("v")
                if v and v[0] == self.asset_version():
                    return IMMUTABLE
        return REVALIDATE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if scope.get("scheme") == "https":
                    headers["strict-transport-security"] = HSTS
                if "cache-control" not in headers:
                    headers["cache-control"] = self._cache_control(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_wrapper)


log = logging.getLogger("fer_hybrid.server")

INTERNAL_ERROR = "internal server error: the server could not answer this request; try again"


class InternalErrorMiddleware:
    """An exception the app did not turn into an answer becomes a JSON 500, logged once.

    It sits just inside `SecurityHeadersMiddleware`, so the 500 carries the security headers;
    Starlette's own last resort answers plain text outside every middleware, and Uvicorn logs the
    traceback a second time. When the response had already started, nothing more can be said:
    the exception is logged and the server closes the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("internal error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await json_reply(send, 500, INTERNAL_ERROR)


class BodySizeLimitMiddleware:
    """Rejects request bodies above `limit` bytes on `paths` with 413, while streaming.

    A declared Content-Length above the limit is refused before reading anything; otherwise the
    body is counted as it arrives and, once it goes over, the app sees a disconnect and the
    client gets 413 instead of whatever the app would have answered.
    """

    def __init__(self, app: ASGIApp, limit: Callable[[], int], paths: tuple[str, ...]) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths

    async def _reject(self, send: Send, limit: int) -> None:
        await json_reply(send, 413, f"request body too large: the limit is {limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("POST", "PUT", "PATCH")
            or not any(scope.get("path", "").startswith(p) for p in self.paths)
        ):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(send, limit)
                return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await self._reject(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._reject(send, limit)


async def json_reply(send: Send, status: int, detail: str) -> None:
    """Answer `{"detail": ...}` with `status` and close: the middleware's refusals."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HeaderLimitMiddleware:
    """431 with a JSON `detail` when a request has more than `max_count` headers or more than
    `max_bytes` of them (names + values + separators).

    The server's protocol (backend.transport) already refuses an oversized request head while
    reading it; this is the app's own, tighter limit, whatever server runs it.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: Callable[[], int], max_count: Callable[[], int]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        max_count, max_bytes = self.max_count(), self.max_bytes()
        if len(headers) > max_count:
            detail = f"too many request headers: the limit is {max_count}"
        elif sum(len(k) + len(v) + 4 for k, v in headers) > max_bytes:
            detail = f"request headers too large: the limit is {max_bytes} bytes in all"
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1009})
            return
        await json_reply(send, 431, detail)


class RelativeRedirectMiddleware:
    """Rewrites a redirect to this same server into a path-only Location.

    Starlette's trailing-slash redirects (GET /static -> /static/) are built from the Host
    header; a relative Location never repeats what the client sent as Host.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def _relative(location: str, scope: Scope) -> str:
        parts = urlsplit(location)
        if not parts.scheme and not parts.netloc:
            return location
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        if parts.scheme.lower() != scope.get("scheme") or parts.netloc.lower() != host:
            return location  # somewhere else on purpose
        path = "/" + parts.path.lstrip("/")  # never `//name`, which would leave the site
        return urlunsplit(("", "", path, parts.query, parts.fragment))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = MutableHeaders(scope=message)
                location = headers.get("location")
                if location is not None:
                    headers["location"] = self._relative(location, scope)
            await send(message)

        await self.app(scope, receive, send_wrapper)
