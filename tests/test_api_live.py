"""A real Uvicorn server on a free port (plain HTTP and HTTPS with the generated certificate)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from test_backend_helpers import image_bytes, make_settings

from backend.app import create_app
from backend.cli import resolve_tls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(settings, tls=None):
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning",
        ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def test_live_http_upload_roundtrip(tmp_path):
    settings = make_settings(tmp_path, port=free_port())
    base = f"http://127.0.0.1:{settings.port}"
    with live_server(settings):
        assert httpx.get(f"{base}/api/health").json()["status"] == "ok"
        r = httpx.post(
            f"{base}/api/uploads",
            files={"crop": ("../../x.png", image_bytes(seed=42), "image/png")},
            data={"label": "surprise", "consent": "on"},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert (settings.custom_dir / "surprise" / f"{body['sha256']}.png").is_file()
        r = httpx.delete(f"{base}/api/uploads/{body['id']}",
                         headers={"X-Deletion-Token": body["deletion_token"]})
        assert r.status_code == 204
        assert not (settings.custom_dir / "surprise" / f"{body['sha256']}.png").exists()


def test_live_https_with_generated_certificate(tmp_path):
    settings = make_settings(tmp_path, port=free_port(), https=True)
    tls = resolve_tls(settings, lan_ips=[])
    base = f"https://127.0.0.1:{settings.port}"
    with live_server(settings, tls):
        ctx = ssl.create_default_context(cafile=str(tls[0]))  # verifies the chain and the IP SAN
        r = httpx.get(f"{base}/api/labels", verify=ctx)
        assert r.status_code == 200 and len(r.json()["labels"]) == 7
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
        with pytest.raises(httpx.ConnectError):  # an unverified client must not be fooled silently
            httpx.get(f"{base}/api/health")
        local = httpx.get(f"https://localhost:{settings.port}/api/health", verify=ctx)
        assert local.json()["status"] == "ok"
