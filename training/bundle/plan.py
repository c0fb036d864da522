"""Sizes and the device calls: which bundle files each GPU call copies back to `$OUT`.

A call of the lent GPU machine brings back at most `MAX_FILES` files, each at most
`MAX_FILE_BYTES` (a bigger one is silently dropped) and `MAX_CALL_BYTES` in all, from at
most two folders deep. Parts are therefore written flat and smaller than a file's limit,
and `plan_calls` packs them, in order, into calls that respect all three limits; the
manifest travels in the first call so that whatever came back can always be checked.
Standard library only.
"""

from __future__ import annotations

import re
import shlex

from training.core.errors import FerError

MiB = 2**20
MAX_FILES = 8
MAX_FILE_BYTES = 16 * MiB
MAX_CALL_BYTES = 64 * MiB
DEFAULT_PART_BYTES = 15 * MiB  # under MAX_FILE_BYTES, with room for a manifest in a call

_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 10**3, "m": MiB, "mib": MiB,
          "mb": 10**6}


def parse_size(text: str | int) -> int:
    """'15MiB', '15M', '512KiB', '20kb', '4096' -> bytes; FerError if unreadable or < 1."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS:
        raise FerError(f"cannot read the size {text!r}; write e.g. 15MiB, 512KiB or 4096 "
                       "(bytes)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise FerError(f"size {text!r} must be at least 1 byte")
    return size


def check_part_size(part_bytes: int) -> int:
    """FerError unless a part of this size comes back from a device call."""
    if part_bytes > MAX_FILE_BYTES:
        raise FerError(f"parts of {format_size(part_bytes)} exceed what a device call brings "
                       f"back ({format_size(MAX_FILE_BYTES)} a file; a bigger one is dropped "
                       "silently); use --part-size 15MiB or less")
    return part_bytes


def format_size(n: int) -> str:
    """Bytes for people: '15.0 MiB', '812.4 KiB', '93 B'."""
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.1f} KiB"
    return f"{n} B"


def plan_calls(files: list[tuple[str, int]], *, max_files: int = MAX_FILES,
               max_bytes: int = MAX_CALL_BYTES) -> list[list[str]]:
    """Pack (name, size) files, in order, into calls of at most max_files / max_bytes each.

    In order (not best fit) so that call k holds the parts after call k-1's: a person who
    lost one call's files knows which ones to fetch again. FerError for a file that fits no
    call on its own.
    """
    calls: list[list[str]] = []
    used = 0
    for name, size in files:
        if size > min(max_bytes, MAX_FILE_BYTES):
            raise FerError(f"{name} ({format_size(size)}) is too big for one device call")
        if not calls or len(calls[-1]) >= max_files or used + size > max_bytes:
            calls.append([])
            used = 0
        calls[-1].append(name)
        used += size
    return calls


def format_plan(folder: str, calls: list[list[str]], sizes: dict[str, int]) -> str:
    """'call 1: cp DIR/{a,b,c} $OUT   (3 files, 30.1 MiB)' per call."""
    lines = []
    for i, names in enumerate(calls, 1):
        base = shlex.quote(folder.rstrip("/") or "/")
        files = f"{base}/{names[0]}" if len(names) == 1 else f"{base}/{{{','.join(names)}}}"
        total = sum(sizes[n] for n in names)
        lines.append(f"call {i}: cp {files} $OUT   ({len(names)} files, {format_size(total)})")
    return "\n".join(lines)
