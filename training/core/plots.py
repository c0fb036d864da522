"""Figures for evaluation reports. matplotlib (Agg) is imported lazily."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contract import LABELS, SPLIT_TITLES
from contract.files import atomic_write
from training.core.metrics import row_normalise
from training.core.report import write_json


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, **savefig) -> Path:
    """The figure as PNG at `path` (written atomically); the figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", **savefig)
    finally:
        plt.close(fig)
    return atomic_write(path, buf.getvalue())


def plot_confusion_matrix(
    cm: np.ndarray,
    path: str | Path,
    *,
    labels: Sequence[str] = LABELS,
    title: str = "Confusion matrix",
) -> Path:
    """Save a row-normalised, annotated confusion matrix PNG (rows = true class).

    Each cell shows the row percentage (recall on the diagonal) and the raw count.
    """
    plt = _pyplot()
    cm = np.asarray(cm)
    norm = row_normalise(cm)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2.5, 1.0 * k + 2.0), dpi=120)
    try:
        im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label("fraction of true class")
        ax.set_xticks(range(k), labels=list(labels), rotation=40, ha="right")
        ax.set_yticks(
            range(k), labels=[f"{lab} ({int(n)})" for lab, n in zip(labels, cm.sum(axis=1))]
        )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true (support)")
        ax.set_title(title)
        for i in range(k):
            for j in range(k):
                value = norm[i, j]
                colour = "white" if value > 0.55 else "black"
                ax.text(
                    j,
                    i,
                    f"{100 * value:.0f}%\n{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)


def write_confusion(counts, folder: str | Path, split: str, *, tta: bool,
                    title: str) -> dict[str, Path]:
    """confusion_<split>.png and confusion_<split>.json (the counts) in `folder`."""
    folder = Path(folder)
    files = {"confusion_png": folder / f"confusion_{split}.png",
             "confusion_json": folder / f"confusion_{split}.json"}
    plot_confusion_matrix(np.asarray(counts), files["confusion_png"], title=title)
    write_json(files["confusion_json"], {
        "labels": list(LABELS), "rows": "true", "columns": "predicted", "split": split,
        "split_name": SPLIT_TITLES[split], "tta": bool(tta), "counts": np.asarray(counts).tolist(),
    })
    return files


def plot_history(log_csv: str | Path, path: str | Path, *, title: str) -> Path | None:
    """Loss and accuracy curves (train and val) from a run's log.csv; None if it is empty."""
    import csv

    log_csv = Path(log_csv)
    if not log_csv.is_file():
        return None
    with open(log_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    plt = _pyplot()
    ep = [int(r["epoch"]) for r in rows]

    def col(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        a1.plot(ep, col("loss"), label="train")
        a1.plot(ep, col("val_loss"), label="val")
        a1.set(title="loss", xlabel="epoch")
        a2.plot(ep, col("accuracy"), label="train")
        a2.plot(ep, col("val_accuracy"), label="val")
        a2.set(title="accuracy", xlabel="epoch")
        for a in (a1, a2):
            a.legend()
            a.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path, dpi=90)


def plot_robustness(result: dict, path: str | Path) -> Path:
    """Accuracy vs severity, one panel per condition family (training.robustness.robustness's
    result).

    Solid lines: the page's pipeline (low-light normalisation first); dashed: the raw crop.
    Severity 0 is the clean crop of the same mode, so every curve starts at its reference.
    """
    plt = _pyplot()
    rows = result["results"]
    clean = rows[0]["accuracy"]
    families = list(dict.fromkeys(r["family"] for r in rows[1:]))
    cols = 4
    nrows = max(1, -(-(len(families) + 1) // cols))  # one spare panel holds the key
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), dpi=100,
                             sharey=True, squeeze=False)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, family in zip(axes.flat, families):
            names = list(dict.fromkeys(r["condition"] for r in rows if r["family"] == family))
            for i, name in enumerate(names):
                mine = sorted((r for r in rows if r["condition"] == name),
                              key=lambda r: r["severity"])
                sev = [0] + [r["severity"] for r in mine]
                for mode, style in (("normalised", "-"), ("raw", "--")):
                    acc = [100 * clean[mode]] + [100 * r["accuracy"][mode] for r in mine]
                    ax.plot(sev, acc, style, marker="o", ms=3, color=colours[i % len(colours)],
                            label=name if mode == "normalised" else None)
            ax.set_title(family)
            ax.set_xticks(range(4), ["clean", "mild", "mod.", "severe"])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower left")
        for ax in axes[:, 0]:
            ax.set_ylabel("accuracy (%)")
        spare = list(axes.flat)[len(families):]
        for ax in spare:
            ax.axis("off")
        if spare:
            spare[0].plot([], [], "k-", label="page (low-light normalised)")
            spare[0].plot([], [], "k--", label="raw crop")
            spare[0].legend(loc="center", fontsize=9, frameon=False)
        fig.suptitle(f"{result['target']['name']}: {result['split_name']} "
                     f"({result['n']} images) under corruptions")
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)


def _latency_bars(ax, lat: dict, tools: dict, title: str) -> None:
    """One latency panel: a bar group per tool configuration, 1 and 5 faces, p90 whiskers."""
    names = [k for k in lat]
    xs = np.arange(len(names))
    for i, (faces, colour) in enumerate((("1", "tab:blue"), ("5", "tab:orange"))):
        med = [lat[k].get(faces, {}).get("median_ms", np.nan) for k in names]
        p90 = [lat[k].get(faces, {}).get("p90_ms", np.nan) for k in names]
        err = [np.zeros(len(names)), np.subtract(p90, med)]
        ax.bar(xs + (i - 0.5) * 0.38, med, 0.38, yerr=err, capsize=3, color=colour,
               label=f"{faces} face{'s' if faces != '1' else ''}")
    ax.set_xticks(xs, [tools[k]["short"] for k in names], fontsize=8)
    ax.set_ylabel("ms per frame (median, whisker: p90)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_bench(result: dict, path: str | Path, tools: dict) -> Path:
    """`fer-hybrid bench`: latency per frame (1 and 5 faces, median with p90 whiskers), again
    for each CPU throttling rate (the phone-class rows), beside PrivateTest accuracy (plain and
    flip TTA), one bar group per tool configuration."""
    plt = _pyplot()
    lat, acc = result.get("latency", {}), result.get("accuracy") or {}
    throttled = result.get("latency_throttled") or {}
    panels = 2 + len(throttled)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2), dpi=100)
    left, right = axes[0], axes[-1]
    try:
        _latency_bars(left, lat, tools, "Latency per camera frame (lower is better)")
        for ax, (rate, by) in zip(axes[1:-1], throttled.items()):
            _latency_bars(ax, by, tools, f"Phone class: CPU throttled x{rate} (lower is better)")
        names = [k for k in acc]
        if names:
            xs = np.arange(len(names))
            for i, (key, colour, label) in enumerate((("accuracy", "tab:green", "plain"),
                                                      ("accuracy_flip_tta", "tab:olive", "flip TTA"))):
                vals = [100 * acc[k][key] for k in names]
                bars = right.bar(xs + (i - 0.5) * 0.38, vals, 0.38, color=colour, label=label)
                right.bar_label(bars, fmt="%.1f", fontsize=7)
            right.set_xticks(xs, [tools[k]["short"].split("\n(")[0] for k in names], fontsize=8)
            right.set_ylim(0, 100)
            right.set_ylabel("% correct")
            right.set_title(f"FER2013 PrivateTest ({next(iter(acc.values()))['n']} crops)")
            right.legend(fontsize=8, loc="lower right")
            right.grid(axis="y", alpha=0.3)
        else:
            right.axis("off")
            right.text(0.5, 0.5, "accuracy not measured", ha="center", va="center")
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)


