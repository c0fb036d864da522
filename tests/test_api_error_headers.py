"""Answers made below the app (the protocol's 400, 408 and 431) and the app's own 500s carry the
same security headers and JSON `detail` as every other answer, over a real socket of the server
`fer-hybrid serve` runs (backend.cli.uvicorn_options)."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest
from test_backend_helpers import image_bytes, make_settings
from uvicorn_thread import free_port
from uvicorn_thread import serve_in_thread as live_server

from backend.middleware import SECURITY_HEADERS

HOST = b"Host: 127.0.0.1\r\n"


def exchange(port: int, data: bytes, wait: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(data)
        sock.settimeout(wait)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_guarded(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, (status, headers, body[:200])
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (expected, name, headers)
    assert headers.get("cache-control") == "no-store", headers
    assert headers["content-type"] == "application/json"
    detail = json.loads(body)["detail"]
    assert isinstance(detail, str) and detail


@pytest.fixture
def server(tmp_path):
    settings = make_settings(
        tmp_path, port=free_port(), header_timeout_seconds=1, max_request_head_bytes=4096
    )
    with live_server(settings) as app:
        yield settings, app


def test_malformed_request_gets_a_guarded_400(server):
    settings, _ = server
    assert_guarded(*exchange(settings.port, b"NOT AN HTTP REQUEST\r\n\r\n"), 400)
    assert_guarded(*exchange(settings.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400)


def test_oversized_head_gets_a_guarded_431(server):
    settings, _ = server
    # still incomplete past the 4 KiB limit: the protocol refuses it before the app sees it
    big = b"GET /api/health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 8000
    assert_guarded(*exchange(settings.port, big), 431)


def test_slow_head_gets_a_guarded_408(server):
    settings, _ = server
    assert_guarded(*exchange(settings.port, b"GET /api/health HTTP/1.1\r\n" + HOST), 408)


def test_an_internal_error_is_a_guarded_json_500_logged_once(server, monkeypatch, caplog):
    settings, app = server
    store = app.state.store

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(store, "stats", broken)
    monkeypatch.setattr(store, "add", broken)
    base = f"http://127.0.0.1:{settings.port}"
    with caplog.at_level(logging.ERROR):
        r = httpx.get(base + "/api/uploads/stats")
        assert r.status_code == 500 and "a bug" not in r.text
        assert_guarded(500, dict(r.headers), r.content, 500)
        r = httpx.post(
            base + "/api/uploads",
            files={"crop": ("c.png", image_bytes(seed=1), "image/png")},
            data={"label": "happy", "consent": "true"},
        )
        assert_guarded(500, dict(r.headers), r.content, 500)
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert len(tracebacks) == 2, [rec.getMessage() for rec in caplog.records]
    assert httpx.get(base + "/api/health").status_code == 200  # and the server goes on
