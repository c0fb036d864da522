"""Transport-level defences (issue 14, defects 2, 3, 4 and 8), mostly over real sockets.

* trusted Host allow-list on every path + same-origin rule on scheme, host and port;
* request-head limits: the protocol refuses an oversized head before buffering it, the ASGI
  middleware refuses too many / too large headers with 431;
* timeouts: a silent connection or a slowloris head is closed, a slow upload body still works;
* trailing-slash redirects never carry the Host header.

The live tests serve with `backend.cli.uvicorn_options`, i.e. the configuration of `fer-hybrid serve`.
"""

from __future__ import annotations

import select
import socket
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import image_bytes, make_settings, stored_files
from typer.testing import CliRunner
from uvicorn_thread import free_port
from uvicorn_thread import serve_in_thread as live_server

from backend import tls
from backend.app import create_app
from backend.settings import Settings

UPLOAD_FIELDS = {"label": "happy", "consent": "true"}


def upload_files(seed: int = 7) -> dict:
    return {"crop": ("c.png", image_bytes(seed=seed), "image/png")}


def read_reply(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (or `timeout` passes).

    Returns (bytes, seconds until the close); a reset counts as a close.
    """
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data, time.monotonic() - start


def read_one_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """One complete Content-Length response from a keep-alive connection."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, content, ctype) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------ defect 2: Host and Origin
def test_foreign_host_header_is_refused_on_every_path(tmp_path):
    """The DNS-rebinding shape: a foreign Host (and a matching Origin) gets 400 everywhere."""
    settings = make_settings(tmp_path, port=free_port())
    port = settings.port
    (settings.web_dir / "a.js").write_text("1")
    base = f"http://127.0.0.1:{port}"
    evil = f"evil.example:{port}"
    with live_server(settings):
        for path in ("/api/health", "/api/labels", "/api/uploads/stats", "/", "/static/a.js"):
            r = httpx.get(base + path, headers={"Host": evil})
            assert r.status_code == 400, (path, r.status_code)
            detail = r.json()["detail"]
            assert "host" in detail.lower() and "evil" not in detail, detail
        r = httpx.post(
            f"{base}/api/uploads",
            headers={"Host": evil, "Origin": f"http://{evil}"},
            files=upload_files(),
            data=UPLOAD_FIELDS,
        )
        assert r.status_code == 400, r.text
        assert not stored_files(settings.custom_dir)
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            r = httpx.get(f"{base}/api/health", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        r = httpx.get(f"{base}/api/health", headers={"Host": f"LocalHost:{port}"})
        assert r.status_code == 200  # host names are case-insensitive


def test_origin_must_match_scheme_host_and_port(tmp_path):
    settings = make_settings(tmp_path, port=free_port())
    port = settings.port
    base = f"http://127.0.0.1:{port}"
    with live_server(settings):
        for origin in (
            f"https://127.0.0.1:{port}",  # same host and port, other scheme
            f"http://127.0.0.1:{port + 1}",  # other port
            "http://127.0.0.1",  # default port 80
            f"http://localhost:{port}",  # another trusted name, but not this page's origin
        ):
            r = httpx.post(
                f"{base}/api/uploads",
                headers={"Origin": origin},
                files=upload_files(),
                data=UPLOAD_FIELDS,
            )
            assert r.status_code == 403 and "own pages" in r.json()["detail"], (origin, r.text)
        assert not stored_files(settings.custom_dir)
        r = httpx.post(
            f"{base}/api/uploads",
            headers={"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
            files=upload_files(),
            data=UPLOAD_FIELDS,
        )
        assert r.status_code == 201, r.text
        r = httpx.post(
            f"http://localhost:{port}/api/uploads",
            headers={"Origin": f"HTTP://LOCALHOST:{port}"},
            files=upload_files(seed=8),
            data=UPLOAD_FIELDS,
        )
        assert r.status_code == 201, r.text


def test_https_origin_rule_and_certificate_names(tmp_path, monkeypatch):
    """Over TLS the page's origin is https://; the certificate's names are trusted hosts."""
    monkeypatch.setattr(tls, "DNS_NAMES", ("localhost", "fer.lan"))
    cert, key = tmp_path / "own" / "cert.pem", tmp_path / "own" / "key.pem"
    tls.generate_certificate(cert, key, {"127.0.0.1", "10.9.8.7"})
    settings = make_settings(
        tmp_path, port=free_port(), https=True, tls_cert=cert, tls_key=key, trusted_hosts=[]
    )
    port = settings.port
    import ssl

    ctx = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    with live_server(settings, (cert, key)):
        for host in ("fer.lan", f"10.9.8.7:{port}", f"127.0.0.1:{port}"):
            r = httpx.get(f"{base}/api/health", headers={"Host": host}, verify=ctx)
            assert r.status_code == 200, (host, r.text)
        r = httpx.get(f"{base}/api/health", headers={"Host": "evil.example"}, verify=ctx)
        assert r.status_code == 400
        plain = httpx.post(
            f"{base}/api/uploads",
            headers={"Origin": f"http://127.0.0.1:{port}"},
            files=upload_files(),
            data=UPLOAD_FIELDS,
            verify=ctx,
        )
        assert plain.status_code == 403, plain.text
        same = httpx.post(
            f"{base}/api/uploads",
            headers={"Origin": f"https://127.0.0.1:{port}"},
            files=upload_files(),
            data=UPLOAD_FIELDS,
            verify=ctx,
        )
        assert same.status_code == 201, same.text


def test_trusted_host_allow_list(tmp_path, monkeypatch):
    """Loopback names, the bound host, LAN addresses on 0.0.0.0, configured names; `*` opts out."""
    monkeypatch.setattr(tls, "lan_ipv4_addresses", lambda: ["192.168.7.7"])

    def status(settings, host: str) -> int:
        with TestClient(create_app(settings)) as client:
            return client.get("/api/health", headers={"Host": host}).status_code

    wildcard = make_settings(tmp_path, host="0.0.0.0", trusted_hosts=["fer.example"])
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000", "192.168.7.7:8000", "fer.example"):
        assert status(wildcard, host) == 200, host
    for host in ("evil.example", "192.168.7.8", "testserver", "fer.example.evil", "", "a b"):
        assert status(wildcard, host) == 400, host
    bound = make_settings(tmp_path, host="10.1.1.1", trusted_hosts=[])
    assert status(bound, "10.1.1.1:8000") == 200
    assert status(bound, "192.168.7.7:8000") == 400  # LAN addresses only when bound to all
    anything = make_settings(tmp_path, trusted_hosts=["*"])
    assert status(anything, "evil.example") == 200


@pytest.mark.parametrize(
    "header, expected",
    [
        ("localhost", ("localhost", None)),
        ("LocalHost.:8000", ("localhost", 8000)),
        ("[::1]:8443", ("::1", 8443)),
        ("192.168.1.20:80", ("192.168.1.20", 80)),
        ("::1", None),  # IPv6 must be bracketed
        ("a.example:http", None),
        ("a.example:70000", None),
        ("a b", None),
        ("", None),
        ("a.example/x", None),
    ],
)
def test_host_header_parsing(header, expected):
    from backend.hosts import split_host

    assert split_host(header) == expected


def test_origin_parsing():
    from backend.hosts import parse_origin

    assert parse_origin("https://Fer.Example") == ("https", "fer.example", 443)
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    for bad in ("null", "file://", "http://a@b.example", "http://b.example/x", "ftp://b.example", ""):
        assert parse_origin(bad) is None, bad


def test_trusted_hosts_from_env_and_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_TRUSTED_HOSTS", "a.example, B.example")
    assert Settings().trusted_hosts == ["a.example", "b.example"]
    monkeypatch.delenv("FER_HYBRID_TRUSTED_HOSTS")
    with pytest.raises(ValueError):
        Settings(trusted_hosts=["http://a.example/"])

    import typer
    import uvicorn

    from backend import cli

    app = typer.Typer()
    app.command("serve")(cli.serve)
    app.command("other")(lambda: None)
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    # nothing listens here: whether port 8000 happens to be free on this machine is not the point
    monkeypatch.setattr(cli, "check_port", lambda host, port: None)
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--no-qr",
            "--trusted-host",
            "fer.example",
            "--trusted-host",
            "other.example",
            "--header-timeout",
            "3",
            "--keep-alive-timeout",
            "4",
            "--custom-dir",
            str(tmp_path / "custom"),
        ],
        env={"FER_HYBRID_CERT_DIR": str(tmp_path / "tls")},
    )
    assert result.exit_code == 0, result.output
    settings = seen["app"].state.settings
    assert settings.trusted_hosts == ["fer.example", "other.example"]
    assert settings.header_timeout_seconds == 3 and seen["timeout_keep_alive"] == 4
    help_text = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    for option in ("--trusted-host", "--header-timeout", "--keep-alive-timeout", "--body-timeout"):
        assert option in help_text


# ------------------------------------------------------------------ defect 3: header size
def test_huge_request_header_is_refused_and_server_stays_healthy(tmp_path):
    settings = make_settings(tmp_path, port=free_port())
    port = settings.port
    with live_server(settings):
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            try:
                sock.sendall(
                    b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                    + b"a" * (1024 * 1024)
                    + b"\r\n\r\n"
                )
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading and closed: that is a refusal too
            reply, _ = read_reply(sock, 10)
        elapsed = time.monotonic() - start
        assert elapsed < 10
        status = reply.split(b" ", 2)[1] if reply else b"closed"
        assert status in (b"431", b"400", b"closed"), reply[:300]
        if reply:
            assert b"header" in reply.lower()
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200


def test_header_count_and_size_limits_answer_431(tmp_path):
    settings = make_settings(tmp_path, max_header_bytes=8192, max_header_count=50)
    with TestClient(create_app(settings)) as client:
        many = {f"x-h{i}": "v" for i in range(60)}
        r = client.get("/api/health", headers=many)
        assert r.status_code == 431 and "headers" in r.json()["detail"], r.text
        r = client.get("/api/health", headers={"x-big": "a" * 9000})
        assert r.status_code == 431 and "8192" in r.json()["detail"], r.text
        ok = client.get("/api/health", headers={f"x-h{i}": "v" * 50 for i in range(30)})
        assert ok.status_code == 200


def test_default_header_limits_admit_a_normal_browser_request(tmp_path):
    settings = make_settings(tmp_path)
    assert settings.max_header_bytes >= 16 * 1024 and settings.max_header_count >= 50
    with TestClient(create_app(settings)) as client:
        cookie = "; ".join(f"c{i}={'x' * 60}" for i in range(60))  # ~4 KB of cookies
        r = client.get("/api/health", headers={"Cookie": cookie, "User-Agent": "Mozilla/5.0 " * 20})
        assert r.status_code == 200


# ------------------------------------------------------------------ defect 4: timeouts
def timeout_settings(tmp_path, **extra):
    values = dict(
        port=free_port(),
        header_timeout_seconds=1,
        keep_alive_timeout_seconds=1,
        body_timeout_seconds=1,
    )
    values.update(extra)
    return make_settings(tmp_path, **values)


def test_silent_connection_is_closed(tmp_path):
    settings = timeout_settings(tmp_path)
    with live_server(settings), socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
        reply, waited = read_reply(sock, 10)  # 10x the 1 s header timeout
        assert waited < 10, "a silent connection was kept open"
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> float | None:
    """Send `data` one byte every `every` seconds; the time the server closed, or None."""
    start = time.monotonic()
    for i in range(len(data)):
        readable, _, _ = select.select([sock], [], [], every)
        if readable:  # the server answered (408) or closed: we are done
            return time.monotonic() - start
        try:
            sock.sendall(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            return None
    return None


def test_slowloris_request_head_is_closed(tmp_path):
    settings = timeout_settings(tmp_path)
    head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 200
    with live_server(settings), socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
        closed_after = trickle(sock, head, every=0.3, limit=10)
        assert closed_after is not None, "a slowloris head was kept open for 10 s"
        reply, _ = read_reply(sock, 5)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
        if reply:
            assert b'"detail"' in reply


def test_slowloris_on_a_kept_alive_connection_is_closed(tmp_path):
    """After a first, normal request, the second request's head is trickled."""
    settings = timeout_settings(tmp_path)
    request = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with live_server(settings), socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
        sock.sendall(request)
        assert read_one_response(sock).startswith(b"HTTP/1.1 200")
        closed_after = trickle(sock, request[:-2] + b"X-Slow: " + b"a" * 200, every=0.3, limit=10)
        assert closed_after is not None, "a slowloris second request was kept open for 10 s"


def test_slow_upload_body_still_works_and_a_stalled_body_is_closed(tmp_path):
    """A body sent over several seconds (a phone) is fine; a body that stops is cut off."""
    settings = timeout_settings(tmp_path, body_timeout_seconds=2)
    body, ctype = multipart(UPLOAD_FIELDS, upload_files(seed=11))
    head = (
        f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{settings.port}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with live_server(settings):
        with socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
            sock.sendall(head)
            pieces = 10
            step = -(-len(body) // pieces)
            for i in range(pieces):  # 10 x 0.4 s = 4 s: twice the body timeout, 4x the head's
                time.sleep(0.4)
                sock.sendall(body[i * step : (i + 1) * step])
            reply = read_one_response(sock)
        assert reply.startswith(b"HTTP/1.1 201"), reply[:300]

        with socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
            sock.sendall(head + body[:100])  # then nothing more
            reply, waited = read_reply(sock, 20)
            assert waited < 20, "a stalled upload body kept the connection open"
        assert len(stored_files(settings.custom_dir)) == 1
        assert httpx.get(f"http://127.0.0.1:{settings.port}/api/health").status_code == 200


def test_idle_keep_alive_connection_is_closed(tmp_path):
    settings = timeout_settings(tmp_path)
    with live_server(settings), socket.create_connection(("127.0.0.1", settings.port), 10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_one_response(sock).startswith(b"HTTP/1.1 200")
        reply, waited = read_reply(sock, 10)
        assert reply == b"" and waited < 10


# ------------------------------------------------------------------ defect 8: redirects
def test_slash_redirects_do_not_reflect_the_host(tmp_path):
    settings = make_settings(tmp_path, trusted_hosts=["fer.example"])
    with TestClient(create_app(settings)) as client:
        for path in ("/static", "/models"):
            for host in ("localhost:8000", "fer.example"):
                r = client.get(path, headers={"Host": host}, follow_redirects=False)
                assert r.status_code == 307, (path, r.status_code)
                location = r.headers["location"]
                assert location == f"{path}/", location
                assert "localhost" not in location and "fer.example" not in location
            r = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
            assert r.status_code == 400 and "location" not in r.headers
        r = client.get("/api/health/?a=1", headers={"Host": "localhost"}, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/api/health?a=1"


def test_slash_redirects_over_a_real_server(tmp_path):
    settings = make_settings(tmp_path, port=free_port())
    with live_server(settings):
        r = httpx.get(f"http://localhost:{settings.port}/static", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/static/"
        r = httpx.get(
            f"http://127.0.0.1:{settings.port}/models",
            headers={"Host": "evil.example"},
            follow_redirects=False,
        )
        assert r.status_code == 400 and "location" not in r.headers
