"""The ensemble on the custom holdout: each member's and the soft vote's accuracy, with the
weights `build_ensemble` chose on PublicTest (the holdout, like PrivateTest, is only scored).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract.review import HOLDOUT_TITLE
from training.core.report import markdown_table, pct
from training.core.runs import Predictions, resolve_target
from training.ensemble.voting import weighted_average
from training.models.custom_holdout import Scorer, holdout_summary, keras_scorer, too_few


def score_ensemble_holdout(
    scorers: Sequence[Scorer], weights: Sequence[float], x: np.ndarray, y: np.ndarray
) -> tuple[list[dict], dict]:
    """(one summary per member, the ensemble's); the models are not loaded when the holdout
    holds too few faces to report."""
    if too_few(len(y)):
        return [holdout_summary(None, len(y)) for _ in scorers], holdout_summary(None, len(y))
    preds = [Predictions(*scorer(x), y) for scorer in scorers]
    combined = Predictions(
        weighted_average([p.probs for p in preds], weights).astype("float32"),
        weighted_average([p.probs_flip for p in preds], weights).astype("float32"),
        y,
    )
    return [holdout_summary(p, len(y)) for p in preds], holdout_summary(combined, len(y))


def add_holdout(report: dict, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> dict:
    """Put "custom_holdout" into an ensemble report: every member's summary (by name) and the
    ensemble's, with the report's weights. Returns the ensemble's summary."""
    targets = [resolve_target(m["path"], need_model=False) for m in report["members"]]
    weights = [m["weight"] for m in report["members"]]
    missing = [t.name for t in targets if not t.model_path.is_file()]
    if missing and not too_few(len(y)):  # saved predictions cover the splits, not the holdout
        none = {
            **holdout_summary(None, len(y)),
            "note": f"no model file to score the {HOLDOUT_TITLE} with for {missing[0]}",
        }
        members, ensemble = [dict(none) for _ in targets], none
    else:
        scorers = [keras_scorer(t.model_path, batch_size=batch_size) for t in targets]
        members, ensemble = score_ensemble_holdout(scorers, weights, x, y)
    report["custom_holdout"] = {
        "members": {m["name"]: s for m, s in zip(report["members"], members)},
        "ensemble": ensemble,
    }
    return ensemble


def holdout_section(report: dict) -> list[str]:
    """Markdown lines: the members' and the ensemble's accuracy on the custom holdout, or the
    line saying how many faces it holds."""
    held = report.get("custom_holdout")
    if not held:
        return []
    title = f"## The {HOLDOUT_TITLE} (accepted uploads that never train)"
    e = held["ensemble"]
    if e["accuracy"] is None:
        return [title, "", e["note"][0].upper() + e["note"][1:] + ".", ""]
    rows = [
        [name, pct(s["accuracy"]), pct(s["accuracy_tta"])] for name, s in held["members"].items()
    ]
    rows.append(["**ensemble**", pct(e["accuracy"]), pct(e["accuracy_tta"])])
    return [
        title,
        "",
        f"{e['n']} faces from the app's own users, scored like PrivateTest.",
        "",
        markdown_table(["member", "acc", "acc TTA"], rows),
        "",
    ]
