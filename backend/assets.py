"""Asset version (cache-busting), MIME types and the vendored TF.js folder for the page's files.

`asset_version` is a short hash of every file under web/ plus models/manifest.json,
recomputed only when a file's size/mtime changes. Pages put it into URLs
(`/static/js/main.js?v={{ asset_version }}`) and such URLs are cached as immutable.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import threading
from pathlib import Path

from contract.manifest import MANIFEST_NAME

#: The vendored TF.js release, written here only: web/scripts/vendor.sh fetches this version,
#: the page templates get `tfjs` (TFJS_URL) from routers/pages.py, env.js reads it from the
#: pages' <meta name="fer-tfjs">, and the service worker's precache list is derived from it.
TFJS_VERSION = "4.22.0"
TFJS_DIR = f"vendor/tfjs-{TFJS_VERSION}"  # relative to web/
TFJS_URL = f"/static/{TFJS_DIR}/"

# Deterministic types whatever /etc/mime.types says (StaticFiles uses `mimetypes`).
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".bin": "application/octet-stream",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".css": "text/css",
    ".html": "text/html",
    ".ico": "image/x-icon",
    ".map": "application/json",
}
for _ext, _type in MIME_TYPES.items():
    mimetypes.add_type(_type, _ext)


def _walk(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return out


class AssetVersion:
    """Lazily computed, cached short content hash of web/ + models/manifest.json."""

    def __init__(self, web_dir: Path, models_dir: Path, length: int = 12) -> None:
        self.web_dir = Path(web_dir)
        self.manifest = Path(models_dir) / MANIFEST_NAME
        self.length = length
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._value = ""

    def _files(self) -> list[Path]:
        files = _walk(self.web_dir)
        if self.manifest.is_file():
            files.append(self.manifest)
        return files

    def get(self) -> str:
        files = self._files()
        signature = []
        for path in files:
            try:
                st = path.stat()
            except OSError:
                continue
            signature.append((str(path), st.st_size, st.st_mtime_ns))
        sig = tuple(signature)
        with self._lock:
            if sig != self._signature:
                digest = hashlib.sha256()
                for path_str, _size, _mtime in sig:
                    path = Path(path_str)
                    try:
                        data = path.read_bytes()
                    except OSError:
                        continue
                    digest.update(path_str.encode("utf-8", "surrogateescape") + b"\0")
                    digest.update(hashlib.sha256(data).digest())
                if not sig:
                    from importlib.metadata import PackageNotFoundError, version

                    try:
                        digest.update(version("fer-hybrid").encode())
                    except PackageNotFoundError:
                        digest.update(b"dev")
                self._value = digest.hexdigest()[: self.length]
                self._signature = sig
            return self._value
