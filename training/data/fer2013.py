"""FER2013 canonical Kaggle CSV (``emotion,pixels,Usage``; plain or .gz) with an on-disk cache.

Parsing is done in bulk: the rows are split once, every ``pixels`` field is
joined into one buffer and converted by numpy's C parser, so the 35,887-row
file parses in seconds instead of minutes. The parsed uint8 arrays are cached
in ``$FER_HYBRID_CACHE`` (default ``~/.cache/fer-hybrid``) under a key made of
the file's name, size and mtime, written atomically (tmp file + os.replace).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import SPLIT_TITLES
from contract.files import atomic_output
from training.core.errors import FerError

log = logging.getLogger(__name__)

# The CSV's Usage column, in the order its values are coded in FerArrays.usage.
USAGES: tuple[str, ...] = tuple(SPLIT_TITLES[k] for k in ("train", "val", "test"))
SPLIT_OF_USAGE = {usage: split for split, usage in SPLIT_TITLES.items()}
HEADER = b"emotion,pixels,Usage"
SIZE = 48  # the Kaggle CSV's images are 48x48, whatever size the models take
PIXELS = SIZE * SIZE
CACHE_VERSION = 1


@dataclass
class FerArrays:
    """All FER2013 images: x uint8 (N,48,48), y int64 (N,), usage uint8 (N,) index into USAGES."""

    x: np.ndarray
    y: np.ndarray
    usage: np.ndarray

    def split(self, usage: str) -> tuple[np.ndarray, np.ndarray]:
        keep = self.usage == USAGES.index(usage)
        return self.x[keep], self.y[keep]


def cache_dir() -> Path:
    env = os.environ.get("FER_HYBRID_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fer-hybrid"


def _cache_path(path: Path) -> Path:
    st = path.stat()
    key = f"v{CACHE_VERSION}|{path.resolve()}|{path.name}|{st.st_size}|{st.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / f"fer2013-{digest}.npz"


def _read_bytes(path: Path, advice: str = "re-download the FER2013 CSV") -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its magic number, not its name)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise FerError(f"cannot read {path} ({err}); {advice}") from None


def parse_csv_bytes(
    raw: bytes, name: str = "fer2013.csv", *, progress: bool | None = None
) -> FerArrays:
    """Parse the canonical CSV content. FerError names the first bad row (1-based data row)."""
    from tqdm import tqdm

    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    raw = raw.replace(b"\r\n", b"\n")
    lines = raw.split(b"\n")
    header = lines[0].strip()
    if header.replace(b" ", b"") != HEADER:
        shown = header[:60].decode("utf-8", "replace")
        raise FerError(
            f"{name}: header is {shown!r}, expected 'emotion,pixels,Usage'; "
            "pass the canonical Kaggle fer2013.csv (not the train.csv/test.csv or image variants)"
        )
    body = lines[1:]
    while body and not body[-1].strip():
        body.pop()
    n = len(body)
    labels = np.empty(n, np.int64)
    usage = np.empty(n, np.uint8)
    pixels: list[bytes] = []
    usage_index = {u.encode(): i for i, u in enumerate(USAGES)}
    for i, line in enumerate(
        tqdm(body, desc=f"parse {name}", unit="row", disable=_quiet(progress), mininterval=0.5)
    ):
        parts = line.split(b",")
        if len(parts) != 3:
            raise FerError(
                f"{name}: data row {i + 1} has {len(parts)} fields, expected 3 "
                "(emotion,pixels,Usage); the file is damaged - re-download it"
            )
        emo, pix, use = parts
        try:
            labels[i] = int(emo)
        except ValueError:
            raise FerError(
                f"{name}: data row {i + 1} has emotion {emo[:20]!r}, expected 0-6"
            ) from None
        u = usage_index.get(use.strip())
        if u is None:
            raise FerError(
                f"{name}: data row {i + 1} has Usage {use[:20].decode(errors='replace')!r}, "
                f"expected one of {', '.join(USAGES)}"
            )
        usage[i] = u
        pix = pix.strip()
        count = pix.count(b" ") + 1 if pix else 0
        if count != PIXELS or b"  " in pix:
            count = len(pix.split())
            if count != PIXELS:
                raise FerError(
                    f"{name}: data row {i + 1} has {count} pixel values, expected "
                    f"{PIXELS} (48x48); the file is damaged - re-download it"
                )
        pixels.append(pix)
    if n == 0:
        raise FerError(f"{name}: no data rows; re-download the FER2013 CSV")
    bad = np.flatnonzero((labels < 0) | (labels > 6))
    if len(bad):
        raise FerError(f"{name}: data row {bad[0] + 1} has emotion {labels[bad[0]]}, expected 0-6")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fromstring's text mode; a short read is checked below
        values = np.fromstring(b" ".join(pixels), dtype=np.int16, sep=" ")
    if values.size != n * PIXELS or values.min() < 0 or values.max() > 255:
        row = _find_bad_row(pixels)
        raise FerError(
            f"{name}: data row {row} has pixel values that are not integers 0-255; "
            "the file is damaged - re-download it"
        )
    x = values.astype(np.uint8).reshape(n, SIZE, SIZE)
    return FerArrays(x, labels, usage)


def _find_bad_row(pixels: list[bytes]) -> int:
    for i, pix in enumerate(pixels):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = np.fromstring(pix, dtype=np.int16, sep=" ")
        if v.size != PIXELS or v.min() < 0 or v.max() > 255:
            return i + 1
    return 0


def _quiet(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None = only on a terminal."""
    return None if progress is None else not progress


def load_fer2013_csv(
    path: str | Path, *, cache: bool = True, progress: bool | None = None
) -> FerArrays:
    """Load the canonical CSV (plain or gzip), using/writing the parsed-array cache."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FerError(
            f"FER2013 CSV {path} does not exist; pass --fer2013 PATH or --data-dir "
            "with fer2013.csv(.gz) in it"
        )
    cpath = _cache_path(path) if cache else None
    if cpath is not None and cpath.is_file():
        try:
            with np.load(cpath, allow_pickle=False) as d:
                arrays = FerArrays(d["x"], d["y"].astype(np.int64), d["usage"])
            log.debug("FER2013 from cache %s", cpath)
            return arrays
        except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt
            log.warning("ignoring damaged cache %s (%s)", cpath, err)
    arrays = parse_csv_bytes(_read_bytes(path), path.name, progress=progress)
    if cpath is not None:
        try:
            write_cache(cpath, arrays)
        except OSError as err:
            log.warning(
                "could not write the FER2013 cache %s (%s); set FER_HYBRID_CACHE", cpath, err
            )
    return arrays


def write_cache(cpath: Path, arrays: FerArrays) -> None:
    with atomic_output(cpath) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, x=arrays.x, y=arrays.y.astype(np.uint8), usage=arrays.usage)
