"""`fer-hybrid serve`: run the web app with Uvicorn (optionally over HTTPS for phones).

Kept import-light: FastAPI/Uvicorn/cryptography are imported inside `serve`, and nothing
here (or in backend/) imports TensorFlow.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import sys
from pathlib import Path

import typer

WILDCARDS = {"0.0.0.0", "", "::"}
PHONE_HINT = (
    "phones only allow the camera on HTTPS (or localhost): restart with --https, "
    "open the https:// URL on the phone and accept the self-signed certificate warning once"
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_urls(host: str, port: int, https: bool, lan_ips: list[str]) -> list[str]:
    """URLs to open: localhost first, then every LAN address when bound to all interfaces."""
    scheme = "https" if https else "http"
    if host in WILDCARDS:
        hosts = ["localhost", *lan_ips]
    elif _is_loopback(host):
        hosts = ["localhost"] if host in ("127.0.0.1", "localhost") else [host]
    else:
        hosts = [host]
    out = []
    for h in hosts:
        shown = f"[{h}]" if ":" in h else h
        out.append(f"{scheme}://{shown}:{port}/")
    return out


def phone_url(urls: list[str]) -> str | None:
    """The first URL a phone on the LAN can reach (not localhost/loopback)."""
    for url in urls:
        host = url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
        if not _is_loopback(host):
            return url
    return None


def qr_text(url: str) -> str:
    """`url` as a QR code drawn with text characters (for the terminal)."""
    import io

    import qrcode

    qr = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(url)
    qr.make(fit=True)
    buf = io.StringIO()
    qr.print_ascii(out=buf, invert=True)
    return buf.getvalue()


def banner(
    urls: list[str], *, https: bool, host: str, cert: Path | None = None, qr: bool = True
) -> str:
    """The text printed when the server starts."""
    lines = ["fer-hybrid is serving the web app. Open:"]
    lines += [f"  {url}" for url in urls]
    lines.append("  (/upload to contribute photos, /docs for the API)")
    lan = phone_url(urls)
    if lan and qr:
        lines.append(f"Scan with the phone (same Wi-Fi) to open {lan}:")
        lines.append(qr_text(lan))
    if https and cert is not None:
        lines.append(f"TLS certificate: {cert} (self-signed unless you passed --cert/--key)")
    if not https and not _is_loopback(host):
        lines.append(f"warning: {PHONE_HINT}")
    elif not https:
        lines.append(
            "note: serving on this machine only; use --host 0.0.0.0 --https to reach it from a phone"
        )
    return "\n".join(lines)


def build_settings(**overrides):
    """Settings from FER_HYBRID_* env vars with the CLI's explicit options on top."""
    from pydantic import ValidationError

    from .settings import Settings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as err:
        msgs = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise typer.BadParameter(msgs) from err


def resolve_tls(settings, lan_ips: list[str] | None = None) -> tuple[Path, Path] | None:
    """(cert, key) to give Uvicorn: the user's pair, or the generated self-signed one."""
    if not settings.https:
        if settings.tls_cert is not None:
            raise typer.BadParameter("--cert/--key need --https")
        return None
    if settings.tls_cert is not None:
        cert, key = Path(settings.tls_cert).expanduser(), Path(settings.tls_key).expanduser()
        for what, path in (("certificate", cert), ("key", key)):
            if not path.is_file():
                raise typer.BadParameter(f"TLS {what} file not found: {path}")
        return cert, key
    from .tls import ensure_certificate

    info = ensure_certificate(settings.cert_dir, lan_ips)
    if info.created:
        typer.echo(f"created a self-signed certificate in {info.cert_path.parent}")
    return info.cert_path, info.key_path


