"""The curator's review page (`fer-hybrid data review`): a small app of its own, never part of
the public server, served on 127.0.0.1 only.

Who may use it: whoever holds the random token printed with its URL (like a notebook server).
Every path starts with `/<token>/`, so the page's own relative URLs (scripts, crops, the API)
carry it without a cookie, and any request without it is a 403 before anything else runs.
Writes are also refused unless they come from this page (CSRF): the token again, in the
`X-Review-Token` header (another site cannot set a custom header without a CORS preflight this
app never answers), a JSON body, an `Origin` (when sent) equal to this server's own, and a
`Host` naming it (stops DNS rebinding).

Why the model's predictions are not computed here: the backend never imports TensorFlow, so
the page runs the shipped TF.js ensemble itself (`web/review/review.js`, with the page's own
`classifier.js` and the vendored tfjs, all served from here: it works offline and under the
app's CSP, and what it shows is exactly what the phone would predict).
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from contract import LABELS
from contract.review import HOLDOUT_MIN, REVIEW_STATES, in_holdout

from .assets import TFJS_DIR
from .middleware import SecurityHeadersMiddleware, json_reply
from .storage import UploadError, UploadStore

TOKEN_HEADER = "x-review-token"
MAX_BODY = 1024 * 1024  # 32-hex ids: a batch of ~25 000
SAME_SITE = {"same-origin", "none"}
NO_TOKEN = (
    "this review page needs the token printed by `fer-hybrid data review`: open the URL it printed"
)
# What the page loads from web/: its own folder (page, script, style), the classifier module
# it imports, and the vendored tfjs.
STATIC = ("review", "js", "vendor")


class ReviewGuard:
    """Token, host and (for writes) origin checks in front of everything; then the token
    prefix is taken off the path, so the routes below are plain `/api/...`."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.prefix = f"/{token}/"
        self.token = token
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "") not in self.hosts:
            await json_reply(send, 400, "unknown host: open the review page at 127.0.0.1")
            return
        path: str = scope["path"]
        if not hmac.compare_digest(path[: len(self.prefix)].encode(), self.prefix.encode()):
            await json_reply(send, 403, NO_TOKEN)
            return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site")
            sent = headers.get(TOKEN_HEADER, "")
            if origin is not None and origin not in self.origins:
                await json_reply(send, 403, "cross-origin request refused")
                return
            if site is not None and site not in SAME_SITE:
                await json_reply(send, 403, "cross-site request refused")
                return
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                await json_reply(send, 403, "a review must carry the page's X-Review-Token header")
                return
        rest = "/" + path[len(self.prefix) :]
        scope = {**scope, "path": rest, "raw_path": rest.encode()}
        await self.app(scope, receive, send)


def _item(row: dict) -> dict:
    return {
        "id": row["id"],
        "label": row["label"],
        "curator_label": row["curator_label"],
        "state": row["state"],
        "created": row["created"],
        "reviewed": row["reviewed"],
        "contributions": row["contributions"],
        "holdout": in_holdout(row["sha256"]),
    }


def create_review_app(
    store: UploadStore, *, token: str, port: int, web_dir: Path, models_dir: Path
) -> ASGIApp:
    """The review app for `store`, answering only on 127.0.0.1:`port` under `/<token>/`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _one_line(_request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": err.detail}, status_code=err.status_code)

    # The tfjs folder is written into the page here, from its one home (backend/assets.py).
    html = (web_dir / "review" / "index.html").read_text(encoding="utf-8")
    html = html.replace("{{ tfjs }}", f"static/{TFJS_DIR}/")

    @app.get("/")
    def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/api/queue")
    def queue(state: str = "pending") -> dict:
        try:
            rows = store.review_rows(None if state == "all" else state)
        except UploadError as err:
            raise HTTPException(err.status_code, str(err)) from err
        return {
            "labels": list(LABELS),
            "states": list(REVIEW_STATES),
            "holdout_min": HOLDOUT_MIN,
            "items": [_item(r) for r in rows],
            "counts": store.review_counts(),
        }

    @app.get("/crop/{upload_id}")
    def crop(upload_id: str) -> FileResponse:
        try:
            path = store.crop_file(upload_id)
        except UploadError as err:
            raise HTTPException(err.status_code, str(err)) from err
        if not path.is_file():  # withdrawn between the queue and this request
            raise HTTPException(404, f"no upload with id {upload_id}")
        return FileResponse(path, media_type="image/png")

    @app.post("/api/review")
    async def review(request: Request) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the review as application/json")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"a review batch is at most {MAX_BODY} bytes")
        try:
            data = json.loads(body)
        except ValueError as err:
            raise HTTPException(400, "the review body is not JSON") from err
        if not isinstance(data, dict) or set(data) - {"ids", "action", "label"}:
            raise HTTPException(400, 'send {"ids": [...], "action": ..., "label": ...}')
        ids = data.get("ids")
        if not isinstance(ids, list):
            raise HTTPException(400, "ids must be a list of upload ids")
        try:
            changed = await _in_thread(store.review, ids, data.get("action"), data.get("label"))
        except UploadError as err:
            raise HTTPException(err.status_code, str(err)) from err
        return {"changed": changed, "counts": store.review_counts()}

    for name in STATIC:
        folder = web_dir / name
        if folder.is_dir():
            app.mount(f"/static/{name}", StaticFiles(directory=folder), name=f"static-{name}")
    if models_dir.is_dir():
        app.mount("/models", StaticFiles(directory=models_dir), name="models")
    # Inside the guard for the API's own cache policy (its paths are plain there), outside it
    # so that the guard's refusals carry the security headers too.
    inner = SecurityHeadersMiddleware(app, asset_version=lambda: "")
    return SecurityHeadersMiddleware(ReviewGuard(inner, token, port), asset_version=lambda: "")


async def _in_thread(fn, *args):
    """Run a store call off the event loop (it waits for SQLite's write lock)."""
    from fastapi.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
