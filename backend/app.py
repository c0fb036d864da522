"""The FastAPI application factory.

    from backend.app import create_app
    app = create_app()            # settings from FER_HYBRID_* env vars
    app = create_app(Settings(custom_dir=tmp))

Routes (see /docs): / and /upload (pages), /sw.js, /static/* (web/), /models/* (models/),
/api/health, /api/labels, /api/uploads (POST), /api/uploads/stats, /api/uploads/{id} (DELETE).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from .assets import AssetVersion
from .hosts import TrustedHostMiddleware, TrustedHosts
from .memory import tune_malloc
from .middleware import (
    BodySizeLimitMiddleware,
    HeaderLimitMiddleware,
    InternalErrorMiddleware,
    RelativeRedirectMiddleware,
    SecurityHeadersMiddleware,
)
from .ratelimit import RateLimiter
from .routers import api, pages, uploads
from .routers.static import AssetFiles
from .served import ModelFiles, web_file_served
from .settings import Settings, default_settings
from .storage import UploadStore
from .upload_openapi import install as document_uploads

log = logging.getLogger("fer_hybrid.server")

DESCRIPTION = """
Serves the fer-hybrid web app (facial-expression recognition that runs entirely in the
browser with TF.js) and collects user-contributed, consented training photos.
No image is ever analysed on the server.
"""


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(
            str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")
        )
        parts.append(
            f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid")
        )
    return "; ".join(parts) or "invalid request"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the upload store's crash recovery runs at startup (lifespan)."""
    settings = settings or default_settings()
    store = UploadStore(settings.custom_dir)
    asset_version = AssetVersion(settings.web_dir, settings.models_dir)
    trusted = TrustedHosts(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Before any upload is decoded: freed decode buffers go back to the OS (backend/memory.py).
        tune_malloc()
        trusted.names()  # LAN addresses + certificate names, once, before the first request
        report = store.recover()
        app.state.recovery = report
        yield
        store.close()

    from importlib.metadata import PackageNotFoundError, version

    try:
        app_version = version("fer-hybrid")
    except PackageNotFoundError:
        app_version = "dev"

    app = FastAPI(
        title="fer-hybrid",
        version=app_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /redoc are our own pages (routers/pages.py) on vendored Swagger UI / ReDoc:
        # FastAPI's defaults load them from a CDN, blank offline and outside our CSP.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    # one bucket per client address for POST /api/uploads (tests swap in one with a fake clock)
    app.state.upload_limiter = RateLimiter(settings.uploads_per_minute, settings.upload_burst)
    app.state.asset_version = asset_version
    app.state.trusted_hosts = trusted
    app.state.recovery = None

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(uploads.router)
    document_uploads(app, settings)  # the uploads contract in /openapi.json, from settings
    app.mount("/static", AssetFiles(settings.web_dir, web_file_served), name="static")
    app.mount("/models", AssetFiles(settings.models_dir, ModelFiles(settings.models_dir)), name="models")

    # add_middleware wraps: the last one added is the outermost. Security headers go on
    # everything, including the limiters' 413/431s, the Host check's 400s and the JSON 500 of an
    # internal error (the next layer in); then the header limits, the Host allow-list (every
    # path: DNS rebinding would read the API too), relative redirects, the body limit; gzip
    # sits innermost.
    app.add_middleware(
        GZipMiddleware,
        minimum_size=1024,
        compresslevel=6,
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream"),
    )
    app.add_middleware(
        BodySizeLimitMiddleware, limit=lambda: settings.max_request_bytes, paths=("/api/uploads",)
    )
    app.add_middleware(RelativeRedirectMiddleware)
    app.add_middleware(TrustedHostMiddleware, trusted=trusted)
    app.add_middleware(
        HeaderLimitMiddleware,
        max_bytes=lambda: settings.max_header_bytes,
        max_count=lambda: settings.max_header_count,
    )
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, asset_version=asset_version.get)
    return app