def check_tls_pair(cert: Path, key: Path) -> None:
    """Load the pair the way the server will, so a bad one is an error line, not a traceback
    after the banner."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError, ValueError) as err:
        raise typer.BadParameter(
            f"cannot use {cert} with {key} for TLS: they must be a PEM certificate and its "
            "matching private key"
        ) from err


def check_port(host: str, port: int) -> None:
    """Bind the address once (as Uvicorn will, SO_REUSEADDR) so a port in use is an error line
    before the banner. Uvicorn binds again right after: a port taken in between still fails
    there."""
    if port == 0:
        return  # any free port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise typer.BadParameter(
                f"cannot listen on {host}:{port}: {err.strerror or err}; another server may be "
                "using it (choose another port with --port)"
            ) from err


def check_folders(settings) -> list[str]:
    """The page's and the models' folders: missing ones are errors, a models folder without a
    manifest a warning (the page then says that models are missing). Returns the warnings."""
    from contract.manifest import MANIFEST_NAME

    for option, folder in (("--web-dir", settings.web_dir), ("--models-dir", settings.models_dir)):
        if not Path(folder).is_dir():
            raise typer.BadParameter(f"{option} {folder} is not a folder")
    if not (Path(settings.models_dir) / MANIFEST_NAME).is_file():
        return [
            f"no {MANIFEST_NAME} in {settings.models_dir}: the page will say that the models "
            "are missing (export them with `fer-hybrid export`, or pass --models-dir)"
        ]
    return []


def uvicorn_options(settings, tls: tuple[Path, Path] | None) -> dict:
    """The keyword arguments for `uvicorn.run`/`uvicorn.Config`: one home for `serve` and the tests.

    `http` is Uvicorn's httptools protocol with a request-head size limit, a head timeout and a
    body idle timeout (backend/transport.py); `timeout_keep_alive` closes idle kept-alive
    connections.
    """
    from .transport import guarded_protocol

    return dict(
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        proxy_headers=False,
        server_header=False,
        log_level="info",
    )


def serve(
    host: str | None = typer.Option(
        None,
        "--host",
        help="Interface to bind (default 127.0.0.1; 0.0.0.0 = reachable from the LAN).",
    ),
    port: int | None = typer.Option(None, "--port", "-p", help="TCP port (default 8000)."),
    https: bool | None = typer.Option(
        None,
        "--https/--http",
        help="Serve over TLS with a self-signed certificate (created once, reused). "
        "Phones need this for the camera.",
    ),
    cert: Path | None = typer.Option(None, "--cert", help="Your own PEM certificate (with --key)."),
    key: Path | None = typer.Option(None, "--key", help="Private key for --cert (PEM)."),
    models_dir: Path | None = typer.Option(None, "--models-dir", help="Folder with manifest.json."),
    custom_dir: Path | None = typer.Option(
        None, "--custom-dir", help="Where contributed photos are stored (default data/custom)."
    ),
    web_dir: Path | None = typer.Option(
        None, "--web-dir", help="Folder with the page (default web/)."
    ),
    trusted_host: list[str] | None = typer.Option(
        None,
        "--trusted-host",
        help="Another host name the server answers to (repeatable; env FER_HYBRID_TRUSTED_HOSTS, "
        "comma-separated). Always trusted: localhost, 127.0.0.1, [::1], --host, the LAN "
        "addresses when bound to 0.0.0.0 and the TLS certificate's names; requests for any "
        "other Host get 400 (DNS-rebinding defence). '*.example.org' covers subdomains, '*' "
        "turns the check off.",
    ),
    header_timeout: float | None = typer.Option(
        None,
        "--header-timeout",
        help="Seconds a client has to send a request's line and headers (default 10); silent "
        "and slow-header connections are closed.",
    ),
    keep_alive_timeout: float | None = typer.Option(
        None,
        "--keep-alive-timeout",
        help="Seconds an idle kept-alive connection stays open after a response (default 5).",
    ),
    body_timeout: float | None = typer.Option(
        None,
        "--body-timeout",
        help="Longest silence, in seconds, while an upload body is arriving (default 60); slow "
        "bodies are fine as long as bytes keep coming.",
    ),
    qr: bool = typer.Option(True, "--qr/--no-qr", help="Print a QR code for the phone URL."),
) -> None:
    """Serve the mobile web app and the exported models (all inference runs on the phone).

    Request heads are limited to FER_HYBRID_MAX_REQUEST_HEAD_BYTES (64 KiB, else 431 and the
    connection is closed); the app takes at most FER_HYBRID_MAX_HEADER_COUNT headers (100) of
    FER_HYBRID_MAX_HEADER_BYTES in all (32 KiB).
    """
    settings = build_settings(
        host=host,
        port=port,
        https=https,
        tls_cert=cert,
        tls_key=key,
        models_dir=models_dir,
        custom_dir=custom_dir,
        web_dir=web_dir,
        trusted_hosts=trusted_host or None,
        header_timeout_seconds=header_timeout,
        keep_alive_timeout_seconds=keep_alive_timeout,
        body_timeout_seconds=body_timeout,
    )
    from .tls import lan_ipv4_addresses

    # Everything that would stop the server is checked before the banner: one error line.
    warnings = check_folders(settings)
    lan_ips = lan_ipv4_addresses() if settings.host in WILDCARDS else []
    tls = resolve_tls(settings, lan_ips)
    if tls is not None:
        check_tls_pair(*tls)
    check_port(settings.host, settings.port)

    import uvicorn

    from .app import create_app

    app = create_app(settings)
    urls = server_urls(settings.host, settings.port, settings.https, lan_ips)
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u2588\u2580\u2584".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        qr = False  # the terminal cannot draw the block characters
    for warning in warnings:
        typer.echo(f"warning: {warning}")
    typer.echo(
        banner(urls, https=settings.https, host=settings.host, cert=tls[0] if tls else None, qr=qr)
    )
    sys.stdout.flush()
    uvicorn.run(app, **uvicorn_options(settings, tls))
