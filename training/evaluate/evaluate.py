"""Evaluate saved models / run folders on one split, with and without flip TTA.

A *target* (`training.core.runs.resolve_target`) is either a run folder (its
``predictions/<split>.npz`` is reused, or computed from ``best.keras`` and saved there)
or a bare ``.keras`` file. Keras/TensorFlow are imported only when a model really has
to be run, so everything that works from saved predictions stays light.
"""

from __future__ import annotations

from pathlib import Path

from contract import LABELS, SPLIT_TITLES, utc_now
from training.core.errors import FerError
from training.core.metrics import combine_tta, evaluate_probs, ferplus_scores
from training.core.report import pct, text_table, write_json
from training.core.runs import (
    Predictions,
    Target,
    load_predictions,
    normalise_split,
    save_predictions,
    split_title,
)
from training.data.ferplus import FerPlusVotes
from training.data.splits import SplitLoader
from training.models.predict import predict_split
from training.models.serialization import load_model

# --------------------------------------------------------------------------- evaluation


def get_predictions(
    target: Target,
    split: str,
    data_loader: SplitLoader | None,
    *,
    batch_size: int = 256,
    model_cache: dict | None = None,
) -> tuple[Predictions, str]:
    """Predictions of `target` on `split` and where they came from ("saved"/"computed").

    A run folder's predictions/<split>.npz is reused if present, else computed
    from best.keras and saved there. Needs `data_loader` only to compute.
    """
    split = normalise_split(split)
    saved = target.predictions_path(split)
    if saved is not None and saved.is_file():
        return load_predictions(saved), "saved"
    if not target.model_path.is_file():
        raise FerError(
            f"{target.run_dir or target.model_path}: no predictions/{split}.npz and no best.keras "
            f"to compute them; run `fer-hybrid evaluate {target.run_dir or target.model_path} "
            f"--split {split}` where the model is available"
        )
    if data_loader is None:
        raise FerError(
            f"{target.run_dir or target.model_path} has no predictions for {split_title(split)}; "
            f"run `fer-hybrid evaluate {target.run_dir or target.model_path} --split {split}` first"
        )
    x, y = data_loader(split)
    model = None if model_cache is None else model_cache.get(target.model_path)
    if model is None:
        model = load_model(target.model_path, float32=True)  # scores what ships
        if model_cache is not None:
            model_cache[target.model_path] = model
    preds = predict_split(model, x, y, batch_size=batch_size).check(str(target.model_path))
    if saved is not None:
        save_predictions(saved, preds)
    return preds, "computed"


def default_out_dir(target: Target) -> Path:
    if target.run is not None:
        return target.run.evaluation_dir
    return target.model_path.parent / f"{target.model_path.stem}_evaluation"


def evaluate_target(
    target: Target,
    split: str = "test",
    *,
    tta: bool = True,
    out_dir: Path | None = None,
    data_loader: SplitLoader | None = None,
    batch_size: int = 256,
    votes: FerPlusVotes | None = None,
) -> dict:
    """Score one target on one split and write its reports.

    With `votes` (the split's FER+ votes, `training.data.ferplus.votes_for_split`) the result
    also has "ferplus": agreement with the ten-annotator majority, plain and with flip TTA.

    Writes into `out_dir` (default <run>/evaluation/): metrics_<split>.json,
    confusion_<split>.png and confusion_<split>.json. Returns the metrics dict
    (with "files" listing what was written).
    """
    from training.core.plots import write_confusion

    split = normalise_split(split)
    preds, origin = get_predictions(target, split, data_loader, batch_size=batch_size)
    metrics = evaluate_probs(preds.y, preds.probs, preds.probs_flip, tta=tta)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(target)
    result = {
        "schema": "fer-hybrid/evaluation@1",
        "created": utc_now(),
        "target": target.name,
        "model": str(target.model_path),
        "run_dir": str(target.run_dir) if target.run_dir is not None else None,
        "split": split,
        "split_name": SPLIT_TITLES[split],
        "predictions": origin,
        "labels": list(LABELS),
        **metrics,
        "ferplus": ferplus_metrics(preds, votes) if votes is not None else None,
    }
    mode = "flip TTA" if metrics["tta"] else "no TTA"
    files = {"metrics": out_dir / f"metrics_{split}.json"}
    files.update(write_confusion(
        metrics["confusion_matrix"], out_dir, split, tta=metrics["tta"],
        title=f"{target.name}: {SPLIT_TITLES[split]} ({mode}), acc {pct(metrics['accuracy'])}"))
    result["files"] = {k: str(v) for k, v in files.items()}
    write_json(files["metrics"], result)
    return result


def ferplus_metrics(preds: Predictions, votes: FerPlusVotes) -> dict:
    """FER+ majority agreement and mean vote share of the predictions, plain and flip TTA
    (or a "note" saying why not, when the predictions are not the split's rows)."""
    tta = combine_tta(preds.probs, preds.probs_flip, True) if preds.probs_flip is not None else None
    return ferplus_scores(preds.probs, tta, votes, labels=preds.y)


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
    lines.append(f"  per class ({mode}):")
    rows = [
        [label, pct(v["recall"], 1), pct(v["precision"], 1), pct(v["f1"], 1), v["support"]]
        for label, v in result["per_class"].items()
    ]
    table = text_table(["class", "recall", "precision", "F1", "support"], rows)
    lines.extend("    " + line for line in table.splitlines())
    return "\n".join(lines)
