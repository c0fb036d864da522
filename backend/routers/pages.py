"""The HTML pages and the root-scoped service worker, all Jinja2 templates from web/."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, TemplateNotFound, select_autoescape

from contract import LABELS

from ..assets import TFJS_URL
from ..dependencies import AssetVersionDep, SettingsDep
from ..precache import shell_urls, vendor_urls

router = APIRouter(tags=["pages"])

_envs: dict[Path, Environment] = {}


class JavaScriptResponse(Response):
    media_type = "text/javascript"


def _env(web_dir: Path) -> Environment:
    env = _envs.get(web_dir)
    if env is None:
        env = Environment(
            loader=FileSystemLoader(str(web_dir)),
            autoescape=select_autoescape(["html"]),
            auto_reload=True,
        )
        _envs[web_dir] = env
    return env


def _render(
    request: Request,
    settings,
    asset_version,
    name: str,
    response_class: type[Response] = HTMLResponse,
    headers: dict[str, str] | None = None,
    **context,
) -> Response:
    try:
        template = _env(Path(settings.web_dir)).get_template(name)
    except TemplateNotFound as err:
        raise HTTPException(
            404, f"page template web/{name} not found in {settings.web_dir}"
        ) from err
    html = template.render(
        asset_version=asset_version.get(), tfjs=TFJS_URL, request=request, **context
    )
    body = html.encode("utf-8")
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**(headers or {}), "etag": etag}
    if etag in [
        t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")
    ]:
        return Response(status_code=304, headers=headers)
    return response_class(body, headers=headers)


@router.get("/", response_class=HTMLResponse, summary="The camera page")
def index(request: Request, settings: SettingsDep, asset_version: AssetVersionDep) -> Response:
    return _render(request, settings, asset_version, "index.html")


@router.get(
    "/upload",
    response_class=HTMLResponse,
    summary="The contribute-a-photo page",
)
def upload_page(
    request: Request, settings: SettingsDep, asset_version: AssetVersionDep
) -> Response:
    # The label choices come from the server's list (the one GET /api/labels returns), rendered
    # into the page so that the form also works offline from the service worker's cache.
    return _render(request, settings, asset_version, "upload.html", labels=list(LABELS))


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def swagger_docs(
    request: Request, settings: SettingsDep, asset_version: AssetVersionDep
) -> Response:
    """API documentation (Swagger UI, vendored in web/vendor/)."""
    return _render(request, settings, asset_version, "docs.html",
                   openapi_url=request.app.openapi_url)


@router.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
def redoc_docs(
    request: Request, settings: SettingsDep, asset_version: AssetVersionDep
) -> Response:
    """API documentation (ReDoc, vendored in web/vendor/)."""
    return _render(request, settings, asset_version, "redoc.html",
                   openapi_url=request.app.openapi_url)


@router.get(
    "/sw.js",
    summary="The service worker (root scope)",
    response_class=JavaScriptResponse,
)
def service_worker(
    request: Request, settings: SettingsDep, asset_version: AssetVersionDep
) -> Response:
    """web/sw.js with its precache lists filled in from the files on disk (backend/precache.py)."""
    web = Path(settings.web_dir)
    return _render(
        request, settings, asset_version, "sw.js",
        response_class=JavaScriptResponse,
        headers={"service-worker-allowed": "/", "cache-control": "no-cache"},
        shell_urls=shell_urls(web), vendor_urls=vendor_urls(web),
    )


# HEAD answers like GET (no body), kept out of the OpenAPI schema to avoid duplicate operations.
for _path, _endpoint in (("/", index), ("/upload", upload_page), ("/docs", swagger_docs),
                         ("/redoc", redoc_docs), ("/sw.js", service_worker)):
    router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False)
