"""Soft voting with weights: the ensemble's one formula, what the page computes over its members'
probabilities, and the --weights option's numbers checked.

Apart from member selection and reports (`training.ensemble.ensemble`) because export and the
scorer need only this: numpy and `FerError`, no data, no run folders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.core.errors import FerError


def weighted_average(probs_list: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Soft voting: sum_i w_i * p_i / sum_i w_i, over members' (N, K) probabilities."""
    if len(probs_list) != len(weights):
        raise ValueError(f"{len(probs_list)} members but {len(weights)} weights")
    w = np.asarray(weights, dtype="float64")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    total = np.zeros_like(np.asarray(probs_list[0], dtype="float64"))
    for p, wi in zip(probs_list, w):
        if wi:
            total += wi * np.asarray(p, dtype="float64")
    return total / w.sum()


def check_weights(weights: Sequence[float], count: int, *, allow_zero: bool) -> list[float]:
    """One finite soft-voting weight per member, with a positive sum; FerError otherwise.

    allow_zero: a zero weight leaves a member out (an ensemble report may); every member an
    export ships must count, so there weights must be > 0.
    """
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise FerError(f"--weights has {len(weights)} values but there are {count} members; "
                       "give exactly one weight per model")
    if any(not np.isfinite(w) or w < 0 or (w == 0 and not allow_zero) for w in weights) \
            or sum(weights) <= 0:
        raise FerError("--weights must be non-negative numbers with a positive sum"
                       if allow_zero else "weights must be positive numbers, e.g. --weights 1,1,0.5")
    return weights


def parse_numbers(text: str) -> list[float]:
    """'1,2,0.5' (the --weights option) -> [1.0, 2.0, 0.5]; FerError for anything else."""
    parts = [s.strip() for s in str(text).split(",") if s.strip()]
    try:
        return [float(s) for s in parts]
    except ValueError:
        raise FerError(f"--weights {text!r}: give comma-separated numbers, e.g. 1,2,1") from None


def parse_weights(text: str, count: int) -> list[float]:
    """--weights of an ensemble report: numbers, one per run, zero leaving a run out."""
    return check_weights(parse_numbers(text), count, allow_zero=True)
