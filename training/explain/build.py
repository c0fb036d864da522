"""`explain_target`: scores a target on a split, analyses its errors, maps where it looks, and
writes the report (explain.html, explain.json, confusion_<split>.png/json,
class_saliency_<split>.png) into one folder.

Order of work: predictions (a run folder's saved ones when present, as `evaluate` uses them)
-> confusion and pairs -> the images that need saliency maps (up to `maps_per_class` per true
class for the class averages, plus every gallery image) -> maps -> figures -> report.
Rows of a `--sample` keep their index into the full split, so explain.json can name them.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import LABELS, SPLIT_TITLES, utc_now
from contract.files import atomic_write
from training.core.errors import FerError
from training.core.metrics import evaluate_probs
from training.core.plots import write_confusion
from training.core.report import write_json
from training.core.runs import Predictions
from training.core.splits import normalise_split
from training.data.splits import SplitLoader, stratified_indices
from training.evaluate.scorer import Source, load_scorer, scored_predictions
from training.explain.analysis import (
    NAMED_PAIRS,
    confident_mistakes,
    confused_pairs,
    named_pairs,
    pair_examples,
)
from training.explain.figures import class_average_figure, overlay, tile_png
from training.explain.report import render_html
from training.explain.saliency import PATCH, STRIDE, GradCam, occlusion_maps, peak, with_flip_tta

METHODS = ("occlusion", "gradcam", "both")
SCHEMA = "fer-hybrid/explain@1"


@dataclass
class ExplainOptions:
    """What to explain and how much of it (the command's options)."""

    split: str = "test"
    sample: int | None = None  # stratified subsample of the split (quick runs)
    gallery: int = 12  # images per gallery (surest mistakes; each confused pair)
    pairs: int = 3  # confused pairs that get a gallery
    method: str | None = None  # None: both where Keras layers exist, else occlusion
    maps_per_class: int = 50  # images per true class averaged into the class maps
    gradcam_layer: str | None = None  # None: the last convolutional feature map
    tta: bool | None = None  # None: as the target is scored (manifest / on)
    batch_size: int = 256
    seed: int = 0

    def check(self) -> None:
        for name in ("gallery", "pairs", "maps_per_class"):
            if getattr(self, name) < 0:
                raise FerError(f"--{name.replace('_', '-')} must be >= 0")
        if self.sample is not None and self.sample < 1:
            raise FerError("--sample must be >= 1")
        if self.batch_size < 1:
            raise FerError("--batch-size must be >= 1")


def saliency_methods(source: Source, method: str | None) -> tuple[str, ...]:
    """The maps to draw: ("occlusion",), ("gradcam",) or both; FerError if impossible."""
    if method is None:
        return ("occlusion", "gradcam") if source.has_keras else ("occlusion",)
    m = method.strip().lower()
    if m not in METHODS:
        raise FerError(f"unknown --method {method!r}; use one of {', '.join(METHODS)}")
    wanted = ("occlusion", "gradcam") if m == "both" else (m,)
    if "gradcam" in wanted and not source.has_keras:
        raise FerError(f"Grad-CAM needs Keras layers, and {source.path} holds TF.js graph models "
                       "(weights without layers); use --method occlusion")
    return wanted


def default_out_dir(source: Source) -> Path:
    """<run>/explain for a run folder (git-ignored with runs/), else reports/explain-<name>."""
    if source.kind == "run":
        return source.target.run.explain_dir
    return Path("reports") / f"explain-{source.name}"


# --------------------------------------------------------------------------- predictions


def _predictions(source: Source, split: str, loader: SplitLoader, rows: np.ndarray,
                 x: np.ndarray, y: np.ndarray, opts: ExplainOptions):
    """(Predictions on `rows`, Scorer, "saved"/"computed")."""
    model_cache: dict = {}
    if source.kind == "run":
        from training.models.predict import get_predictions

        full, origin = get_predictions(source.target, split, loader,
                                       batch_size=opts.batch_size, model_cache=model_cache)
        _, y_all = loader(split)
        if full.n != len(y_all) or not np.array_equal(full.y, y_all):
            raise FerError(f"{source.target.predictions_path(split)} does not match the dataset's "
                           f"{split} split (other images or labels); delete it to recompute it")
        preds = Predictions(full.probs[rows], full.probs_flip[rows], full.y[rows])
        scorer = load_scorer(source, batch_size=opts.batch_size,
                             model=model_cache.get(source.target.model_path))
        return preds, scorer, origin
    scorer = load_scorer(source, batch_size=opts.batch_size)
    return scored_predictions(scorer, x, y).check(str(source.path)), scorer, "computed"


# --------------------------------------------------------------------------- saliency


def _saliency(scorer, x: np.ndarray, true: np.ndarray, pred: np.ndarray, methods, *,
              tta: bool, progress: bool, layer: str | None = None) -> tuple[dict, dict]:
    """{method: {"true": (n,H,W), "pred": (n,H,W)}} and what each method was run with."""
    maps, info = {}, {}
    # cut the model first: a --gradcam-layer that does not work fails before the slow part
    cam = GradCam(scorer.keras_model, layer) if "gradcam" in methods else None
    if "occlusion" in methods:
        predict = with_flip_tta(scorer.predict) if tta else scorer.predict
        occ = occlusion_maps(predict, x, progress=progress)
        at = np.arange(len(x))
        maps["occlusion"] = {"true": occ[at, true], "pred": occ[at, pred]}
        info["occlusion"] = {"patch": PATCH, "stride": STRIDE, "fill": "image mean",
                             "units": "drop of the class probability"}
    if cam is not None:
        maps["gradcam"] = {"true": cam(x, true, tta=tta), "pred": cam(x, pred, tta=tta)}
        info["gradcam"] = {"layer": cam.layer.name, "map_size": list(cam.map_size),
                           "score": "log p(class)", "units": "scaled to max 1 per image"}
    return maps, info


def _map_summary(avg: np.ndarray) -> dict:
    """Numbers for one class-average map: its peak and the share of evidence above mid-face."""
    pos = np.maximum(avg, 0)
    total = float(pos.sum())
    upper = float(pos[: pos.shape[0] // 2].sum())
    return {"peak": list(peak(avg)), "upper_half_share": upper / total if total > 0 else None}


# --------------------------------------------------------------------------- the whole run


def explain_target(source: Source, loader: SplitLoader, opts: ExplainOptions, out_dir: Path, *,
                   methods: tuple[str, ...] | None = None, progress: bool = False) -> dict:
    """Analyse and explain `source` on `opts.split`; write the report into `out_dir`.

    Returns the explain.json document (plus "files": what was written).
    """
    started = time.monotonic()
    opts.check()
    split = normalise_split(opts.split)
    methods = methods or saliency_methods(source, opts.method)
    tta = source.default_tta if opts.tta is None else bool(opts.tta)

    x_all, y_all = loader(split)
    if not len(y_all):
        raise FerError(f"the {split} split is empty; pick another --split")
    rows = stratified_indices(y_all, opts.sample, opts.seed)  # indices into the split
    x, y = np.asarray(x_all[rows]), np.asarray(y_all[rows], "int64")
    preds, scorer, origin = _predictions(source, split, loader, rows, x, y, opts)
    t_predict = time.monotonic()
    probs = preds.scored(tta)
    pred = probs.argmax(axis=1)

    metrics = evaluate_probs(y, preds.probs, preds.probs_flip, tta=tta)
    cm = np.asarray(metrics["confusion_matrix"])
    top_pairs = confused_pairs(cm, top=10)
    mistakes = confident_mistakes(y, probs, opts.gallery, index=rows)
    galleries = [{"true": p["true"], "pred": p["pred"], "count": p["count"], "rate": p["rate"],
                  "examples": pair_examples(y, probs, p["true"], p["pred"], opts.gallery,
                                            index=rows)}
                 for p in top_pairs[:opts.pairs]]

    # Which rows get maps: a seeded draw per true class for the averages, plus the galleries.
    rng = np.random.default_rng(opts.seed)
    class_rows = []
    for c in range(len(LABELS)):
        members = np.flatnonzero(y == c)
        take = min(opts.maps_per_class, len(members))
        class_rows.append(np.sort(rng.choice(members, size=take, replace=False)))
    position = {int(r): i for i, r in enumerate(rows)}
    shown = [position[e["index"]] for e in mistakes]
    shown += [position[e["index"]] for g in galleries for e in g["examples"]]
    selected = np.unique(np.concatenate([*class_rows, np.asarray(shown, "int64")])).astype(int)
    where = {int(r): i for i, r in enumerate(selected)}
    maps, saliency_info = _saliency(scorer, x[selected], y[selected], pred[selected], methods,
                                    tta=tta, progress=progress, layer=opts.gradcam_layer)
    t_maps = time.monotonic()

    out_dir = Path(out_dir)
    mode = "flip TTA" if tta else "no TTA"
    files = write_confusion(cm, out_dir, split, tta=tta, title=(
        f"{source.name}: {SPLIT_TITLES[split]} ({mode}), acc {100 * metrics['accuracy']:.2f}%"))

    counts = [len(r) for r in class_rows]
    faces = np.stack([x[r].astype("float32").mean(axis=0) if len(r) else
                      np.zeros(x.shape[1:], "float32") for r in class_rows])
    averages, per_class_maps = {}, {}
    for m in methods:
        averages[m] = np.stack([
            maps[m]["true"][[where[int(i)] for i in r]].mean(axis=0) if len(r) else
            np.zeros(x.shape[1:], "float32") for r in class_rows])
    for c, label in enumerate(LABELS):
        per_class_maps[label] = {"n_maps": counts[c]}
        for m in methods:
            per_class_maps[label][m] = _map_summary(averages[m][c]) if counts[c] else None
    recall = [metrics["per_class"][lab]["recall"] for lab in LABELS]
    files["class_saliency_png"] = class_average_figure(
        faces, {f"{m} (true class)": averages[m] for m in methods}, counts, recall,
        out_dir / f"class_saliency_{split}.png",
        title=f"{source.name}: where the model looks for each class (averages over true class)")

    def tile(index: int) -> str:
        i = where[position[index]]
        face = x[selected[i]]
        panels = [overlay(face, None)]
        for m in methods:
            panels += [overlay(face, maps[m]["pred"][i]), overlay(face, maps[m]["true"][i])]
        return base64.b64encode(tile_png(panels)).decode("ascii")

    tiles = {e["index"]: tile(e["index"])
             for e in [*mistakes, *(e for g in galleries for e in g["examples"])]}

    result = {
        "schema": SCHEMA,
        "created": utc_now(),
        "target": source.name,
        "kind": source.kind,
        "path": str(source.path),
        "split": split,
        "split_name": SPLIT_TITLES[split],
        "predictions": origin,
        "n": int(len(y)),
        "n_split": int(len(y_all)),
        "sample": opts.sample,
        "seed": opts.seed,
        "tta": tta,
        "labels": list(LABELS),
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "accuracy_plain": metrics["accuracy_plain"],
        "accuracy_tta": metrics["accuracy_tta"],
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "top_pairs": top_pairs,
        "named_pairs": named_pairs(cm, NAMED_PAIRS),
        "confident_mistakes": mistakes,
        "pair_galleries": galleries,
        "saliency": {"methods": list(methods), **saliency_info,
                     "maps_per_class": opts.maps_per_class, "images_mapped": int(len(selected)),
                     "classes": per_class_maps},
        # a sample's rows, as indices into the split (numbers only: no pixels leave the data)
        "indices": rows.tolist() if opts.sample is not None and len(rows) < len(y_all) else None,
        "seconds": {"predictions": round(t_predict - started, 1),
                    "saliency": round(t_maps - t_predict, 1)},
    }
    files["json"] = out_dir / "explain.json"
    files["html"] = out_dir / "explain.html"
    images = {
        "confusion": base64.b64encode(files["confusion_png"].read_bytes()).decode("ascii"),
        "classes": base64.b64encode(files["class_saliency_png"].read_bytes()).decode("ascii"),
        "tiles": tiles,
    }
    result["seconds"]["total"] = round(time.monotonic() - started, 1)
    result["files"] = {k: str(v) for k, v in files.items()}
    atomic_write(files["html"], render_html(result, images))
    write_json(files["json"], result)
    return result
