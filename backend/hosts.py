"""Which Host names the server answers to, and the same-origin rule for uploads.

DNS rebinding: a page on `http://evil.example:8000` whose name is re-pointed at 127.0.0.1 (or a
LAN address) reaches this server with `Host: evil.example:8000` and, for a POST, a matching
`Origin`. Refusing every request whose Host is not one of *our* names stops it from reading the
API or posting uploads. Our names: localhost, 127.0.0.1, ::1, the bound host, this machine's LAN
addresses when bound to all interfaces, the names in the TLS certificate in use, and
`Settings.trusted_hosts` (`*.example.org` for subdomains, `*` to turn the check off).

Import-light: nothing here imports FastAPI at module level beyond Starlette's types.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .middleware import json_reply

WILDCARDS = {"0.0.0.0", "", "::"}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
WRONG_HOST = (
    "this server does not answer to that host name: open it with one of the addresses "
    "`fer-hybrid serve` prints, or add the name with --trusted-host"
)
NO_HOST = "the request has no valid Host header"
CROSS_SITE = "uploads are only accepted from this server's own pages"

_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


def _name(value: str) -> str | None:
    """A lower-case host name or IP address without brackets, or None when malformed."""
    value = value.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(value[1:-1]))
        except ValueError:
            return None
    if ":" in value:
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            return None
    value = value.rstrip(".")
    if not value or len(value) > 253 or not _NAME.match(value) or ".." in value:
        return None
    return value


def split_host(header: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[v6]:port` from a Host header -> (name, port), None when malformed."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[: end + 1], header[end + 1 :]
    else:
        if header.count(":") > 1:
            return None  # an IPv6 address must be bracketed in a Host header
        name, colon, port_text = header.partition(":")
        rest = colon + port_text
    port = None
    if rest:
        if not rest.startswith(":"):
            return None
        if rest[1:]:
            if not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536:
                return None
            port = int(rest[1:])
    clean = _name(name)
    return (clean, port) if clean else None


def normalize_trusted_host(entry: str) -> str | None:
    """A `trusted_hosts` entry: a name/address, `*.suffix` or `*`; None when it is not one."""
    entry = entry.strip().lower()
    if entry == "*":
        return entry
    if entry.startswith("*."):
        suffix = _name(entry[2:])
        return f"*.{suffix}" if suffix and ":" not in suffix else None
    return _name(entry)


def certificate_names(cert_path: Path) -> set[str]:
    """The DNS names and IP addresses in a PEM certificate's subjectAltName (empty if none)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return set()
    names = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    for dns in san.get_values_for_type(x509.DNSName):
        clean = normalize_trusted_host(dns)
        if clean and clean != "*":
            names.add(clean)
    return names


class TrustedHosts:
    """The allow-list for one server; worked out on first use (the certificate exists by then)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self._names: frozenset[str] | None = None

    def names(self) -> frozenset[str]:
        if self._names is None:
            s = self.settings
            names = set(LOOPBACK_NAMES)
            if s.host in WILDCARDS:
                from . import tls

                names.update(tls.lan_ipv4_addresses())
            elif _name(s.host):
                names.add(_name(s.host))
            cert = s.tls_cert if s.tls_cert is not None else Path(s.cert_dir) / "cert.pem"
            if s.https:
                names |= certificate_names(Path(cert).expanduser())
            names.update(s.trusted_hosts)
            self._names = frozenset(names)
        return self._names

    def allows(self, name: str) -> bool:
        names = self.names()
        if "*" in names or name in names:
            return True
        return any(n.startswith("*.") and name.endswith(n[1:]) for n in names)


def _request_host(scope: Scope) -> tuple[str, int | None] | None:
    """(name, port) from the request's one Host header; None when missing, repeated or malformed."""
    values = [v for k, v in scope.get("headers") or [] if k == b"host"]
    return split_host(values[0].decode("latin-1")) if len(values) == 1 else None


class TrustedHostMiddleware:
    """400 with a JSON `detail` for any request whose Host header is not one of our names."""

    def __init__(self, app: ASGIApp, trusted: TrustedHosts) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        parsed = _request_host(scope)
        if parsed is None:
            detail = NO_HOST
        elif not self.trusted.allows(parsed[0]):
            detail = WRONG_HOST
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await json_reply(send, 400, detail)


def _origin_of(scheme: str, name: str, port: int | None) -> tuple[str, str, int]:
    return scheme, name, port if port is not None else DEFAULT_PORTS.get(scheme, 0)


def request_origin(scope: Scope) -> tuple[str, str, int] | None:
    """(scheme, host, port) of this request as the browser sees it: the scope's scheme + Host.

    No proxy headers are honoured (`serve` runs Uvicorn with proxy_headers=False).
    """
    parsed = _request_host(scope)
    if parsed is None:
        return None
    return _origin_of(scope.get("scheme", "http"), *parsed)


def parse_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header; None for `null` or anything malformed."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    parsed = split_host(parts.netloc)
    return _origin_of(scheme, *parsed) if parsed else None


def check_same_origin(request) -> None:
    """Refuse cross-site form posts (CSRF): 403 unless Origin (when sent) is exactly this page's
    scheme, host and port, and Sec-Fetch-Site (when sent) says same-origin or none."""
    from fastapi import HTTPException

    origin = request.headers.get("origin")
    if origin is not None:
        mine = request_origin(request.scope)
        if mine is None or parse_origin(origin) != mine:
            raise HTTPException(403, CROSS_SITE)
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, CROSS_SITE)
