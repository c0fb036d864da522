"""Settings from the environment, the `serve` helpers (URLs, QR, TLS) and import hygiene."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from backend import cli, tls
from backend.settings import REPO_ROOT, Settings


def test_defaults(monkeypatch):
    for key in list(os.environ):
        if key.startswith("FER_HYBRID_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert (s.host, s.port, s.https) == ("127.0.0.1", 8000, False)
    assert s.custom_dir == REPO_ROOT / "data" / "custom"
    assert s.web_dir == REPO_ROOT / "web" and s.models_dir == REPO_ROOT / "models"
    assert s.max_upload_bytes == 5 * 1024 * 1024 and s.max_image_side == 4096


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_HYBRID_PORT", "8443")
    monkeypatch.setenv("FER_HYBRID_HOST", "0.0.0.0")
    monkeypatch.setenv("FER_HYBRID_HTTPS", "1")
    monkeypatch.setenv("FER_HYBRID_CUSTOM_DIR", str(tmp_path / "custom"))
    monkeypatch.setenv("FER_HYBRID_MAX_UPLOAD_BYTES", "1234")
    s = Settings()
    assert (s.port, s.host, s.https, s.max_upload_bytes) == (8443, "0.0.0.0", True, 1234)
    assert s.custom_dir == tmp_path / "custom"
    # CLI options win over the environment; None means "not given"
    s2 = cli.build_settings(port=9000, host=None)
    assert s2.port == 9000 and s2.host == "0.0.0.0"


def test_bad_settings_are_clear_errors(monkeypatch):
    monkeypatch.setenv("FER_HYBRID_PORT", "not-a-port")
    with pytest.raises(typer.BadParameter, match="port"):
        cli.build_settings()
    monkeypatch.delenv("FER_HYBRID_PORT")
    with pytest.raises(typer.BadParameter, match="tls_cert and tls_key"):
        cli.build_settings(tls_cert=Path("c.pem"))


def test_server_urls():
    assert cli.server_urls("127.0.0.1", 8000, False, []) == ["http://localhost:8000/"]
    assert cli.server_urls("0.0.0.0", 8443, True, ["192.168.1.20", "10.0.0.5"]) == [
        "https://localhost:8443/",
        "https://192.168.1.20:8443/",
        "https://10.0.0.5:8443/",
    ]
    assert cli.server_urls("192.168.1.20", 80, False, []) == ["http://192.168.1.20:80/"]
    assert cli.phone_url(["https://localhost:1/", "https://10.0.0.5:1/"]) == "https://10.0.0.5:1/"
    assert cli.phone_url(["http://localhost:1/"]) is None


def test_banner_lists_urls_qr_and_warns_about_https():
    urls = cli.server_urls("0.0.0.0", 8000, False, ["192.168.1.20"])
    text = cli.banner(urls, https=False, host="0.0.0.0")
    assert "http://localhost:8000/" in text and "http://192.168.1.20:8000/" in text
    assert "--https" in text and "warning" in text
    assert "\u2588" in text  # the QR code, drawn with block characters
    secure = cli.banner(
        cli.server_urls("0.0.0.0", 8443, True, ["10.1.2.3"]),
        https=True,
        host="0.0.0.0",
        cert=Path("/x/cert.pem"),
    )
    assert "warning" not in secure and "/x/cert.pem" in secure
    local = cli.banner(["http://localhost:8000/"], https=False, host="127.0.0.1")
    assert "\u2588" not in local  # no LAN URL, no QR


def test_lan_addresses_are_plain_ipv4():
    import ipaddress

    for ip in tls.lan_ipv4_addresses():
        addr = ipaddress.IPv4Address(ip)
        assert not addr.is_loopback and not addr.is_link_local


def test_certificate_is_created_once_and_regenerated_when_needed(tmp_path, monkeypatch):
    from cryptography import x509

    info = tls.ensure_certificate(tmp_path / "tls", ["192.168.1.20"])
    assert info.created
    assert stat.S_IMODE(info.key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(info.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "192.168.1.20",
    }
    before = info.cert_path.read_bytes()

    again = tls.ensure_certificate(tmp_path / "tls", ["192.168.1.20"])
    assert not again.created and again.cert_path.read_bytes() == before  # reused

    moved = tls.ensure_certificate(tmp_path / "tls", ["10.0.0.7"])  # new LAN address
    assert moved.created and moved.cert_path.read_bytes() != before

    monkeypatch.setattr(tls, "RENEW_BEFORE", timedelta(days=400))  # "about to expire"
    assert tls.ensure_certificate(tmp_path / "tls", ["10.0.0.7"]).created

    info.cert_path.write_text("garbage")
    assert tls.ensure_certificate(tmp_path / "tls", ["10.0.0.7"]).created


def test_resolve_tls(tmp_path):
    plain = Settings(cert_dir=tmp_path / "tls")
    assert cli.resolve_tls(plain, []) is None
    generated = cli.resolve_tls(Settings(https=True, cert_dir=tmp_path / "tls"), ["10.0.0.7"])
    assert generated == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    own = Settings(https=True, tls_cert=generated[0], tls_key=generated[1], cert_dir=tmp_path / "x")
    assert cli.resolve_tls(own, []) == generated and not (tmp_path / "x").exists()
    missing = Settings(https=True, tls_cert=tmp_path / "no.pem", tls_key=tmp_path / "no.key")
    with pytest.raises(typer.BadParameter, match="not found"):
        cli.resolve_tls(missing, [])
    with pytest.raises(typer.BadParameter, match="--https"):
        cli.resolve_tls(Settings(tls_cert=generated[0], tls_key=generated[1]), [])


def test_serve_command_help_and_options(monkeypatch, tmp_path):
    app = typer.Typer()
    app.command("serve")(cli.serve)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--https",
        "--cert",
        "--key",
        "--models-dir",
        "--custom-dir",
    ):
        assert option in result.output

    seen = {}
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    # nothing listens here: whether port 8765 happens to be free on this machine is not the point
    monkeypatch.setattr(cli, "check_port", lambda host, port: None)
    monkeypatch.setattr(tls, "lan_ipv4_addresses", lambda: ["192.168.7.7"])
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "8765",
            "--https",
            "--custom-dir",
            str(tmp_path / "custom"),
            "--models-dir",
            str(tmp_path),
        ],
        env={"FER_HYBRID_CERT_DIR": str(tmp_path / "tls")},
    )
    assert result.exit_code == 0, result.output
    assert (
        "https://localhost:8765/" in result.output and "https://192.168.7.7:8765/" in result.output
    )
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8765
    assert seen["ssl_certfile"] == str(tmp_path / "tls" / "cert.pem")
    assert seen["app"].state.settings.custom_dir == tmp_path / "custom"


def test_backend_never_imports_tensorflow(repo_root, tmp_path):
    code = (
        "import sys\n"
        "import backend.cli, backend.app\n"
        "from backend.settings import Settings\n"
        "backend.app.create_app(Settings(custom_dir=sys.argv[1]))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflowjs')]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "custom")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
