"""Reports: strict JSON files (written atomically), small Markdown/terminal tables, and marked
sections that a command owns inside a hand-written Markdown file (a model card)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.files import atomic_write
from training.core.errors import FerError


def _json_default(obj: Any):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (no NaN: browsers and `jq` refuse it), numpy values converted, atomic."""
    text = json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n"
    return atomic_write(path, text)


def pct(value: float | None, digits: int = 2) -> str:
    """0.6123 -> '61.23%'; None -> '-'."""
    if value is None:
        return "-"
    return f"{100.0 * value:.{digits}f}%"


#: Table headers for `ferplus_cells`.
FERPLUS_HEADERS = ["FER+ majority agreement", "FER+ agreement (flip TTA)", "FER+ mean vote share",
                   "FER+ vote share (flip TTA)"]


def ferplus_cells(block: dict | None) -> list[str]:
    """A FER+ block (`training.data.ferplus_agreement.ferplus_scores`: plain/tta agreement) as four
    table cells, FERPLUS_HEADERS order; "-" where it was not measured, never a made-up number."""
    if not block or "note" in block:
        return ["-"] * 4
    plain, tta = block.get("plain") or {}, block.get("tta") or {}
    return [pct(plain.get("majority_agreement")), pct(tta.get("majority_agreement")),
            pct(plain.get("mean_vote_share")), pct(tta.get("mean_vote_share"))]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned table for the terminal (first column left, others right)."""
    rows = [[str(v) for v in row] for row in rows]
    headers = [str(h) for h in headers]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    out = [fmt(headers), "  ".join("-" * w for w in widths)]
    out.extend(fmt(r) for r in rows)
    return "\n".join(out)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def read_marked_section(path: str | Path, name: str) -> str | None:
    """The text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` (None without them).

    FerError when the markers are broken (one without the other, repeated, out of order): a
    command must not guess which part of a hand-edited file is its own.
    """
    text = Path(path).read_text(encoding="utf-8")
    begin, end = _markers(name)
    nb, ne = text.count(begin), text.count(end)
    if nb == ne == 0:
        return None
    if nb != 1 or ne != 1 or text.index(begin) > text.index(end):
        raise FerError(f"{path}: the markers {begin} ... {end} must appear once each, in that "
                       "order; fix them by hand")
    return text[text.index(begin) + len(begin):text.index(end)].strip("\n")


def write_marked_section(path: str | Path, name: str, body: str) -> Path:
    """Put `body` between the section's markers in a Markdown file, atomically.

    The rest of the file is kept as it is; without markers the section is appended at the end
    (a missing file is created), so later runs replace only their own section.
    """
    path = Path(path)
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip(chr(10))}\n{end}"
    if not path.exists():
        return atomic_write(path, block + "\n")
    old = read_marked_section(path, name)
    text = path.read_text(encoding="utf-8")
    if old is None:
        new = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        new = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    return atomic_write(path, new)
