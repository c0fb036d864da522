"""The custom holdout as a test set: accepted uploads that never train (`contract.review`).

It is the one test set that looks like the app's real users (their phones, their light), so
`evaluate`, `ensemble` and the model card report accuracy on it beside PrivateTest. Only once
it holds `HOLDOUT_MIN` faces: below that the number would swing by whole points per face, so
the report says how many it holds instead. Here (the models stage) so that both `ensemble`
and `evaluate`, above it, can score it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract.review import HOLDOUT_EVERY, HOLDOUT_MIN, HOLDOUT_TITLE
from training.core.metrics import evaluate_probs
from training.core.report import pct
from training.core.runs import Predictions
from training.data.custom import load_custom_holdout

#: (uint8 images (N, 48, 48)) -> (plain, mirrored) class probabilities.
Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def load_holdout(custom_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the custom holdout; empty when there is no upload store yet."""
    return load_custom_holdout(custom_dir, progress=False)


def keras_scorer(model_path: str | Path, *, batch_size: int = 256) -> Scorer:
    """Plain and mirrored probabilities of a .keras model (loaded on the first call only)."""
    from training.models.predict import predict_probs
    from training.models.serialization import load_model

    def score(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = load_model(model_path, float32=True)
        return (
            predict_probs(model, x, batch_size=batch_size),
            predict_probs(model, x, batch_size=batch_size, flip=True),
        )

    return score


def too_few(n: int) -> bool:
    return n < HOLDOUT_MIN


def holdout_summary(preds: Predictions | None, n: int) -> dict:
    """The report's "custom_holdout": accuracy plain and with flip TTA, or why there is none."""
    if preds is None or too_few(n):
        return {
            "n": n,
            "min": HOLDOUT_MIN,
            "accuracy": None,
            "accuracy_tta": None,
            "note": holdout_note(n),
        }
    metrics = evaluate_probs(preds.y, preds.probs, preds.probs_flip, tta=True)
    return {
        "n": n,
        "min": HOLDOUT_MIN,
        "accuracy": metrics["accuracy_plain"],
        "accuracy_tta": metrics["accuracy_tta"],
        "note": None,
    }


def holdout_note(n: int) -> str:
    return (
        f"the {HOLDOUT_TITLE} holds {n} accepted face{'s' if n != 1 else ''}; its accuracy "
        f"is reported from {HOLDOUT_MIN} (one accepted upload in {HOLDOUT_EVERY} goes there, "
        "by its hash, and never trains)"
    )


def score_holdout(scorer: Scorer | None, x: np.ndarray, y: np.ndarray) -> dict:
    """Score one model on the holdout `x, y` when it holds enough faces (the model is not even
    loaded otherwise)."""
    if scorer is None or too_few(len(y)):
        return holdout_summary(None, len(y))
    plain, flip = scorer(x)
    return holdout_summary(Predictions(plain, flip, y), len(y))


def format_holdout(summary: dict) -> str:
    """One line for the terminal."""
    if summary.get("accuracy") is None:
        return summary["note"]
    return (
        f"{HOLDOUT_TITLE} ({summary['n']} faces): accuracy no TTA {pct(summary['accuracy'])}"
        f"   flip TTA {pct(summary['accuracy_tta'])}"
    )
