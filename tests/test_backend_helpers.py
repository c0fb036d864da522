"""Shared helpers for the backend/API tests (`from test_backend_helpers import ...`), plus their own checks."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(size=(64, 64), fmt="PNG", seed=0, mode="RGB", exif: bytes | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def make_settings(tmp_path: Path, **overrides):
    from backend.settings import Settings

    web = tmp_path / "web"
    models = tmp_path / "models"
    web.mkdir(exist_ok=True)
    models.mkdir(exist_ok=True)
    values = dict(
        web_dir=web,
        models_dir=models,
        custom_dir=tmp_path / "custom",
        cert_dir=tmp_path / "tls",
        # TestClient sends `Host: testserver`; production trusts only our own names.
        trusted_hosts=["testserver"],
    )
    values.update(overrides)
    return Settings(**values)


def stored_files(custom: Path) -> list[Path]:
    """Every file under the custom dir except the SQLite database files and the disk reserve
    (backend/storage.py keeps it for deletions on a full disk)."""
    from backend.storage import RESERVE_NAME

    if not custom.exists():
        return []
    return sorted(
        p
        for p in custom.rglob("*")
        if p.is_file() and not p.name.startswith("uploads.sqlite") and p.name != RESERVE_NAME
    )


def db_rows(custom: Path, table: str = "uploads") -> list[tuple]:
    db = custom / "uploads.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


def post_upload(
    client,
    crop: bytes | None,
    label="happy",
    consent="true",
    filename="crop.png",
    original: bytes | None = None,
    source: str | None = "camera",
):
    files = {}
    if crop is not None:
        files["crop"] = (filename, crop, "image/png")
    if original is not None:
        files["original"] = ("photo.jpg", original, "image/jpeg")
    data = {}
    if label is not None:
        data["label"] = label
    if consent is not None:
        data["consent"] = consent
    if source is not None:
        data["source"] = source
    return client.post("/api/uploads", files=files or None, data=data)


def test_image_bytes_decode_in_every_format():
    for fmt in ("PNG", "JPEG", "WEBP"):
        with Image.open(io.BytesIO(image_bytes(size=(20, 10), fmt=fmt))) as img:
            assert img.format == fmt and img.size == (20, 10)
