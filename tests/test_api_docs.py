"""/docs and /redoc: the API documentation works offline, from vendored files, under the app's
own Content-Security-Policy (FastAPI's default pages load Swagger UI / ReDoc from a CDN)."""

from __future__ import annotations

import re

import pytest
from e2e_support import RequestLog, browser, live_server, require_browser, wait_state
from fastapi.testclient import TestClient
from test_backend_helpers import make_settings

from backend.app import create_app
from backend.middleware import CSP

DOC_PAGES = ("/docs", "/redoc")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def client(repo_root, tmp_path):
    settings = make_settings(tmp_path, web_dir=repo_root / "web", models_dir=repo_root / "models")
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize("path", DOC_PAGES)
def test_docs_page_references_no_external_host(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP  # the app-wide policy, no exceptions
    assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text
    refs = re.findall(r'(?:src|href|spec-url|data-openapi-url)="([^"]+)"', r.text)
    assert any("/static/vendor/" in ref for ref in refs), refs
    assert "/openapi.json" in refs
    for ref in refs:
        assert ref.startswith("/"), ref
        got = client.get(ref)
        assert got.status_code == 200, ref
        if ref.split("?")[0].endswith(".js"):
            assert "javascript" in got.headers["content-type"], ref


def test_vendored_docs_files_are_licensed_and_checksummed(repo_root):
    vendor = repo_root / "web" / "vendor"
    sums = (vendor / "SHA256SUMS").read_text()
    for folder in ("swagger-ui-5.35.0", "redoc-2.5.4"):
        assert (vendor / folder / "LICENSE").is_file(), folder
        for f in (vendor / folder).iterdir():
            assert f"./{folder}/{f.name}" in sums, f


def test_default_cdn_routes_are_gone(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "fer-hybrid"
    assert client.get("/docs/oauth2-redirect").status_code == 404


@pytest.mark.slow
@pytest.mark.browser
def test_docs_render_with_no_network(repo_root, tmp_path):
    """Headless Chromium with every non-local request aborted: both pages render the API."""
    require_browser()
    web = repo_root / "web"
    with live_server(repo_root / "models", tmp_path / "custom", web_dir=web) as base, browser() as b:
        ctx = b.new_context()
        log = RequestLog(ctx)
        ctx.route(re.compile(r"^(?!http://127\.0\.0\.1:).*"), lambda route: route.abort())
        page = ctx.new_page()
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

        page.goto(f"{base}/docs")
        title = wait_state(page, "document.querySelector('.swagger-ui .info .title')?.textContent",
                           timeout_s=30)
        assert "fer-hybrid" in title
        wait_state(page, "document.querySelectorAll('.opblock').length > 3", timeout_s=30)
        assert "/api/uploads" in page.inner_text("#swagger-ui")

        page.goto(f"{base}/redoc")
        heading = wait_state(page, "document.querySelector('redoc h1, .api-info h1')?.textContent",
                             timeout_s=30)
        assert "fer-hybrid" in heading
        assert "/api/uploads" in page.inner_text("body")

        # ReDoc's sidebar credit ("API docs by Redocly") hard-codes its logo on a CDN; the app's
        # img-src 'self' refuses it in the browser (no request leaves the machine) and the link
        # text stays. Nothing else may be attempted or refused.
        foreign = log.foreign(base)
        assert set(foreign) <= {REDOC_LOGO}, foreign
        refused = [c for c in console if "Content Security Policy" in c or "pageerror" in c]
        assert all(REDOC_LOGO in c and "has been blocked" in c for c in refused), refused
        assert len(refused) == len(foreign), (refused, foreign)
        ctx.close()
