"""Pages, static files, models: MIME types, caching, compression and security headers."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import make_settings

from backend.app import create_app
from backend.assets import TFJS_DIR, TFJS_URL, TFJS_VERSION
from backend.precache import shell_urls, vendor_urls

MANIFEST = {
    "schema": "fer-hybrid/manifest@1",
    "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
    "members": [
        {"name": "a", "path": "a/model.json", "weight": 1.0},
        {"name": "b", "path": "b/model.json", "weight": 0.5},
    ],
}
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
}


@pytest.fixture
def site(tmp_path):
    settings = make_settings(tmp_path)
    web, models = settings.web_dir, settings.models_dir
    (web / "index.html").write_text(
        "<!doctype html><title>fer</title>"
        '<script type="module" src="/static/js/main.js?v={{ asset_version }}"></script>'
        "<p>v={{ asset_version }}</p>"
    )
    (web / "upload.html").write_text(
        "<!doctype html><title>upload</title><p>{{ asset_version }}</p>"
    )
    (web / "sw.js").write_text("self.addEventListener('fetch', () => {});\n")
    (web / "js").mkdir()
    (web / "js" / "main.js").write_text("console.log('hello');\n" * 200)
    (web / "js" / "worker.mjs").write_text("export const x = 1;\n")
    (web / "app.webmanifest").write_text('{"name": "fer"}')
    vendor = web / "vendor" / "tfjs-4.22.0"
    vendor.mkdir(parents=True)
    (vendor / "tfjs-backend-wasm-simd.wasm").write_bytes(b"\0asm\x01\0\0\0" + b"\0" * 4000)
    (vendor / "tf-core.min.js").write_text("var tf = {};\n" * 300)
    (models / "manifest.json").write_text(json.dumps(MANIFEST))
    (models / "a").mkdir()
    (models / "a" / "model.json").write_text(
        json.dumps({"format": "graph-model", "weightsManifest": [{"paths": ["group1-shard1of1.bin"]}]})
    )
    (models / "a" / "group1-shard1of1.bin").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "secret.txt").write_text("do not serve me")
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_pages_render_templates_with_asset_version(site):
    client, _ = site
    version = client.app.state.asset_version.get()
    assert len(version) == 12
    for path in ("/", "/upload"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert f"{version}" in r.text and "{{" not in r.text
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""
        for name, value in SECURITY.items():
            assert r.headers[name] == value
        csp = r.headers["content-security-policy"]
        for part in (
            "default-src 'self'",
            "'wasm-unsafe-eval'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "mediastream:",
        ):
            assert part in csp
        assert "camera=(self)" in r.headers["permissions-policy"]
        assert "strict-transport-security" not in r.headers  # plain HTTP


def test_asset_version_changes_with_content(site):
    client, settings = site
    before = client.app.state.asset_version.get()
    (settings.models_dir / "manifest.json").write_text(json.dumps({**MANIFEST, "notes": "new"}))
    after = client.app.state.asset_version.get()
    assert before != after and after in client.get("/").text


@pytest.mark.parametrize(
    "path, ctype",
    [
        ("/static/js/main.js", "text/javascript"),
        ("/static/js/worker.mjs", "text/javascript"),
        ("/static/app.webmanifest", "application/manifest+json"),
        ("/static/vendor/tfjs-4.22.0/tfjs-backend-wasm-simd.wasm", "application/wasm"),
        ("/models/manifest.json", "application/json"),
        ("/models/a/model.json", "application/json"),
        ("/models/a/group1-shard1of1.bin", "application/octet-stream"),
        ("/sw.js", "text/javascript"),
    ],
)
def test_mime_types(site, path, ctype):
    client, _ = site
    r = client.get(path)
    assert r.status_code == 200, path
    assert r.headers["content-type"].split(";")[0] == ctype
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"


def test_cache_policy(site):
    client, _ = site
    version = client.app.state.asset_version.get()
    immutable = "public, max-age=31536000, immutable"
    assert (
        client.get("/static/vendor/tfjs-4.22.0/tf-core.min.js").headers["cache-control"]
        == immutable
    )
    assert client.get(f"/static/js/main.js?v={version}").headers["cache-control"] == immutable
    assert client.get("/static/js/main.js?v=stale").headers["cache-control"] == "no-cache"
    r = client.get("/static/js/main.js")
    assert r.headers["cache-control"] == "no-cache"
    assert (
        client.get("/static/js/main.js", headers={"If-None-Match": r.headers["etag"]}).status_code
        == 304
    )
    m = client.get("/models/manifest.json")
    assert (
        m.headers["cache-control"] == "no-cache"
        and "etag" in m.headers
        and "last-modified" in m.headers
    )
    assert m.json()["members"][0]["path"] == "a/model.json"
    assert (
        client.get(
            "/models/manifest.json", headers={"If-None-Match": m.headers["etag"]}
        ).status_code
        == 304
    )
    sw = client.get("/sw.js")
    assert sw.headers["cache-control"] == "no-cache" and sw.headers["service-worker-allowed"] == "/"
    assert client.get("/api/health").headers["cache-control"] == "no-store"
    missing = client.get("/static/vendor/tfjs-4.22.0/nope.js")
    assert missing.status_code == 404 and "immutable" not in missing.headers["cache-control"]


def test_variant_models_are_served_like_the_default(site, repo_root):
    """A variant's folder (models/<id>/, listed in the manifest's variants) is plain /models/
    content: same types, revalidated caching, no listing; the service worker precaches no model
    file (it caches the default's members when the page fetches the manifest, a variant's when
    the page fetches them)."""
    client, settings = site
    folder = settings.models_dir / "ferplus" / "c"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(
        json.dumps({"format": "graph-model", "weightsManifest": [{"paths": ["group1-shard1of1.bin"]}]})
    )
    (folder / "group1-shard1of1.bin").write_bytes(b"\1" * 300)
    (folder.parent / "manifest.json").write_text(json.dumps(
        {**MANIFEST, "members": [{"name": "c", "path": "c/model.json", "weight": 1.0}]}))
    (settings.models_dir / "manifest.json").write_text(json.dumps({**MANIFEST, "variants": [
        {"id": "a", "title": "A", "manifest": "manifest.json", "default": True},
        {"id": "ferplus", "title": "F", "manifest": "ferplus/manifest.json"}]}))
    for path, ctype in [("/models/ferplus/manifest.json", "application/json"),
                        ("/models/ferplus/c/model.json", "application/json"),
                        ("/models/ferplus/c/group1-shard1of1.bin", "application/octet-stream")]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].split(";")[0] == ctype
        assert r.headers["cache-control"] == "no-cache" and "etag" in r.headers
    assert client.get("/models/ferplus/").status_code == 404
    assert client.get("/api/health").json() == {"status": "ok", "models": 2}  # the default's

    listed = shell_urls(repo_root / "web") + vendor_urls(repo_root / "web")
    assert not [u for u in listed if u.startswith("/models/")]


def test_gzip_for_js_and_json_not_for_weights(site):
    client, _ = site
    js = client.get("/static/js/main.js", headers={"Accept-Encoding": "gzip"})
    assert js.headers.get("content-encoding") == "gzip"
    assert js.text.startswith("console.log")  # httpx decodes it transparently
    wasm = client.get(
        "/static/vendor/tfjs-4.22.0/tfjs-backend-wasm-simd.wasm",
        headers={"Accept-Encoding": "gzip"},
    )
    assert wasm.headers.get("content-encoding") == "gzip"
    weights = client.get("/models/a/group1-shard1of1.bin", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in weights.headers
    assert weights.content == bytes(range(256)) * 20


def test_no_path_traversal_or_listing(site):
    client, _ = site
    for path in (
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/models/..%2fsecret.txt",
        "/static/",
        "/static/js/",
        "/models/",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "do not serve me" not in r.text
        assert r.headers["content-type"] == "application/json" and r.json()["detail"]


def test_api_health_labels_and_docs(site):
    client, _ = site
    assert client.get("/api/health").json() == {"status": "ok", "models": 2}
    assert client.get("/api/labels").json() == {
        "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    }
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/uploads"]["post"]
    assert "201" in post["responses"] and "multipart/form-data" in post["requestBody"]["content"]
    assert {"409", "413"} <= set(post["responses"])
    assert "/api/uploads/{upload_id}" in spec["paths"] and "/api/uploads/stats" in spec["paths"]
    assert "UploadCreated" in spec["components"]["schemas"]
    unknown = client.get("/api/nope")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Not Found"}
    assert client.post("/api/labels").status_code == 405


def test_missing_web_and_models_give_json_404s(tmp_path):
    settings = make_settings(
        tmp_path, web_dir=tmp_path / "nowhere", models_dir=tmp_path / "nomodels"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").json() == {"status": "ok", "models": 0}
        for path in ("/", "/upload", "/sw.js", "/static/js/main.js", "/models/manifest.json"):
            r = client.get(path)
            assert r.status_code == 404 and isinstance(r.json()["detail"], str), path


def test_real_web_folder_is_served(repo_root, tmp_path):
    """The project's own web/ (written by the page helper) renders and serves with the right types."""
    web = repo_root / "web"
    settings = make_settings(tmp_path, web_dir=web, models_dir=repo_root / "models")
    with TestClient(create_app(settings)) as client:
        version = client.app.state.asset_version.get()
        for page in ("/", "/upload"):
            if (web / ("index.html" if page == "/" else "upload.html")).is_file():
                r = client.get(page)
                assert r.status_code == 200 and "{{" not in r.text, page
        assert (
            version in client.get("/").text
            or "asset_version" not in (web / "index.html").read_text()
        )
        for wasm in web.glob("vendor/*/*.wasm"):
            r = client.get(f"/static/{wasm.relative_to(web).as_posix()}")
            assert r.headers["content-type"] == "application/wasm"
            assert "immutable" in r.headers["cache-control"]


