"""A compact single-file format for carrying FER2013 (and aux sets) to a GPU machine.

Layout::

    b"FERHYPK1"                  8-byte magic
    uint32 little-endian         length of the JSON header
    JSON header                  {"format", "labels", "usages", "entries": [{name, dtype, shape}, ...]}
    .xz stream                   the raw bytes of every entry, concatenated in header order,
                                 compressed by Python lzma with filters
                                 [delta(dist=48), lzma2(preset 9)]

The delta filter with distance 48 stores each pixel as the difference to the
pixel one image row above, which lzma compresses noticeably better (README of
shared/data: 82.7 MB raw -> ~55.5 MB). Labels are already FER2013 indices.
Entries: ``fer2013/x`` (N,48,48) uint8, ``fer2013/y`` uint8, ``fer2013/usage`` uint8
(index into USAGES); optional ``aux/<name>/x`` and ``aux/<name>/y``.
"""

from __future__ import annotations

import json
import lzma
import struct
from pathlib import Path

import numpy as np

from contract import LABELS
from contract.files import atomic_output
from training.core.errors import FerError
from training.data.fer2013 import SIZE, USAGES, FerArrays

MAGIC = b"FERHYPK1"
FORMAT = "fer-hybrid/pack@1"
DEFAULT_PRESET = 9


def filters(preset: int = DEFAULT_PRESET) -> list[dict]:
    """delta(dist=48) + lzma2; preset 9 (64 MiB dictionary) is the smallest but slowest."""
    return [{"id": lzma.FILTER_DELTA, "dist": SIZE}, {"id": lzma.FILTER_LZMA2, "preset": preset}]


_CHUNK = 1 << 22


def is_packed(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def write_pack(
    path: str | Path,
    fer: FerArrays | None,
    aux: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    preset: int = DEFAULT_PRESET,
    progress: bool | None = None,
) -> int:
    """Write the pack atomically; returns the number of bytes written.

    preset: lzma level 0-9 (FER2013 without PrivateTest: ~52 MB at 9 or 6, 5-6 min on 1 core).
    """
    if not 0 <= preset <= 9:
        raise FerError(f"compression level must be 0-9 (got {preset})")
    from tqdm import tqdm

    arrays: list[tuple[str, np.ndarray]] = []
    if fer is not None:
        arrays += [
            ("fer2013/x", fer.x),
            ("fer2013/y", fer.y.astype(np.uint8)),
            ("fer2013/usage", fer.usage.astype(np.uint8)),
        ]
    for name, (x, y) in (aux or {}).items():
        arrays += [(f"aux/{name}/x", x), (f"aux/{name}/y", np.asarray(y).astype(np.uint8))]
    arrays = [(n, np.ascontiguousarray(a, dtype=np.uint8)) for n, a in arrays]
    header = json.dumps(
        {
            "format": FORMAT,
            "labels": list(LABELS),
            "usages": list(USAGES),
            "entries": [{"name": n, "dtype": "uint8", "shape": list(a.shape)} for n, a in arrays],
        }
    ).encode()
    path = Path(path)
    total = sum(a.nbytes for _, a in arrays)
    with (
        atomic_output(path) as tmp,
        open(tmp, "wb") as fh,
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="compress",
            disable=None if progress is None else not progress,
        ) as bar,
    ):
        fh.write(MAGIC + struct.pack("<I", len(header)) + header)
        comp = lzma.LZMACompressor(
            format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters(preset)
        )
        for _, a in arrays:
            flat = a.reshape(-1)
            for start in range(0, flat.size, _CHUNK):
                block = flat[start : start + _CHUNK]
                fh.write(comp.compress(block.tobytes()))
                bar.update(block.size)
        fh.write(comp.flush())
    return path.stat().st_size


def read_pack(path: str | Path) -> dict[str, np.ndarray]:
    """All entries of a pack by name; FerError for a damaged or foreign file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise FerError(
                    f"{path} is not a fer-hybrid pack; create one with `fer-hybrid data pack`"
                )
            (hlen,) = struct.unpack("<I", fh.read(4))
            header = json.loads(fh.read(hlen))
            payload = lzma.decompress(fh.read(), format=lzma.FORMAT_XZ)
    except FileNotFoundError:
        raise FerError(
            f"pack {path} does not exist; create it with `fer-hybrid data pack --out {path}`"
        ) from None
    except (OSError, lzma.LZMAError, ValueError, struct.error) as err:
        raise FerError(
            f"pack {path} is damaged ({err}); copy it again or re-run `fer-hybrid data pack`"
        ) from None
    if header.get("format") != FORMAT or list(header.get("labels", [])) != list(LABELS):
        raise FerError(
            f"pack {path} has format {header.get('format')!r}; re-create it with this version"
        )
    out: dict[str, np.ndarray] = {}
    pos = 0
    for e in header["entries"]:
        n = int(np.prod(e["shape"], dtype=np.int64))
        if pos + n > len(payload):
            raise FerError(f"pack {path} is truncated; copy it again")
        out[e["name"]] = np.frombuffer(payload, np.uint8, n, pos).reshape(e["shape"])
        pos += n
    return out


def fer_from_pack(entries: dict[str, np.ndarray], path: str | Path = "pack") -> FerArrays:
    if "fer2013/x" not in entries:
        raise FerError(f"pack {path} holds no FER2013 images; re-create it from the CSV")
    return FerArrays(
        entries["fer2013/x"], entries["fer2013/y"].astype(np.int64), entries["fer2013/usage"]
    )


def aux_from_pack(entries: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    names = {k.split("/")[1] for k in entries if k.startswith("aux/")}
    return {
        n: (entries[f"aux/{n}/x"], entries[f"aux/{n}/y"].astype(np.int64)) for n in sorted(names)
    }