def plot_agreement(points: Sequence[dict], path: str | Path, *,
                   fer2013_labels: float | None = None) -> Path:
    """FER2013 accuracy (x) against agreement with the FER+ ten-annotator majority (y), both
    with flip TTA on PrivateTest: one labelled point per model; `kind` "ours" (filled) or
    "peer" (hollow). `fer2013_labels`: the agreement of FER2013's own labels on the same rows,
    drawn as a line (a model that copied FER2013 perfectly would sit on it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    try:
        for p in points:
            x, y = 100 * p["accuracy"], 100 * p["agreement"]
            ours = p.get("kind", "ours") == "ours"
            ax.scatter([x], [y], s=60, color="tab:blue" if ours else "none",
                       edgecolors="tab:blue" if ours else "tab:red", linewidths=1.5, zorder=3)
            # peers' names below their point, ours above: near-equal points stay readable
            ax.annotate(p["name"], (x, y), textcoords="offset points",
                        xytext=(6, 4) if ours else (6, -12), fontsize=8,
                        color="black" if ours else "tab:red")
        if fer2013_labels is not None:
            ax.axhline(100 * fer2013_labels, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"FER2013's own labels: {100 * fer2013_labels:.1f} %",
                        (ax.get_xlim()[0], 100 * fer2013_labels), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color="grey")
        ax.set_xlabel("FER2013 PrivateTest accuracy, flip TTA (%)")
        ax.set_ylabel("FER+ majority agreement, flip TTA (%)")
        ax.set_title("Agreement with FER2013's labels vs with ten people\n"
                     "(filled: ours; hollow: in-browser peers)", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)


def plot_reliability(result: dict, path: str | Path) -> Path:
    """Reliability diagrams of `fer-hybrid calibrate` (training.evaluate.calibration): accuracy
    against mean confidence per bin on the held-out split, before and after the temperature; the
    diagonal is perfect calibration, and each bar's width grows with its share of images."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.2), dpi=100, sharey=True)
    try:
        split = result["held_out"]
        for ax, key, title in ((axes[0], "before", "as the vote is"),
                               (axes[1], "after", f"temperature {result['temperature']:.3f}")):
            block = result[split][key]
            rel = block["reliability"]
            n = max(1, sum(rel["count"]))
            edges = rel["edges"]
            for lo, hi, c, conf, acc in zip(edges[:-1], edges[1:], rel["count"],
                                            rel["confidence"], rel["accuracy"]):
                if not c:
                    continue
                ax.bar((lo + hi) / 2, acc, width=(hi - lo) * (0.25 + 0.75 * min(1, 6 * c / n)),
                       color="#4c72b0", alpha=0.8)
                ax.plot([conf], [acc], "o", color="#c44e52", ms=3)
            ax.plot([0, 1], [0, 1], "k--", lw=1)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence (top probability)")
            ax.set_title(f"{title}\nECE {100 * block['ece']:.1f} %, mean confidence "
                         f"{100 * block['mean_confidence']:.1f} % vs accuracy "
                         f"{100 * block['accuracy']:.1f} %", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy in the bin")
        fig.suptitle(f"{result['target']}: {SPLIT_TITLES.get(split, split)} "
                     f"({result[split]['before']['n']} images), temperature fitted on "
                     f"{SPLIT_TITLES.get(result['fitted_on'], result['fitted_on'])}")
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)