def test_pages_load_tfjs_from_the_pinned_folder(repo_root, tmp_path):
    """The real pages take the vendored TF.js folder from backend/assets.py (script tags and the
    <meta> that env.js reads), and every tfjs script they name is served."""
    web = repo_root / "web"
    assert (web / TFJS_DIR).is_dir()
    settings = make_settings(tmp_path, web_dir=web, models_dir=repo_root / "models")
    with TestClient(create_app(settings)) as client:
        for page in ("/", "/upload"):
            html = client.get(page).text
            assert f'<meta name="fer-tfjs" content="{TFJS_URL}">' in html, page
            scripts = re.findall(r'<script defer src="([^"]+)"', html)
            assert len(scripts) >= 4 and all(s.startswith(TFJS_URL) for s in scripts), page
            for src in scripts:
                assert client.get(src).status_code == 200, src


def _sw_list(js: str, name: str) -> list[str]:
    match = re.search(rf"^const {name} = (\[.*\]);$", js, re.M)
    assert match, f"{name} not found in the rendered sw.js"
    return json.loads(match.group(1))


def test_service_worker_precaches_every_module_and_vendored_file(repo_root, tmp_path):
    """/sw.js is rendered with lists derived from web/: no module under web/js/ can be missing
    (offline, the page would not start), and every listed URL is really served."""
    web = repo_root / "web"
    settings = make_settings(tmp_path, web_dir=web, models_dir=repo_root / "models")
    with TestClient(create_app(settings)) as client:
        sw = client.get("/sw.js")
        assert sw.status_code == 200 and "{{" not in sw.text and "{%" not in sw.text
        assert sw.headers["content-type"].split(";")[0] == "text/javascript"
        assert sw.headers["service-worker-allowed"] == "/"
        assert sw.headers["cache-control"] == "no-cache"
        again = client.get("/sw.js", headers={"If-None-Match": sw.headers["etag"]})
        assert again.status_code == 304
        shell, vendor = _sw_list(sw.text, "SHELL_URLS"), _sw_list(sw.text, "VENDOR_URLS")
        modules = [p for p in (web / "js").rglob("*") if p.suffix in (".js", ".mjs")]
        assert len(modules) >= 10
        for module in modules:
            assert f"/static/{module.relative_to(web).as_posix()}" in shell, module
        assert {"/", "/upload", "/static/css/app.css"} <= set(shell)
        for name in ("tf-core.es2017.min.js", "tf-backend-wasm.es2017.min.js",
                     "tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm.wasm"):
            assert TFJS_URL + name in vendor
        # Fetched on first use only (backend/precache.py TFJS_ON_DEMAND).
        assert not [u for u in vendor if "webgl" in u or "threaded" in u]
        assert any(u.endswith("/models/blazeface.json") for u in vendor)
        assert any(u.endswith("/models/blazeface.bin") for u in vendor)
        for url in shell + vendor:
            assert client.get(url).status_code == 200, url


