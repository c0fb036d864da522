"""Classification metrics on plain numpy arrays (no sklearn, no TensorFlow).

Everything here works on integer labels `y` (N,) and class probabilities
`probs` (N, K) in LABELS order, so it can run on saved predictions alone.
Conventions follow scikit-learn with `zero_division=0`: a class that is never
predicted has precision 0, a class that never occurs has recall 0 (and both
give F1 0); macro-F1 is the unweighted mean over all K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract import LABELS, NUM_CLASSES


def tta_average(probs: np.ndarray, probs_flip: np.ndarray) -> np.ndarray:
    """Flip TTA (the paper's): the mean of the plain and the mirrored image's probabilities."""
    return (np.asarray(probs, dtype="float64") + np.asarray(probs_flip, dtype="float64")) / 2.0


def combine_tta(probs: np.ndarray, probs_flip: np.ndarray | None, tta: bool) -> np.ndarray:
    """The probabilities to score: `probs`, or with `tta` the mean of plain and mirrored."""
    if not tta:
        return np.asarray(probs, dtype="float64")
    if probs_flip is None:
        raise ValueError("flip TTA needs probs_flip")
    return tta_average(probs, probs_flip)


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Counts (K, K) int64: rows = true class, columns = predicted class, in LABELS order."""
    y_true = np.asarray(y_true, dtype="int64").ravel()
    y_pred = np.asarray(y_pred, dtype="int64").ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    flat = y_true * num_classes + y_pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def top1_accuracy(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Share of rows whose highest probability is the true class."""
    return accuracy(y_true, np.asarray(probs).argmax(axis=1))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.size == 0:
        return 0.0
    return float(np.mean(y_true == y_pred))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype="float64")
    den = np.asarray(den, dtype="float64")
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def recall_per_class(cm: np.ndarray) -> np.ndarray:
    """Recall of each class: diagonal / row sum (0 for a class with no samples)."""
    cm = np.asarray(cm)
    return _safe_div(np.diag(cm), cm.sum(axis=1))


def precision_per_class(cm: np.ndarray) -> np.ndarray:
    """Precision of each class: diagonal / column sum (0 for a never-predicted class)."""
    cm = np.asarray(cm)
    return _safe_div(np.diag(cm), cm.sum(axis=0))


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    p = precision_per_class(cm)
    r = recall_per_class(cm)
    return _safe_div(2 * p * r, p + r)


def macro_f1(cm: np.ndarray) -> float:
    return float(np.mean(f1_per_class(cm)))


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows with no samples stay 0)."""
    cm = np.asarray(cm, dtype="float64")
    return _safe_div(cm, cm.sum(axis=1, keepdims=True))


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str] = LABELS
) -> dict:
    """Accuracy, macro-F1, per-class recall/precision/F1/support and the confusion matrix.

    `probs` (N, K) are scored by argmax. Returns a JSON-ready dict.
    """
    probs = np.asarray(probs)
    y_true = np.asarray(y_true, dtype="int64")
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"probs {probs.shape} do not match y {y_true.shape}")
    k = len(labels)
    if probs.shape[1] != k:
        raise ValueError(f"probs have {probs.shape[1]} classes, expected {k}")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    recall = recall_per_class(cm)
    precision = precision_per_class(cm)
    f1 = f1_per_class(cm)
    support = cm.sum(axis=1)
    return {
        "n": int(y_true.shape[0]),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            label: {
                "recall": float(recall[i]),
                "precision": float(precision[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }


def evaluate_probs(
    y_true: np.ndarray,
    probs: np.ndarray,
    probs_flip: np.ndarray | None = None,
    *,
    tta: bool = True,
    labels: Sequence[str] = LABELS,
) -> dict:
    """Full metrics for the chosen mode plus both accuracies side by side.

    The top-level metrics (accuracy, macro_f1, per_class, confusion_matrix)
    are those of the chosen mode (`tta` needs `probs_flip`); `accuracy_plain`,
    `accuracy_tta`, `macro_f1_plain`, `macro_f1_tta` are always both given when
    `probs_flip` exists (the TTA ones are None without it).
    """
    use_tta = bool(tta and probs_flip is not None)
    plain = classification_metrics(y_true, combine_tta(probs, None, False), labels)
    with_tta = (
        classification_metrics(y_true, combine_tta(probs, probs_flip, True), labels)
        if probs_flip is not None
        else None
    )
    chosen = with_tta if use_tta else plain
    out = dict(chosen)
    out["tta"] = use_tta
    out["accuracy_plain"] = plain["accuracy"]
    out["macro_f1_plain"] = plain["macro_f1"]
    out["accuracy_tta"] = with_tta["accuracy"] if with_tta else None
    out["macro_f1_tta"] = with_tta["macro_f1"] if with_tta else None
    return out
