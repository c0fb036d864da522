"""Each tool's class order -> the project's (contract.LABELS, FER2013's), in one place.

The tools name their classes differently (face-api.js: 'fearful', 'disgusted', 'surprised', in
its own order); training/data/labelmap.py already knows every spelling, so a tool's output is
reordered by name, never by an assumed index."""

from __future__ import annotations

import numpy as np

from contract import LABELS
from training.core.errors import FerError
from training.data.labelmap import map_name


def column_order(tool_labels: list[str]) -> list[int]:
    """For each project class, the column of the tool's output that holds it."""
    mapped = [map_name(name, where="bench tool output") for name in tool_labels]
    if sorted(m for m in mapped if m is not None) != list(range(len(LABELS))):
        raise FerError(f"cannot map the tool's classes {tool_labels} onto {list(LABELS)}")
    return [mapped.index(i) for i in range(len(LABELS))]


def to_project_order(probs: np.ndarray, tool_labels: list[str]) -> np.ndarray:
    """(n, k) probabilities in the tool's order -> (n, 7) in contract.LABELS order."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs[:, column_order(tool_labels)]
