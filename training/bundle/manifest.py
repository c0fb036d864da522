"""The bundle manifest: file names, the JSON schema, and reading it back with checks.

    fer-bundle-<id>.json       the manifest (travels in the first device call)
    fer-bundle-<id>.part01..   the stream (a tar, optionally lzma), cut into parts

`<id>` is the start of the stream's sha256, so two bundles never share a name and parts
from several calls can be copied into one folder. The manifest records every part (size,
sha256, its call) and, per run, every file the stream holds (size, sha256) and how its
best.keras was stored, so `unbundle` can say exactly what is missing or damaged.
Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath

from training.core.errors import FerError

FORMAT = "fer-hybrid-bundle"
VERSION = 1
PREFIX = "fer-bundle-"
MANIFEST_GLOB = f"{PREFIX}*.json"
COMPRESSIONS = ("lzma", "none")
_PART_NAME = re.compile(rf"{PREFIX}[0-9a-f]+\.part\d+")


def manifest_name(bundle_id: str) -> str:
    return f"{PREFIX}{bundle_id}.json"


def part_names(bundle_id: str, count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"{PREFIX}{bundle_id}.part{i:0{width}d}" for i in range(1, count + 1)]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_relative(path: str) -> str:
    """A manifest path that stays inside its folder; FerError for '..', '/x', '' and such."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path or str(p) != path:
        raise FerError(f"bundle manifest names an unsafe path {path!r}; it is damaged or not "
                       "ours")
    return path


def find_manifests(folders: list[Path]) -> list[Path]:
    """Every bundle manifest in the folders (one bundle may have come back in several)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise FerError(f"{folder} is not a folder; pass the folders the device calls "
                           "copied the bundle files into")
        for path in sorted(folder.glob(MANIFEST_GLOB)):
            found.setdefault(path.name, path)
    if not found:
        raise FerError(f"no bundle manifest ({MANIFEST_GLOB}) in {', '.join(map(str, folders))}"
                       "; it travels in the first device call: copy that call's files back")
    return list(found.values())


def read_manifest(path: Path) -> dict:
    """The manifest at `path`, checked for what unbundling relies on; FerError otherwise."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FerError(f"cannot read the bundle manifest {path} ({err}); copy it back again "
                       "from the first device call") from err
    try:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        if manifest.get("version") != VERSION:
            raise ValueError(f"version {manifest.get('version')!r}; this fer-hybrid reads "
                             f"version {VERSION}")
        if manifest["compression"] not in COMPRESSIONS:
            raise ValueError(f"unknown compression {manifest['compression']!r}")
        for part in manifest["parts"]:
            if not _PART_NAME.fullmatch(part["name"]):
                raise ValueError(f"bad part name {part['name']!r}")
            int(part["bytes"]), str(part["sha256"]), int(part["call"])
        names = [run["name"] for run in manifest["runs"]]
        if len(set(names)) != len(names):
            raise ValueError("a run appears twice")
        for run in manifest["runs"]:
            if "/" in safe_relative(run["name"]):
                raise ValueError(f"run name {run['name']!r} is not a folder name")
            for entry in run["files"]:
                safe_relative(entry["path"])
                int(entry["bytes"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as err:
        raise FerError(f"bundle manifest {path} is not valid ({err!r}); copy it back again "
                       "from the first device call") from err
    return manifest
