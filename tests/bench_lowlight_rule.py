"""Which thresholds of the page's low-light rule cost least on clean crops and help most in the dark
(a report, not a test; choose on PublicTest, never on PrivateTest).

    python tests/bench_lowlight_rule.py [--models models] [--split PublicTest] [--data-dir ../shared/data]

Scores the exported models (their members soft-voted, flip TTA, as the page runs them) on the
split's clean crops and under the robustness benchmark's lighting conditions, once per rule:
`off`, and (equalise below mean M, stretch below 2-98 % range R) for a few (M, R); R = 0 never
stretches. Prints one line per condition; `--out FILE` also writes the table as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = {"off": None, "70/110 (the rule before 2026-12-03)": (70, 110), "70/0": (70, 0), "50/0": (50, 0),
         "40/0": (40, 0), "50/60": (50, 60), "40/80": (40, 80)}
CONDITIONS = [("clean", 0), ("low_light", 1), ("low_light", 2), ("low_light", 3), ("night", 1),
              ("night", 2), ("night", 3), ("over_exposure", 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--split", default="PublicTest", choices=["PublicTest", "PrivateTest"])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the table")
    args = ap.parse_args()

    from training.data.fer2013 import USAGES, load_fer2013_csv
    from training.evaluate.scorer import resolve_source
    from training.robustness import lowlight
    from training.robustness.perturb import perturb
    from training.robustness.robustness import page_classifier

    data = load_fer2013_csv(args.data_dir / "fer2013.csv.gz")
    keep = data.usage == USAGES.index(args.split)
    x, y = data.x[keep].astype("uint8"), data.y[keep]
    classify = page_classifier(resolve_source(args.models), tta=True)
    table: dict[str, dict[str, float]] = {}
    for name, severity in CONDITIONS:
        crops = x if severity == 0 else perturb(x, name, severity, seed=0)
        for rule, thresholds in RULES.items():
            seen = crops if thresholds is None else lowlight.normalize_batch(
                crops, dark_mean=thresholds[0], min_range=thresholds[1])[0]
            acc = float((classify(seen).argmax(1) == y).mean())
            table.setdefault(rule, {})[f"{name}{severity or ''}"] = round(100 * acc, 2)
        print(f"{name} {severity}:", {rule: table[rule][f"{name}{severity or ''}"] for rule in RULES},
              flush=True)
    if args.out:
        args.out.write_text(json.dumps({"split": args.split, "models": str(args.models),
                                        "accuracy_flip_tta": table}, indent=1))


if __name__ == "__main__":
    main()
