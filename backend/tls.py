"""Self-signed TLS certificate for `fer-hybrid serve --https`, and LAN address discovery.

Phones only grant camera access to secure contexts, so serving the page to a
phone on the LAN needs HTTPS. The certificate is created once under
`cert_dir` and reused; it is regenerated when it is unreadable, expires within
`RENEW_BEFORE`, or no longer covers localhost, 127.0.0.1 and every current LAN
IPv4 address. The key file is written with mode 0600.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from contract.files import atomic_write

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALID_FOR = timedelta(days=365)
RENEW_BEFORE = timedelta(days=7)
DNS_NAMES = ("localhost",)
LOOPBACK = "127.0.0.1"

# Private destinations for the UDP "connect" trick: connect() on a UDP socket only picks a
# route/source address, it sends nothing, so this works offline and never leaks traffic.
_PROBES = ("10.255.255.255", "192.168.255.255", "172.31.255.255", "192.0.2.1")


def _usable(ip: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local or addr.is_unspecified or addr.is_multicast)


def lan_ipv4_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, found without any network traffic."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    for probe in _PROBES:
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            found.add(sock.getsockname()[0])
    return sorted((ip for ip in found if _usable(ip)), key=lambda ip: ipaddress.IPv4Address(ip))


@dataclass(frozen=True)
class CertInfo:
    cert_path: Path
    key_path: Path
    created: bool  # True when this call (re)generated it


def _wanted_ips(lan_ips: list[str] | None) -> set[str]:
    ips = lan_ipv4_addresses() if lan_ips is None else list(lan_ips)
    return {LOOPBACK, *ips}


def certificate_covers(cert_path: Path, ips: set[str], dns: tuple[str, ...] = DNS_NAMES) -> bool:
    """True when the PEM cert parses, is valid beyond RENEW_BEFORE and names every ip/dns."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - datetime.now(timezone.utc) < RENEW_BEFORE:
        return False
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    have_dns = set(san.get_values_for_type(x509.DNSName))
    return ips <= have_ips and set(dns) <= have_dns


def generate_certificate(cert_path: Path, key_path: Path, ips: set[str]) -> None:
    """Write a fresh self-signed ECDSA P-256 server certificate for localhost + `ips`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "fer-hybrid local server"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fer-hybrid (self-signed)"),
        ]
    )
    now = datetime.now(timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.IPv4Address(ip)) for ip in sorted(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def ensure_certificate(cert_dir: Path, lan_ips: list[str] | None = None) -> CertInfo:
    """Reuse `cert_dir`/cert.pem + key.pem when still good, else (re)generate them."""
    cert_dir = Path(cert_dir).expanduser()
    cert_path, key_path = cert_dir / CERT_NAME, cert_dir / KEY_NAME
    ips = _wanted_ips(lan_ips)
    if key_path.is_file() and certificate_covers(cert_path, ips):
        with contextlib.suppress(OSError):
            if key_path.stat().st_mode & 0o077:
                os.chmod(key_path, 0o600)
        return CertInfo(cert_path, key_path, created=False)
    generate_certificate(cert_path, key_path, ips)
    return CertInfo(cert_path, key_path, created=True)
