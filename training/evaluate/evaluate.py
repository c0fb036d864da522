"""Evaluate saved models / run folders on one split, with and without flip TTA.

A *target* (`training.evaluate.scorer.resolve_source`, as explain and robustness take it) is
a run folder (its ``predictions/<split>.npz`` is reused, or computed from ``best.keras`` and
saved there), a bare ``.keras`` file, or an exported models folder (its manifest's TF.js
members soft-voted as the page does). Keras/TensorFlow are imported only when a model really has
to be run, so everything that works from saved predictions stays light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract import LABELS, SPLIT_TITLES, utc_now
from contract.review import HOLDOUT_TITLE
from training.core.errors import FerError
from training.core.metrics import evaluate_probs
from training.core.report import pct, text_table, write_json
from training.core.runs import Target
from training.core.splits import normalise_split
from training.data.ferplus import FerPlusVotes
from training.data.ferplus_agreement import ferplus_metrics
from training.data.splits import SplitLoader
from training.evaluate.scorer import Source, load_scorer, scored_predictions
from training.models.custom_holdout import format_holdout, score_holdout, too_few
from training.models.predict import get_predictions

# --------------------------------------------------------------------------- evaluation


def target_holdout(target: Source, x: np.ndarray, y: np.ndarray, *,
                   batch_size: int = 256) -> dict:
    """The target's "custom_holdout" summary: scored only when the holdout holds enough faces
    (the model is not loaded otherwise), with the target's own scorer (a models folder is run
    as the page runs it)."""
    if too_few(len(y)):
        return score_holdout(None, x, y)
    if target.manifest is None and not target.target.model_path.is_file():
        return {**score_holdout(None, x, y), "note": f"no model file to score the {HOLDOUT_TITLE} "
                "with (a run folder with saved predictions only)"}
    scorer = load_scorer(target, batch_size=batch_size)

    def both(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds = scored_predictions(scorer, images, y)
        return preds.probs, preds.probs_flip

    return score_holdout(both, x, y)


def default_out_dir(target: Target | Source) -> Path:
    if isinstance(target, Source):
        if target.manifest is not None:
            return target.path / "evaluation"
        target = target.target
    if target.run is not None:
        return target.run.evaluation_dir
    return target.model_path.parent / f"{target.model_path.stem}_evaluation"


def evaluate_target(
    target: Target | Source,
    split: str = "test",
    *,
    tta: bool = True,
    out_dir: Path | None = None,
    data_loader: SplitLoader | None = None,
    batch_size: int = 256,
    votes: FerPlusVotes | None = None,
    holdout: dict | None = None,
) -> dict:
    """Score one target on one split and write its reports.

    With `votes` (the split's FER+ votes, `training.data.ferplus.votes_for_split`) the result
    also has "ferplus": agreement with the ten-annotator majority, plain and with flip TTA.
    `holdout` (`target_holdout`) goes into the result as "custom_holdout".

    Writes into `out_dir` (default <run>/evaluation/): metrics_<split>.json,
    confusion_<split>.png and confusion_<split>.json. Returns the metrics dict
    (with "files" listing what was written).
    """
    from training.core.plots import write_confusion

    split = normalise_split(split)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(target)
    if isinstance(target, Source) and target.manifest is not None:
        if data_loader is None:
            raise FerError(f"{target.path}: a models folder is scored on the images; give the "
                           "data")
        x, y = data_loader(split)
        scorer = load_scorer(target, batch_size=batch_size)
        preds, origin = scored_predictions(scorer, x, y).check(str(target.path)), "computed"
        model, run_dir = target.path, None
    else:
        target = target.target if isinstance(target, Source) else target
        preds, origin = get_predictions(target, split, data_loader, batch_size=batch_size)
        model, run_dir = target.model_path, target.run_dir
    metrics = evaluate_probs(preds.y, preds.probs, preds.probs_flip, tta=tta)
    result = {
        "schema": "fer-hybrid/evaluation@1",
        "created": utc_now(),
        "target": target.name,
        "model": str(model),
        "run_dir": str(run_dir) if run_dir is not None else None,
        "split": split,
        "split_name": SPLIT_TITLES[split],
        "predictions": origin,
        "labels": list(LABELS),
        **metrics,
        "ferplus": ferplus_metrics(preds, votes) if votes is not None else None,
        "custom_holdout": holdout,
    }
    mode = "flip TTA" if metrics["tta"] else "no TTA"
    files = {"metrics": out_dir / f"metrics_{split}.json"}
    files.update(write_confusion(
        metrics["confusion_matrix"], out_dir, split, tta=metrics["tta"],
        title=f"{target.name}: {SPLIT_TITLES[split]} ({mode}), acc {pct(metrics['accuracy'])}"))
    result["files"] = {k: str(v) for k, v in files.items()}
    write_json(files["metrics"], result)
    return result


def format_summary(result: dict) -> str:
    """A readable terminal summary of one evaluate_target result."""
    mode = "flip TTA" if result["tta"] else "no TTA"
    lines = [
        (
            f"{result['target']} on {result['split']} ({result['split_name']}), "
            f"{result['n']} images [predictions {result['predictions']}]"
        ),
        f"  accuracy  no TTA {pct(result['accuracy_plain'])}   flip TTA {pct(result['accuracy_tta'])}",
        f"  macro-F1  no TTA {pct(result['macro_f1_plain'])}   flip TTA {pct(result['macro_f1_tta'])}",
    ]
    fp = result.get("ferplus")
    if fp and "note" in fp:
        lines.append(f"  FER+ agreement {fp['note']}")
    elif fp:
        tta = fp["tta"] or {}
        lines.append(
            f"  FER+ majority agreement  no TTA {pct(fp['plain']['majority_agreement'])}   "
            f"flip TTA {pct(tta.get('majority_agreement'))}   "
            f"(mean vote share {pct((tta or fp['plain'])['mean_vote_share'])}; "
            f"{fp['plain']['n']} rows whose top vote is one of the 7 classes; ties agree)"
        )
    if result.get("custom_holdout"):
        lines.append(f"  {format_holdout(result['custom_holdout'])}")
    lines.append(f"  per class ({mode}):")
    rows = [
        [label, pct(v["recall"], 1), pct(v["precision"], 1), pct(v["f1"], 1), v["support"]]
        for label, v in result["per_class"].items()
    ]
    table = text_table(["class", "recall", "precision", "F1", "support"], rows)
    lines.extend("    " + line for line in table.splitlines())
    return "\n".join(lines)
