"""Results table: our measured members and ensembles next to published FER2013 numbers.

Pure functions over saved run outputs (no model, no data, no TensorFlow):

    rows = [run_row("runs/vgg-1"), ensemble_row("reports/ensemble/ensemble.json")]
    text = render_results(rows)

Our rows are computed from predictions/test.npz (PrivateTest) with and without
horizontal-flip TTA; when a run has no test predictions the table says so rather
than guessing. Agreement with the FER+ ten-annotator majority is copied from what
`fer-hybrid evaluate` (evaluation/metrics_test.json) or `fer-hybrid ensemble`
(ensemble.json) measured when the votes were there; "-" where they did not.
Published rows are copied from the papers (see `PUBLISHED`) and are never
recomputed: they are marked as such in the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import utc_now
from training.core.errors import FerError
from training.core.report import FERPLUS_HEADERS, ferplus_cells, markdown_table, pct
from training.core.runs import RunFolder, load_predictions


@dataclass(frozen=True)
class Published:
    name: str
    kind: str  # "single" | "ensemble"
    accuracy: float  # PrivateTest accuracy as reported (fraction)
    citation: str
    approx: bool = False  # the paper gives it only approximately / from a figure


# FER2013 PrivateTest accuracies as published (not re-measured by us).
PUBLISHED: tuple[Published, ...] = (
    Published("Khanzada et al. 2020: 7-model ensemble (reference paper)", "ensemble", 0.758,
              "A. Khanzada, C. Bai, F. T. Celepcikay, \"Facial Expression Recognition with "
              "Deep Learning\", arXiv:2004.11823, 2020"),
    Published("Khanzada et al. 2020: best single model", "single", 0.732,
              "A. Khanzada, C. Bai, F. T. Celepcikay, \"Facial Expression Recognition with "
              "Deep Learning\", arXiv:2004.11823, 2020", approx=True),
    Published("Khaireddin & Chen 2021: VGGNet (best single network)", "single", 0.7328,
              "Y. Khaireddin, Z. Chen, \"Facial Emotion Recognition: State of the Art "
              "Performance on FER2013\", arXiv:2105.03588, 2021"),
    Published("Pramerdorfer & Kampel 2016: ensemble", "ensemble", 0.752,
              "C. Pramerdorfer, M. Kampel, \"Facial Expression Recognition using Convolutional "
              "Neural Networks: State of the Art\", arXiv:1612.02903, 2016"),
    Published("Kim et al. 2016: ensemble", "ensemble", 0.737,
              "B.-K. Kim, S.-Y. Dong, J. Roh, G. Kim, S.-Y. Lee, \"Fusing Aligned and Non-Aligned "
              "Face Information for Automatic Affect Recognition in the Wild: A Deep Learning "
              "Approach\", CVPR Workshops 2016", approx=True),
)


def _scores(y: np.ndarray, probs: np.ndarray, probs_flip: np.ndarray | None) -> dict:
    from training.core.metrics import evaluate_probs

    m = evaluate_probs(np.asarray(y, dtype="int64"), np.asarray(probs),
                       None if probs_flip is None else np.asarray(probs_flip), tta=True)
    return {"accuracy": m["accuracy_plain"], "accuracy_tta": m["accuracy_tta"],
            "macro_f1": m["macro_f1_plain"], "macro_f1_tta": m["macro_f1_tta"], "n": len(y)}


def run_row(run_dir: str | Path) -> dict:
    """One member: PrivateTest scores from predictions/test.npz, params from metrics.json."""
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise FerError(f"{run.path}: not a run folder; pass runs/<name> folders written by "
                       f"`fer-hybrid train`")
    metrics = run.read_metrics()
    row = {"name": run.path.name, "kind": "member", "model": metrics.get("model", "?"),
           "params": metrics.get("params"), "source": str(run.path), "n": None,
           "accuracy": None, "accuracy_tta": None, "macro_f1": None, "macro_f1_tta": None,
           "note": ""}
    row["ferplus"] = None
    if run.predictions("test").is_file():
        preds = load_predictions(run.predictions("test"))
        row.update(_scores(preds.y, preds.probs, preds.probs_flip))
        row["ferplus"] = evaluated_ferplus(run, len(preds.y), run.predictions("test"))
    else:
        row["note"] = "no predictions/test.npz (run `fer-hybrid evaluate` on it)"
    return row


def evaluated_ferplus(run: RunFolder, n: int, predictions: Path) -> dict | None:
    """The FER+ block `fer-hybrid evaluate` wrote for the run's PrivateTest predictions
    (evaluation/metrics_test.json), None when it has none, scored other rows (another n) or
    is older than the predictions file."""
    path = run.evaluation_dir / "metrics_test.json"
    try:
        doc = json.loads(path.read_text())
        if path.stat().st_mtime < predictions.stat().st_mtime:
            return None
    except (OSError, ValueError):
        return None
    block = doc.get("ferplus") if isinstance(doc, dict) else None
    if not isinstance(block, dict) or "note" in block or doc.get("n") != n:
        return None
    return block


def ensemble_row(report_path: str | Path, params: dict[str, int] | None = None) -> dict:
    """One ensemble from an ensemble.json report (`fer-hybrid ensemble`); params summed over
    the selected members when `params` (run name -> params) knows them all."""
    path = Path(report_path)
    if path.is_dir():
        path = path / "ensemble.json"
    if not path.is_file():
        raise FerError(f"--ensemble-report {report_path}: no ensemble.json there; "
                       f"run `fer-hybrid ensemble` first")
    rep = json.loads(path.read_text())
    test = rep.get("ensemble", {}).get("test", {})
    selected = [m["name"] for m in rep.get("selected", [])]
    known = [params.get(n) for n in selected] if params else []
    total = sum(known) if known and all(p is not None for p in known) else None
    return {"name": f"ensemble ({len(selected)}: {', '.join(selected)})", "kind": "ensemble",
            "model": "soft voting", "params": total, "source": str(path),
            "n": test.get("n"), "accuracy": test.get("accuracy"),
            "accuracy_tta": test.get("accuracy_tta"), "macro_f1": test.get("macro_f1"),
            "macro_f1_tta": test.get("macro_f1_tta"), "ferplus": test.get("ferplus"),
            "note": f"weights chosen on {rep.get('selection', {}).get('split_name', 'val')}"}


def collect(runs, ensemble_reports=()) -> list[dict]:
    rows = [run_row(r) for r in runs]
    params = {r["name"]: r["params"] for r in rows}
    rows += [ensemble_row(p, params) for p in ensemble_reports]
    return rows


def _params(p) -> str:
    if p is None:
        return "-"
    return f"{p / 1e6:.2f} M" if p >= 1e6 else f"{p / 1e3:.1f} k"


def render_results(rows: list[dict], published=PUBLISHED) -> str:
    """Markdown: our measured rows first, then the published ones, then the citations."""
    ours = sorted(rows, key=lambda r: (r["kind"] != "member",
                                       -(r["accuracy_tta"] or r["accuracy"] or 0.0)))
    out = [
        "# FER2013 PrivateTest results",
        "",
        f"Generated {utc_now()} by `fer-hybrid results`.",
        "",
        ("**Ours (measured)**: computed by this script from the saved PrivateTest predictions "
         "of our runs / ensemble reports (flip TTA = average with the mirrored image)."),
        "**Published**: numbers as reported in the papers, not re-measured here.",
        ("**FER+**: agreement with Microsoft's FER+ ten-annotator votes on the PrivateTest rows "
         "whose most-voted column is one of the seven classes (3,519 of 3,589): the share where "
         "the predicted class got the most votes (a tie counts as agreement with any tied "
         "class), and the mean share of votes for the predicted class. Copied from `fer-hybrid "
         "evaluate` / `fer-hybrid ensemble` when the votes were there; \"-\" where not measured."),
        "",
        markdown_table(
            ["", "model", "kind", "accuracy", "accuracy (flip TTA)", "macro-F1",
             "macro-F1 (flip TTA)", *FERPLUS_HEADERS, "params", "n test", "note"],
            [["ours (measured)", r["name"], r["kind"], pct(r["accuracy"]), pct(r["accuracy_tta"]),
              _f1(r["macro_f1"]), _f1(r["macro_f1_tta"]), *ferplus_cells(r.get("ferplus")),
              _params(r["params"]), r["n"] if r["n"] is not None else "-", r["note"]]
             for r in ours]
            + [[f"published [{i}]", p.name, p.kind,
                ("~" if p.approx else "") + pct(p.accuracy, 1 if p.approx else 2),
                "-", "-", "-", *ferplus_cells(None), "-", "-", "as reported"]
               for i, p in enumerate(published, 1)],
        ),
        "",
        "References:",
        "",
    ]
    out += [f"[{i}] {p.citation}" for i, p in enumerate(published, 1)]
    if any(r["n"] not in (None, 3589) for r in ours):
        out += ["", ("Note: rows with n test != 3589 were not scored on the full FER2013 "
                     "PrivateTest split and are not comparable with the published numbers.")]
    return "\n".join(out) + "\n"


def _f1(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def agreement_points(rows: list[dict], bench: dict | None = None) -> list[dict]:
    """Points for `training.core.plots.plot_agreement`: our rows that have FER+ agreement (flip
    TTA) and, from a `fer-hybrid bench` result (bench.json), the in-browser peers measured
    on the same crops. Rows without the numbers are left out, never guessed."""
    points = []
    for r in rows:
        tta = ((r.get("ferplus") or {}).get("tta") or {}).get("majority_agreement")
        if tta is not None and r.get("accuracy_tta") is not None:
            points.append({"name": r["name"], "accuracy": r["accuracy_tta"], "agreement": tta,
                           "kind": "ours"})
    if bench:
        from training.bench.report import TOOLS

        for key, acc in (bench.get("accuracy") or {}).items():
            if key.startswith("ours"):  # our model is in `rows` (or the manifest), not a peer
                continue
            tta = (((acc.get("ferplus") or {}).get("tta")) or {}).get("majority_agreement")
            if tta is not None and acc.get("accuracy_flip_tta") is not None:
                points.append({"name": TOOLS.get(key, {}).get("short", key).split("\n")[0],
                               "accuracy": acc["accuracy_flip_tta"], "agreement": tta,
                               "kind": "peer"})
    return points
