"""The cross-engine tests' server side: the real app, with tests/engine_harness.js put first into
the <head> of the two pages and a few test files served under /__e2e__/.

Injecting in the server is what works the same in all three engines: WebKit's driver
(WebKitWebDriver) speaks classic WebDriver only, which can run a script in a page once it has
loaded, never before its scripts. The harness is same-origin, so the page's CSP
(`script-src 'self'`) lets it run unchanged.
"""

from __future__ import annotations

from pathlib import Path

HARNESS = Path(__file__).with_name("engine_harness.js")
PREFIX = "/__e2e__/"
PAGES = ("/", "/upload")
TAG = f'<script src="{PREFIX}harness.js"></script>'.encode()


class HarnessPages:
    """ASGI wrapper: `files` (name -> (bytes, content type)) are served at /__e2e__/<name>;
    harness.js is always among them and is injected into the pages."""

    def __init__(self, app, files: dict[str, tuple[bytes, str]]):
        self.app = app
        self.files = {PREFIX + name: item for name, item in files.items()}
        self.files[PREFIX + "harness.js"] = (HARNESS.read_bytes(), "text/javascript")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in self.files:
            body, content_type = self.files[path]
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", content_type.encode()),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body})
            return
        if path not in PAGES:
            return await self.app(scope, receive, send)
        await self._inject(scope, receive, send)

    async def _inject(self, scope, receive, send):
        start: dict = {}
        chunks: list[bytes] = []

        async def buffered(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            html = dict(headers).get(b"content-type", b"").startswith(b"text/html")
            if start["status"] == 200 and html:
                if b"<head>" not in body:
                    raise RuntimeError(f"{scope['path']}: no <head> to put the test harness into")
                body = body.replace(b"<head>", b"<head>\n  " + TAG, 1)
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        # Asked for uncompressed (the app gzips pages for clients that accept it), to edit it.
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
        await self.app({**scope, "headers": headers}, receive, buffered)
