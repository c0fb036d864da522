"""Server configuration: one pydantic-settings object, read from `FER_HYBRID_*` env vars.

Every field can be set in the environment with the `FER_HYBRID_` prefix, e.g.
`FER_HYBRID_PORT=8443`, `FER_HYBRID_CUSTOM_DIR=/srv/fer/custom`, `FER_HYBRID_HTTPS=1`.
The `fer-hybrid serve` options override the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contract import REPO_ROOT, default_custom_dir


class Settings(BaseSettings):
    """Everything the server needs; defaults suit a checkout of the repository."""

    model_config = SettingsConfigDict(env_prefix="FER_HYBRID_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes it on the LAN.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    web_dir: Path = Field(
        REPO_ROOT / "web", description="The page: index.html, upload.html, sw.js, js/, vendor/."
    )
    models_dir: Path = Field(
        REPO_ROOT / "models", description="Exported TF.js models + manifest.json."
    )
    custom_dir: Path = Field(
        default_factory=default_custom_dir,
        description="User-contributed dataset: <label>/<sha256>.png, originals/, uploads.sqlite.",
    )
    max_upload_bytes: int = Field(
        5 * 1024 * 1024, gt=0, description="Largest accepted image file (bytes)."
    )
    max_image_side: int = Field(4096, gt=0, description="Largest accepted width/height (pixels).")
    min_image_side: int = Field(16, gt=0, description="Smallest accepted width/height (pixels).")
    max_crop_side: int = Field(
        512,
        gt=0,
        description="Largest accepted face-crop width/height (pixels); the page sends 128x128.",
    )
    max_original_pixels: int = Field(
        4096 * 3072,
        gt=0,
        description="Most pixels accepted in the optional original photo (a 12 MP phone photo fits).",
    )
    decode_memory_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="Memory all concurrent uploads may use to decode images (estimated from headers).",
    )
    decode_wait_seconds: float = Field(
        10.0,
        ge=0,
        description="How long an upload waits for decode memory before answering 503.",
    )
    uploads_per_minute: float = Field(
        30,
        ge=0,
        description="POST /api/uploads allowed per client address per minute (token bucket; "
        "0 = no limit). Over it: 429 with Retry-After.",
    )
    upload_burst: int = Field(
        30,
        ge=1,
        description="Uploads a client may send at once before the per-minute rate applies.",
    )
    custom_max_bytes: int = Field(
        2 * 1024**3,
        gt=0,
        description="Storage quota: bytes of crops + originals the upload store may hold "
        "(507 beyond it).",
    )
    custom_max_files: int = Field(
        100_000,
        gt=0,
        description="Storage quota: crop + original files the upload store may hold (507 beyond it).",
    )
    https: bool = Field(False, description="Serve over TLS (phones need it for the camera).")
    tls_cert: Path | None = Field(
        None, description="PEM certificate to use instead of the generated one."
    )
    tls_key: Path | None = Field(None, description="PEM private key matching tls_cert.")
    cert_dir: Path = Field(
        REPO_ROOT / "data" / "tls",
        description="Where the generated self-signed certificate is kept.",
    )

    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the server answers to besides localhost, 127.0.0.1, [::1], the bound "
        "host, the LAN addresses (when bound to 0.0.0.0) and the TLS certificate's names. "
        "Comma-separated in FER_HYBRID_TRUSTED_HOSTS; `*.example.org` covers subdomains; `*` "
        "alone turns the Host check off.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request line and headers must arrive in full within this many seconds "
        "(from the connection, or from a kept-alive request's first byte); else the connection "
        "is closed.",
    )
    keep_alive_timeout_seconds: float = Field(
        5.0, gt=0, description="Idle time after a response before a kept-alive connection is closed."
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest silence while a request body is being received; the body itself may "
        "take as long as it needs.",
    )
    max_request_head_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Request line + headers larger than this are refused (431) before they are "
        "buffered any further.",
    )
    max_header_bytes: int = Field(
        32 * 1024, gt=0, description="Largest total size of the request headers the app accepts (431)."
    )
    max_header_count: int = Field(
        100, gt=0, description="Most request headers the app accepts (431)."
    )

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return value

    @field_validator("trusted_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        from .hosts import normalize_trusted_host

        out = []
        for entry in value:
            if not entry.strip():
                continue
            name = normalize_trusted_host(entry)
            if name is None:
                raise ValueError(
                    f"{entry.strip()!r} is not a host name: give names or addresses like "
                    "fer.example.org, 192.168.1.20, [fe80::1], *.example.org or *"
                )
            out.append(name)
        return out

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_image_side > self.max_image_side:
            raise ValueError("min_image_side must not exceed max_image_side")
        if self.min_image_side > self.max_crop_side:
            raise ValueError("min_image_side must not exceed max_crop_side")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        return self

    @property
    def max_request_bytes(self) -> int:
        """Whole multipart body limit: a crop + an original + a little form overhead."""
        return 2 * self.max_upload_bytes + 64 * 1024


@lru_cache
def default_settings() -> Settings:
    """The settings read from the environment once (used when no explicit object is given)."""
    return Settings()