def test_service_worker_list_follows_the_files(site):
    """A module added under web/js/ is precached without editing any list."""
    client, settings = site
    web = settings.web_dir
    (web / "sw.js").write_text("const SHELL_URLS = {{ shell_urls | tojson }};\n")
    (web / "js" / "later").mkdir()
    (web / "js" / "later" / "added.js").write_text("export const y = 2;\n")
    shell = _sw_list(client.get("/sw.js").text, "SHELL_URLS")
    expected = {"/static/js/main.js", "/static/js/worker.mjs", "/static/js/later/added.js"}
    assert expected <= set(shell)


def test_tfjs_version_is_written_once(repo_root):
    """The tfjs pin lives in backend/assets.py; pages, env.js, sw.js, vendor.sh read it there."""
    where = []
    for root in (repo_root / "web", repo_root / "backend"):
        for path in root.rglob("*"):
            rel = path.relative_to(repo_root)
            skipped = rel.parts[:2] == ("web", "vendor") or "__pycache__" in rel.parts
            if skipped or not path.is_file():
                continue
            if TFJS_VERSION in path.read_text(encoding="utf-8", errors="ignore"):
                where.append(rel.as_posix())
    assert where == ["backend/assets.py"]


def test_upload_page_offers_the_servers_labels(repo_root, tmp_path):
    """The upload form's choices are the server's label list (what GET /api/labels returns),
    rendered into the page, in order, instead of a copy in upload.js."""
    web = repo_root / "web"
    settings = make_settings(tmp_path, web_dir=web, models_dir=repo_root / "models")
    with TestClient(create_app(settings)) as client:
        html = client.get("/upload").text
        labels = client.get("/api/labels").json()["labels"]
    assert re.findall(r'<input type="radio" name="label" value="([^"]+)">', html) == labels
    assert "'happy'" not in (web / "js" / "upload.js").read_text()
