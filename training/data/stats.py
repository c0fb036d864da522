"""Class counts per split and per source: a text table and an optional bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract import LABELS
from training.data.dataset import Dataset

SPLIT_TITLES = {
    "train": "train (Training+aux)",
    "val": "val (PublicTest)",
    "test": "test (PrivateTest)",
}


def count_rows(splits: dict[str, Dataset]) -> list[tuple[str, str, list[int]]]:
    """[(split, source or 'total', counts per class)] with a per-split total and a grand total."""
    rows = []
    grand = np.zeros(len(LABELS), np.int64)
    for split, ds in splits.items():
        sources = sorted(set(ds.source.tolist()), key=lambda s: (s != "fer2013", s))
        total = np.zeros(len(LABELS), np.int64)
        for src in sources:
            c = np.bincount(ds.y[ds.source == src], minlength=len(LABELS))[: len(LABELS)]
            total += c
            if len(sources) > 1:
                rows.append((split, src, c.tolist()))
        rows.append(
            (
                split,
                "total" if len(sources) > 1 else (sources[0] if sources else "-"),
                total.tolist(),
            )
        )
        grand += total
    rows.append(("all", "total", grand.tolist()))
    return rows


def format_table(splits: dict[str, Dataset]) -> str:
    rows = count_rows(splits)
    head = ["split", "source", *LABELS, "total"]
    body = [[s, src, *[f"{v:,}" for v in c], f"{sum(c):,}"] for s, src, c in rows]
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]

    def line(r):
        return "  ".join(
            str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths))
        )

    out = [line(head), "  ".join("-" * w for w in widths)]
    prev = None
    for r in body:
        if prev is not None and r[0] != prev:
            out.append("")
        out.append(line(r))
        prev = r[0]
    return "\n".join(out)


def plot_counts(splits: dict[str, Dataset], path: str | Path) -> Path:
    """Grouped bar chart (one group per class, one bar per split), written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = [k for k, d in splits.items() if len(d)]
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    pos = np.arange(len(LABELS))
    for i, name in enumerate(names):
        counts = splits[name].counts()
        bars = ax.bar(
            pos + (i - (len(names) - 1) / 2) * width,
            counts,
            width,
            label=f"{SPLIT_TITLES.get(name, name)}: {counts.sum():,}",
        )
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(pos, LABELS)
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
