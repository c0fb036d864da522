"""Soft-voting ensembles over saved member probabilities.

The search is a pure function on arrays (`greedy_select`), so ensembles can be
searched on a CPU from saved `predictions/*.npz` alone, without any model.

Selection uses PublicTest (val) ONLY, by construction: `greedy_select`
receives nothing but the members' validation probabilities and labels, and
`build_ensemble` decides the weights before it looks at a single PrivateTest
(test) array. PrivateTest is only ever scored, never optimised on.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import LABELS, SPLIT_TITLES, utc_now
from contract.files import atomic_write
from training.core.errors import FerError
from training.core.metrics import evaluate_probs, top1_accuracy
from training.core.report import FERPLUS_HEADERS, ferplus_cells, markdown_table, pct, write_json
from training.core.runs import Predictions, Target, resolve_target
from training.data.ferplus import FerPlusVotes
from training.data.ferplus_agreement import ferplus_metrics
from training.data.splits import SplitLoader
from training.ensemble.holdout import holdout_section
from training.ensemble.voting import check_weights, weighted_average
from training.models.predict import get_predictions

SELECTION_NOTE = (
    "Members and weights were selected on PublicTest (val) only; PrivateTest (test) "
    "was never used for selection and is reported for information only."
)


# --------------------------------------------------------------------------- pure array functions


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    picked = probs[np.arange(y.shape[0]), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


@dataclass
class GreedyResult:
    weights: list[int]  # integer weights (how often each member was picked)
    val_accuracy: float  # of the selected ensemble, on the val arrays given
    history: list[dict] = field(default_factory=list)  # one entry per pick


def greedy_select(
    val_probs: Sequence[np.ndarray],
    val_y: np.ndarray,
    *,
    max_members: int | None = None,
    max_picks: int = 100,
) -> GreedyResult:
    """Caruana-style forward selection with replacement, on validation arrays only.

    Each step adds (again, possibly) the member whose inclusion gives the best
    validation accuracy of the averaged probabilities (ties: lower NLL, then
    lower index); stops as soon as accuracy no longer strictly improves.
    Repeated picks become integer weights. `max_members` caps the number of
    *distinct* members (repeats of already chosen ones stay allowed).
    """
    if len(val_probs) == 0:
        raise ValueError("no members to select from")
    y = np.asarray(val_y, dtype="int64")
    probs = [np.asarray(p, dtype="float64") for p in val_probs]
    for i, p in enumerate(probs):
        if p.ndim != 2 or p.shape[0] != y.shape[0]:
            raise ValueError(f"member {i}: probs {p.shape} do not match y {y.shape}")
    if max_members is not None and max_members < 1:
        raise ValueError("max_members must be >= 1")

    counts = [0] * len(probs)
    total = np.zeros_like(probs[0])
    best_acc = -1.0
    history: list[dict] = []
    for _ in range(max_picks):
        distinct = sum(1 for c in counts if c)
        best = None  # (acc, -nll, -index)
        for i, p in enumerate(probs):
            if counts[i] == 0 and max_members is not None and distinct >= max_members:
                continue
            cand = (total + p) / (sum(counts) + 1)
            key = (top1_accuracy(cand, y), -_nll(cand, y), -i)
            if best is None or key > best:
                best = key
        if best is None or best[0] <= best_acc:
            break
        idx = -best[2]
        counts[idx] += 1
        total += probs[idx]
        best_acc = best[0]
        history.append({"step": len(history) + 1, "added": idx, "val_accuracy": best_acc})
    return GreedyResult(weights=counts, val_accuracy=best_acc, history=history)


# --------------------------------------------------------------------------- members


@dataclass
class Candidate:
    """A run that may join the ensemble, with its PublicTest and PrivateTest predictions."""

    name: str
    path: Path
    val: Predictions
    test: Predictions


def check_members(members: Sequence[Candidate]) -> None:
    """All members must share labels and shapes on each split; FerError otherwise."""
    if not members:
        raise FerError("no ensemble members given")
    ref = members[0]
    for m in members[1:]:
        for split in ("val", "test"):
            a, b = getattr(ref, split), getattr(m, split)
            if a.probs.shape != b.probs.shape or a.y.shape != b.y.shape:
                raise FerError(
                    f"{m.name}: {split} predictions have shape {b.probs.shape} but {ref.name} has "
                    f"{a.probs.shape}; recompute them on the same data (`fer-hybrid evaluate {m.path} "
                    f"--split {split}` after deleting its predictions/{split}.npz)"
                )
            if not np.array_equal(a.y, b.y):
                raise FerError(
                    f"{m.name}: {split} labels differ from {ref.name}'s (different data or order); "
                    f"delete its predictions/{split}.npz and re-run `fer-hybrid evaluate {m.path} "
                    f"--split {split}`"
                )


def load_members(
    paths: Sequence[str | Path],
    *,
    data_loader: SplitLoader | None = None,
    batch_size: int = 256,
) -> list[Candidate]:
    """Members from run folders (or .keras files) with their val and test predictions.

    Saved predictions are reused; missing ones are computed from best.keras
    when `data_loader` is given, otherwise a FerError says what to run.
    """
    members: list[Candidate] = []
    names: set[str] = set()
    for raw in paths:
        target: Target = resolve_target(raw, need_model=False)
        if target.run_dir is None and not target.model_path.is_file():  # pragma: no cover
            raise FerError(f"{raw} not found")
        val, _ = get_predictions(target, "val", data_loader, batch_size=batch_size)
        test, _ = get_predictions(target, "test", data_loader, batch_size=batch_size)
        name = target.name
        k = 2
        while name in names:
            name = f"{target.name}-{k}"
            k += 1
        names.add(name)
        members.append(Candidate(name=name, path=Path(raw), val=val, test=test))
    check_members(members)
    return members


# --------------------------------------------------------------------------- ensemble


def _scores(preds: Predictions, tta: bool) -> dict:
    return evaluate_probs(preds.y, preds.probs, preds.probs_flip, tta=tta)


def _summary(m: dict) -> dict:
    return {
        "n": m["n"],
        "accuracy": m["accuracy_plain"],
        "accuracy_tta": m["accuracy_tta"],
        "macro_f1": m["macro_f1_plain"],
        "macro_f1_tta": m["macro_f1_tta"],
        "per_class_recall": {k: v["recall"] for k, v in m["per_class"].items()},
    }


def choose_weights(
    val_probs: Sequence[np.ndarray],
    val_y: np.ndarray,
    *,
    select: str = "greedy",
    weights: Sequence[float] | None = None,
    max_members: int | None = None,
) -> tuple[list[float], str, list[dict]]:
    """Weights per member from validation arrays only -> (weights, method, greedy history)."""
    n = len(val_probs)
    if weights is not None:
        return check_weights(weights, n, allow_zero=True), "weights", []
    if select == "all":
        if max_members is None or max_members >= n:
            return [1.0] * n, "all", []
        accs = [top1_accuracy(np.asarray(p), np.asarray(val_y)) for p in val_probs]
        keep = set(np.argsort(-np.asarray(accs), kind="stable")[:max_members].tolist())
        return [1.0 if i in keep else 0.0 for i in range(n)], "all", []
    if select == "greedy":
        result = greedy_select(val_probs, val_y, max_members=max_members)
        return [float(w) for w in result.weights], "greedy", result.history
    raise FerError(f"unknown --select {select!r}; use greedy or all")


def build_ensemble(
    members: Sequence[Candidate],
    *,
    select: str = "greedy",
    weights: Sequence[float] | None = None,
    tta: bool = True,
    max_members: int | None = None,
    votes: FerPlusVotes | None = None,
    votes_note: str = "",
) -> dict:
    """Choose weights on val, then score every member and the ensemble on val and test.

    With `votes` (PrivateTest's FER+ votes, `training.data.ferplus.votes_for_split("test")`)
    each member's and the ensemble's "test" also get "ferplus": agreement with the
    ten-annotator majority, plain and flip TTA (`training.data.ferplus_agreement.ferplus_metrics`);
    without them the report's "ferplus_note" says why.

    Returns the JSON-ready report (schema fer-hybrid/ensemble-report@1).
    """
    check_members(members)
    if weights is not None and max_members is not None:
        raise FerError("--weights and --max-members cannot be combined; drop one of them")
    # 1) selection: validation (PublicTest) arrays only
    val_y = members[0].val.y
    w, method, history = choose_weights(
        [m.val.scored(tta) for m in members],
        val_y,
        select=select,
        weights=weights,
        max_members=max_members,
    )
    # 2) scoring: val and test, members and ensemble
    total = sum(w)
    rows = []
    for m, wi in zip(members, w):
        rows.append(
            {
                "name": m.name,
                "path": str(m.path),
                "weight": wi,
                "weight_normalised": wi / total,
                "val": _summary(_scores(m.val, tta)),
                "test": _summary(_scores(m.test, tta)),
            }
        )
        if votes is not None:
            rows[-1]["test"]["ferplus"] = ferplus_metrics(m.test, votes)
    ens = {}
    full = {}
    for split in ("val", "test"):
        preds = [getattr(m, split) for m in members]
        combined = Predictions(
            probs=weighted_average([p.probs for p in preds], w).astype("float32"),
            probs_flip=weighted_average([p.probs_flip for p in preds], w).astype("float32"),
            y=preds[0].y,
        )
        full[split] = _scores(combined, tta)
        ens[split] = _summary(full[split])
        if split == "test" and votes is not None:
            ens[split]["ferplus"] = ferplus_metrics(combined, votes)
    for step in history:
        step["member"] = members[step["added"]].name
    return {
        "schema": "fer-hybrid/ensemble-report@1",
        "created": utc_now(),
        "labels": list(LABELS),
        "method": "soft_voting",
        "tta_flip": bool(tta),
        "selection": {
            "method": method,
            "split": "val",
            "split_name": SPLIT_TITLES["val"],
            "max_members": max_members,
            "note": SELECTION_NOTE,
            "history": history,
        },
        "selected": [
            {"name": r["name"], "path": r["path"], "weight": r["weight"]}
            for r in rows
            if r["weight"] > 0
        ],
        "export_command": export_command(rows),
        "ferplus_note": votes_note,
        "members": rows,
        "ensemble": ens,
        "confusion_matrix": {
            "split": "test",
            "split_name": SPLIT_TITLES["test"],
            "tta": full["test"]["tta"],
            "rows": "true",
            "columns": "predicted",
            "counts": full["test"]["confusion_matrix"],
        },
    }


def export_command(rows: Sequence[dict]) -> str:
    """The `fer-hybrid export` line that ships the selected members with these weights."""
    chosen = [r for r in rows if r["weight"] > 0]
    paths = " ".join(shlex.quote(r["path"]) for r in chosen)
    weights = ",".join(f"{r['weight']:g}" for r in chosen)
    return f"fer-hybrid export {paths} --weights {weights}"


def _fmt_w(w: float) -> str:
    return f"{w:g}"


def render_markdown(report: dict) -> str:
    tta = report["tta_flip"]
    f1_key = "macro_f1_tta" if tta else "macro_f1"
    sel = report["selection"]
    n_val = report["ensemble"]["val"]["n"]
    n_test = report["ensemble"]["test"]["n"]
    headers = [
        "member",
        "weight",
        "val acc",
        "val acc TTA",
        f"val macro-F1{' (TTA)' if tta else ''}",
        "test acc",
        "test acc TTA",
        f"test macro-F1{' (TTA)' if tta else ''}",
    ]

    def row(name: str, weight: str, v: dict, t: dict) -> list:
        return [
            name,
            weight,
            pct(v["accuracy"]),
            pct(v["accuracy_tta"]),
            pct(v[f1_key]),
            pct(t["accuracy"]),
            pct(t["accuracy_tta"]),
            pct(t[f1_key]),
        ]

    rows = [row(m["name"], _fmt_w(m["weight"]), m["val"], m["test"]) for m in report["members"]]
    e = report["ensemble"]
    rows.append(
        row(
            "**ensemble**", _fmt_w(sum(m["weight"] for m in report["members"])), e["val"], e["test"]
        )
    )
    lines = [
        "# Ensemble report",
        "",
        (
            f"Created {report['created']}. Soft voting over {len(report['members'])} candidate "
            f"members ({len(report['selected'])} selected), flip TTA {'on' if tta else 'off'}."
        ),
        "",
        f"**Selection:** `{sel['method']}`"
        + (f", at most {sel['max_members']} distinct members" if sel["max_members"] else "")
        + f". {SELECTION_NOTE}",
        "",
        f"val = PublicTest ({n_val} images), test = PrivateTest ({n_test} images).",
        "",
        markdown_table(headers, rows),
        "",
    ]
    if sel["history"]:
        lines += [
            "## Greedy selection (on val only)",
            "",
            markdown_table(
                ["step", "added", "val accuracy"],
                [[h["step"], h["member"], pct(h["val_accuracy"])] for h in sel["history"]],
            ),
            "",
        ]
    lines += [
        "To ship the selected members with these weights:",
        "",
        "```",
        report["export_command"],
        "```",
        "",
    ]
    lines += ferplus_section(report)
    lines += holdout_section(report)
    recall = e["test"]["per_class_recall"]
    lines += [
        f"## Ensemble per-class recall on test ({'flip TTA' if tta else 'no TTA'})",
        "",
        markdown_table(list(recall.keys()), [[pct(v, 1) for v in recall.values()]]),
        "",
        "![ensemble confusion matrix on test](confusion_test.png)",
        "",
    ]
    return "\n".join(lines)


def ferplus_section(report: dict) -> list[str]:
    """Markdown lines: each member's and the ensemble's agreement with the FER+ majority on
    test, or one line saying why there is none."""
    title = "## Agreement with people on test (FER+ ten-annotator votes)"
    e = report["ensemble"]["test"]
    fp = e.get("ferplus")
    if not fp:
        why = report.get("ferplus_note") or "no FER+ votes given"
        return [title, "", f"Not computed: {why}.", ""]
    rows = [[m["name"], *ferplus_cells(m["test"].get("ferplus"))] for m in report["members"]]
    rows.append(["**ensemble**", *ferplus_cells(fp)])
    n = fp.get("plain", {}).get("n", "?")
    return [
        title,
        "",
        (f"On the {n} PrivateTest rows whose most-voted FER+ column is one of our seven classes; "
         f"{fp.get('ties', '')}."),
        "",
        markdown_table(FERPLUS_HEADERS, rows),
        "",
    ]


def write_ensemble_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """ensemble.json, ensemble.md, confusion_test.png, confusion_test.json in `out_dir` (atomic)."""
    from training.core.plots import write_confusion

    out_dir = Path(out_dir)
    files = {"json": out_dir / "ensemble.json", "markdown": out_dir / "ensemble.md"}
    cm = report["confusion_matrix"]
    acc = report["ensemble"]["test"]["accuracy_tta" if report["tta_flip"] else "accuracy"]
    files.update(write_confusion(
        cm["counts"], out_dir, "test", tta=cm["tta"],
        title=f"Ensemble: PrivateTest ({'flip TTA' if cm['tta'] else 'no TTA'}), acc {pct(acc)}"))
    write_json(files["json"], report)
    atomic_write(files["markdown"], render_markdown(report))
    return files
