"""A real Uvicorn server on a free port (plain HTTP and HTTPS with the generated certificate)."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest
from test_backend_helpers import image_bytes, make_settings, stored_files
from uvicorn_thread import free_port
from uvicorn_thread import serve_in_thread as live_server

from backend.cli import resolve_tls


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
        r = httpx.delete(
            f"{base}/api/uploads/{body['id']}", headers={"X-Deletion-Token": body["deletion_token"]}
        )
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


def test_live_oversized_chunked_body_is_refused_before_it_ends(tmp_path):
    """No Content-Length, chunked body: the server answers 413 while the client is still sending."""
    settings = make_settings(tmp_path, port=free_port(), max_upload_bytes=50_000)
    with live_server(settings), socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
        sock.sendall(
            b"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        head = (
            b'--xyz\r\nContent-Disposition: form-data; name="crop"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = b"\0" * 32768
        for _ in range(8):  # 256 KB > the 164 KB body limit; the "body" never finishes
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.settimeout(10)
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert not stored_files(settings.custom_dir)
