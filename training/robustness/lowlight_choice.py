"""The page's low-light threshold for one models folder, chosen on PublicTest only.

The page histogram-equalises a face crop whose mean grey level is below the manifest's
`ensemble.equalize_below` (web/js/lowlight.js, ported in `lowlight`). Whether that helps depends
on the models: the first shipped network lost up to 9 points in the dark without it, while an
ensemble with a member trained on the low-light augmentation scored better on dark crops as they
are (PublicTest, flip TTA: 68.6 vs 68.3 % at mild low light, 55.9 vs 49.2 % at severe, 53.1 vs
49.4 % at mild night with the former threshold 40). So the threshold is fitted per models folder,
like the temperature, by `fer-hybrid calibrate --lowlight choose`.

The choice: each candidate is scored on the split's clean crops and under the robustness
benchmark's darkening conditions (low light and night, every severity, the benchmark's seed); the
candidates that cost at most `CLEAN_TOLERANCE` on clean crops are eligible, and of those the one
with the best mean accuracy in the dark wins (a tie: the lower threshold, which touches fewer
crops). Equalisation does not depend on the threshold, so every condition needs one pass through
the models for its crops as they are and one for the crops darker than the highest candidate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.robustness.lowlight import normalize_batch
from training.robustness.perturb import perturb

#: Thresholds tried (0: never equalise; 40: the page's rule before the choice existed).
CANDIDATES = (0, 20, 30, 40, 50, 70)
DARK_CONDITIONS = (("low_light", 1), ("low_light", 2), ("low_light", 3),
                   ("night", 1), ("night", 2), ("night", 3))
#: Clean accuracy a threshold may cost and still be chosen (a fraction: 0.1 point).
CLEAN_TOLERANCE = 0.001


def _key(name: str, severity: int) -> str:
    return name if severity == 0 else f"{name}{severity}"


def score_thresholds(classify: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
                     *, candidates=CANDIDATES, conditions=DARK_CONDITIONS, seed: int = 0,
                     log: Callable[[str], None] = lambda _: None) -> dict[int, dict[str, float]]:
    """{threshold: {"clean": accuracy, "low_light1": ..., ...}} on uint8 crops `x` (N, H, W)."""
    y = np.asarray(y)
    top = max(candidates)
    table: dict[int, dict[str, float]] = {t: {} for t in candidates}
    for name, severity in (("clean", 0), *conditions):
        crops = x if severity == 0 else perturb(x, name, severity, seed)
        correct = classify(crops).argmax(1) == y
        means = crops.reshape(len(crops), -1).sum(axis=1, dtype="int64") / crops[0].size
        dark = means < top
        correct_eq = correct.copy()
        if dark.any():
            equalised, _ = normalize_batch(crops[dark], dark_mean=top, min_range=0)
            correct_eq[dark] = classify(equalised).argmax(1) == y[dark]
        for t in candidates:
            applied = means < t
            table[t][_key(name, severity)] = float(np.where(applied, correct_eq, correct).mean())
        log(f"  {_key(name, severity)}: " + ", ".join(
            f"{t}: {100 * table[t][_key(name, severity)]:.2f} %" for t in candidates))
    return table


def choose(table: dict[int, dict[str, float]], tolerance: float = CLEAN_TOLERANCE) -> int:
    """The threshold to ship from `score_thresholds`' table (see the module's docstring)."""
    best_clean = max(row["clean"] for row in table.values())
    eligible = [t for t, row in table.items() if row["clean"] >= best_clean - tolerance - 1e-12]

    def dark_mean(t: int) -> float:
        dark = [v for k, v in table[t].items() if k != "clean"]
        return sum(dark) / len(dark) if dark else 0.0

    return min(eligible, key=lambda t: (-round(dark_mean(t), 12), t))


def markdown(result: dict) -> str:
    """The table the choice was made from, one row per threshold, the chosen one in bold."""
    table = {int(t): row for t, row in result["table"].items()}
    columns = list(next(iter(table.values())).keys())
    lines = [f"Low-light threshold chosen on {result['split_name']} ({result['n']:,} images, flip "
             f"TTA as the manifest says): equalise a face crop whose mean grey level is below "
             f"**{result['equalize_below']}**" + (" (0: never)" if result["equalize_below"] == 0
                                                   else "") + ". Accuracy in %:", "",
             "| threshold | " + " | ".join(columns) + " | dark mean |",
             "| ---: | " + " | ".join("---:" for _ in columns) + " | ---: |"]
    for t, row in sorted(table.items()):
        dark = [v for k, v in row.items() if k != "clean"]
        cells = [f"{100 * row[c]:.2f}" for c in columns] + [f"{100 * sum(dark) / len(dark):.2f}"]
        name = "0 (never)" if t == 0 else str(t)
        if t == result["equalize_below"]:
            name, cells = f"**{name}**", [f"**{c}**" for c in cells]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
