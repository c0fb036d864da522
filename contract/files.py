"""Writing files atomically: a reader sees the old file or the whole new one, never half.

Both wings write files the other side (or a later run) reads while it may be running:
the manifest and the models the server serves, the upload store's crops that training
reads, a run folder's checkpoint that a killed GPU slice must not corrupt. All of them go
through `atomic_output`: write a temporary sibling, flush it to disk, `os.replace` it
over the target (atomic on POSIX within one folder), then sync the folder.

Temporary files are named `.tmp-<random>-<name>`: the real suffix stays last (Keras
refuses to save a model to a name not ending in `.keras`) and one prefix lets a cleanup
after a crash find them (`remove_stale_tmp`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary sibling of `path` (same folder, so `os.replace` is atomic)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces `path`, else it is removed.

    mode: permissions of the result (e.g. 0o600 for a private key); None keeps what the
    writer created (the umask's default).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write bytes (or UTF-8 text) to `path` atomically; returns `path`."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(path, mode=mode) as tmp:
        # O_EXCL: never write through a file (or link) someone else put at the temp name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None
                     else 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
    return Path(path)


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left anywhere under `folder`."""
    removed = []
    for p in Path(folder).rglob(f"{TMP_PREFIX}*"):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed


def sha256_of(fh, chunk: int = 2**20) -> str:
    """sha256 of a binary file object's whole content (read from its start, in chunks)."""
    digest = hashlib.sha256()
    fh.seek(0)
    while block := fh.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, read in chunks (model files and bundle parts can be large)."""
    with open(path, "rb") as fh:
        return sha256_of(fh)
