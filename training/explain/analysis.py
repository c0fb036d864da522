"""Error analysis on arrays: which classes are confused with which, and the surest mistakes.

Pure numpy on labels `y` (N,) and scored probabilities `probs` (N, K) in LABELS order (the
flip-TTA mean when the target has it), so it runs on saved predictions alone. The confusion
counts themselves come from `training.core.metrics.confusion_matrix` (rows = true class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract import LABELS

#: The pairs the paper names as the hard ones; each is reported both ways.
NAMED_PAIRS = (("sad", "neutral"), ("fear", "surprise"), ("disgust", "angry"))


def _rate(count: int, support: int) -> float:
    return float(count) / support if support else 0.0


def _pair(cm: np.ndarray, support: np.ndarray, i: int, j: int,
          labels: Sequence[str]) -> dict:
    """One ordered pair: of the `support[i]` images of class i, `count` were predicted j."""
    count = int(cm[i, j])
    return {"true": labels[i], "pred": labels[j], "count": count,
            "support": int(support[i]), "rate": _rate(count, support[i])}


def confused_pairs(cm: np.ndarray, top: int = 10, *,
                   labels: Sequence[str] = LABELS) -> list[dict]:
    """The `top` most confused ordered pairs (true -> predicted), off the diagonal only.

    Ranked by count, the number of images the mistake costs; ties by rate (the share of the
    true class), then by label order so the ranking is deterministic. Pairs never confused
    are left out.
    """
    cm = np.asarray(cm, dtype="int64")
    support = cm.sum(axis=1)
    pairs = [_pair(cm, support, i, j, labels)
             for i in range(len(labels)) for j in range(len(labels))
             if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda p: (-p["count"], -p["rate"], labels.index(p["true"]),
                              labels.index(p["pred"])))
    return pairs[:top]


def named_pairs(cm: np.ndarray, pairs: Sequence[tuple[str, str]] = NAMED_PAIRS, *,
                labels: Sequence[str] = LABELS) -> list[dict]:
    """For each (a, b): a -> b and b -> a (count, support, rate) and the pair's joint rate.

    `joint_rate` = (a->b + b->a) / (support a + support b): the share of the pair's images
    that went to the other member of the pair.
    """
    cm = np.asarray(cm, dtype="int64")
    support = cm.sum(axis=1)
    out = []
    for a, b in pairs:
        i, j = labels.index(a), labels.index(b)
        ab, ba = _pair(cm, support, i, j, labels), _pair(cm, support, j, i, labels)
        out.append({"pair": f"{a}/{b}", "a_to_b": ab, "b_to_a": ba,
                    "joint_rate": _rate(ab["count"] + ba["count"], support[i] + support[j])})
    return out


def _example(index: int, y: int, probs: np.ndarray, labels: Sequence[str]) -> dict:
    pred = int(np.argmax(probs))
    return {"index": int(index), "true": labels[y], "pred": labels[pred],
            "prob_pred": float(probs[pred]), "prob_true": float(probs[y])}


def confident_mistakes(y: np.ndarray, probs: np.ndarray, k: int, *,
                       index: np.ndarray | None = None,
                       labels: Sequence[str] = LABELS) -> list[dict]:
    """The k wrong predictions with the highest predicted probability, surest first.

    `index` maps rows to indices into the split (a --sample keeps the split's numbering);
    each entry gives that index, the true and predicted label and both probabilities.
    """
    y = np.asarray(y, dtype="int64")
    probs = np.asarray(probs, dtype="float64")
    index = np.arange(len(y)) if index is None else np.asarray(index)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    # stable sort on -prob: equal probabilities keep split order, so the result is reproducible
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    return [_example(index[r], y[r], probs[r], labels) for r in order]


def pair_examples(y: np.ndarray, probs: np.ndarray, true: str, pred: str, k: int, *,
                  index: np.ndarray | None = None,
                  labels: Sequence[str] = LABELS) -> list[dict]:
    """Up to k images of class `true` predicted as `pred`, the most confident first."""
    y = np.asarray(y, dtype="int64")
    probs = np.asarray(probs, dtype="float64")
    index = np.arange(len(y)) if index is None else np.asarray(index)
    i, j = labels.index(true), labels.index(pred)
    rows = np.flatnonzero((y == i) & (probs.argmax(axis=1) == j))
    order = rows[np.argsort(-probs[rows, j], kind="stable")][:k]
    return [_example(index[r], y[r], probs[r], labels) for r in order]
