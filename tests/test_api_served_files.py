"""/static and /models serve the product and nothing else, and `?v=` makes immutable only what
the asset version covers. Against the repository's own web/ and models/ (the real layout, with
its reports, templates and tooling next to what the page loads)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import make_settings

from backend.app import create_app

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def client(repo_root, tmp_path_factory):
    settings = make_settings(
        tmp_path_factory.mktemp("served"),
        web_dir=repo_root / "web",
        models_dir=repo_root / "models",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def page_model_files(models) -> list[str]:
    """What the page fetches from /models: manifests, members' model.json, their shards."""
    out = []

    def manifest(rel: str) -> dict:
        data = json.loads((models / rel).read_text())
        out.append(rel)
        folder = rel.rpartition("/")[0]
        for member in data["members"]:
            model = "/".join(filter(None, [folder, member["path"]]))
            out.append(model)
            group_dir = model.rpartition("/")[0]
            for group in json.loads((models / model).read_text())["weightsManifest"]:
                out.extend(f"{group_dir}/{p}" for p in group["paths"])
        return data

    top = manifest("manifest.json")
    for variant in top.get("variants", []):
        if variant["manifest"] != "manifest.json":
            manifest(variant["manifest"])
    return out


def test_every_file_the_page_fetches_is_served(client, repo_root):
    wanted = page_model_files(repo_root / "models")
    assert "ferplus/manifest.json" in wanted and any(p.endswith(".bin") for p in wanted)
    for rel in wanted:
        assert client.get(f"/models/{rel}").status_code == 200, rel
    web = repo_root / "web"
    for rel in (
        "js/main.js",
        "css/app.css",
        "icon.svg",
        "manifest.webmanifest",
        "vendor/human-3.3.6/models/blazeface.json",  # the detector
        "vendor/human-3.3.6/models/blazeface.bin",
        "vendor/swagger-ui-5.35.0/swagger-ui-bundle.js",
        "vendor/redoc-2.5.4/redoc.standalone.js",
    ):
        assert (web / rel).is_file(), rel
        assert client.get(f"/static/{rel}").status_code == 200, rel


def test_what_is_not_the_product_is_a_404(client, repo_root):
    models, web = repo_root / "models", repo_root / "web"
    reports = [p for p in models.rglob("*") if p.is_file()]
    wanted = set(page_model_files(models))
    refused = [p.relative_to(models).as_posix() for p in reports]
    refused = [r for r in refused if r not in wanted]
    # the model card, report folders, figures and a variant's calibration report among them
    for rel in ("README.md", "bench/bench.md", "robustness/robustness.json",
                "calibration/calibration.json", "ferplus/calibration/calibration.md"):
        assert rel in refused, rel
    for rel in refused:
        r = client.get(f"/models/{rel}")
        assert r.status_code == 404, rel
        assert r.headers["content-type"] == "application/json"
    templates_and_tooling = [
        "index.html", "upload.html", "head.html", "docs.html", "redoc.html", "sw.js",
        "README.md", "scripts/vendor.sh", "vendor/README.md", "vendor/SHA256SUMS",
        "vendor/tfjs-4.22.0/LICENSE",
    ]
    for rel in templates_and_tooling:
        assert (web / rel).is_file(), rel
        assert client.get(f"/static/{rel}").status_code == 404, rel
    assert "{{" not in client.get("/sw.js").text  # the template is served rendered, at /sw.js


def test_a_version_query_makes_immutable_only_what_the_version_covers(client):
    version = client.app.state.asset_version.get()
    covered = ["/static/js/main.js", "/static/css/app.css", "/models/manifest.json"]
    for path in covered:
        r = client.get(f"{path}?v={version}")
        assert r.status_code == 200 and r.headers["cache-control"] == IMMUTABLE, path
    # a member's weights and a variant's files change without changing the version
    member = client.get("/models/manifest.json").json()["members"][0]["path"]  # e.g. x/model.json
    folder = member.rsplit("/", 1)[0]
    not_covered = [f"/models/{member}", f"/models/{folder}/group1-shard1of1.bin",
                   "/models/ferplus/manifest.json", "/", "/upload"]
    for path in not_covered:
        r = client.get(f"{path}?v={version}")
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-cache", (path, r.headers["cache-control"])
