"""Which files under web/ and models/ are the product, and so served at /static and /models.

Both folders hold more than the page needs: web/ has the Jinja templates (rendered at /, /upload,
/docs, /redoc and /sw.js, never as raw files), its README and the vendoring script; models/ has
the model card, report folders (bench/, robustness/, calibration/, a variant's calibration/) and
their figures. Those are for the repository's readers, not for browsers.

* `/static/<path>`: files with a suffix the page loads (scripts, styles, wasm, icons, the web
  manifest, the detector's json/bin), outside `scripts/`, `review/` and dot-folders, except `sw.js` at the
  top (a template);
* `/models/<path>`: `manifest.json`, each member's `model.json` and the weight shards its
  `weightsManifest` names, and the same for every variant the top manifest lists (its manifest,
  members and shards). Read from the files themselves, and read again when one of them changes.
"""

from __future__ import annotations

import json
import posixpath
import threading
from pathlib import Path

from contract.manifest import MANIFEST_NAME

#: What the pages load from /static (checked against the page: tests/test_api_served_files.py).
WEB_SUFFIXES = frozenset(
    {".js", ".mjs", ".css", ".wasm", ".svg", ".webmanifest", ".json", ".bin", ".png", ".ico"}
)
#: Templates under web/ whose suffix would otherwise let them through (rendered by routes).
WEB_TEMPLATES = frozenset({"sw.js"})
#: Folders under web/ that are tooling, not page: the vendoring scripts, and the curator's
#: review page, which only `fer-hybrid data review` serves (backend/review_app.py).
WEB_TOOLING = frozenset({"scripts", "review"})


def web_file_served(rel: str) -> bool:
    """True when /static/`rel` (a path relative to web/, '/'-separated) is part of the page."""
    parts = rel.split("/")
    if any(not p or p.startswith(".") or p == ".." for p in parts):
        return False
    if parts[0] in WEB_TOOLING or rel in WEB_TEMPLATES:
        return False
    return posixpath.splitext(parts[-1])[1] in WEB_SUFFIXES


def _inside(base: str, path: object) -> str | None:
    """`path` relative to the folder `base`, normalised; None when it is no plain relative path."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return None
    joined = posixpath.normpath(posixpath.join(base, path))
    return None if joined.startswith("..") or joined == "." else joined


class ModelFiles:
    """The set of paths under models/ the page fetches, cached until one of its sources changes."""

    def __init__(self, models_dir: Path) -> None:
        self.root = Path(models_dir)
        self._lock = threading.Lock()
        self._sources: dict[str, tuple[int, int] | None] = {}
        self._served: frozenset[str] = frozenset()

    def _stat(self, rel: str) -> tuple[int, int] | None:
        try:
            st = (self.root / rel).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _json(self, rel: str, sources: dict) -> dict:
        sources[rel] = self._stat(rel)
        try:
            data = json.loads((self.root / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _collect(self) -> tuple[frozenset[str], dict]:
        served: set[str] = set()
        sources: dict[str, tuple[int, int] | None] = {}

        def manifest(rel: str) -> dict:
            data = self._json(rel, sources)
            if data:
                served.add(rel)
            folder = posixpath.dirname(rel)
            for member in data.get("members") or []:
                model = _inside(folder, member.get("path") if isinstance(member, dict) else None)
                if model is None:
                    continue
                served.add(model)
                for group in self._json(model, sources).get("weightsManifest") or []:
                    for shard in (group.get("paths") if isinstance(group, dict) else None) or []:
                        rel_shard = _inside(posixpath.dirname(model), shard)
                        if rel_shard is not None:
                            served.add(rel_shard)
            return data

        top = manifest(MANIFEST_NAME)
        for variant in top.get("variants") or []:
            rel = _inside("", variant.get("manifest") if isinstance(variant, dict) else None)
            if rel is not None and rel != MANIFEST_NAME:
                manifest(rel)
        return frozenset(served), sources

    def served(self) -> frozenset[str]:
        with self._lock:
            if not self._sources or any(
                self._stat(rel) != seen for rel, seen in self._sources.items()
            ):
                self._served, self._sources = self._collect()
            return self._served

    def __call__(self, rel: str) -> bool:
        return rel in self.served()
