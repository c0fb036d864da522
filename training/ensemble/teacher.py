"""An ensemble's soft targets on the training images (`ensemble --save-soft-targets FILE`).

The ensemble report (`training.ensemble.ensemble.build_ensemble`) has already chosen the weights and
the TTA setting on PublicTest; this runs the members with a positive weight on the TRAINING
split and combines them with the same `weighted_average` the report scored, so the file
holds exactly the teacher the report describes. The file format is `training.fit.soft_targets`.

The training split is loaded with the data options of the first selected member's
config.json (`data` and `seed`, exactly as `fer-hybrid train` loaded it), with any option the
command line gives laid over them; members given as bare .keras files have no config and
take the defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from contract.files import sha256_file
from training.core.errors import FerError
from training.core.runs import RunFolder, resolve_target
from training.ensemble.voting import weighted_average
from training.fit import soft_targets

log = logging.getLogger(__name__)


def selected_members(report: dict) -> list[dict]:
    """The report's members with a positive weight (the others do not vote)."""
    chosen = [m for m in report["members"] if m["weight"] > 0]
    if not chosen:  # pragma: no cover - build_ensemble guarantees a positive sum
        raise FerError("the ensemble selected no member; nothing to write soft targets for")
    return chosen


def data_options(report: dict, overrides: dict) -> tuple[dict, int]:
    """(load_splits keywords, seed) of the training split the soft targets are made on."""
    data, seed = {}, 0
    for m in selected_members(report):
        run = RunFolder(m["path"])
        if run.config.is_file():
            config = run.read_config()
            data, seed = dict(config.get("data") or {}), int(config.get("seed") or 0)
            break
    data.update({k: v for k, v in overrides.items() if v is not None})
    return {k: v for k, v in data.items() if v not in (None, [], "")}, seed


def ensemble_probs(report: dict, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """(N, 7) float64: the report's soft vote (its weights and TTA choice) on images `x`."""
    from training.models.predict import predict_split
    from training.models.serialization import load_model

    probs, weights = [], []
    for m in selected_members(report):
        model = load_model(resolve_target(m["path"]).model_path)  # FerError without best.keras
        preds = predict_split(model, x, np.zeros(len(x), "int64"), batch_size=batch_size)
        probs.append(preds.check(m["path"]).scored(report["tta_flip"]))
        weights.append(m["weight"])
    return weighted_average(probs, weights)


def save_ensemble_soft_targets(report: dict, out: str | Path, *, overrides: dict | None = None,
                               batch_size: int = 256) -> soft_targets.SoftTargets:
    """Run the report's ensemble on the training split and write the soft-target file."""
    from training.data import load_splits

    data, seed = data_options(report, overrides or {})
    train = load_splits(**data, seed=seed)["train"]
    if not len(train):
        raise FerError("the training split is empty; check the data options")
    keys = soft_targets.image_keys(train.x)
    # Predict each distinct image once (FER2013 has exact duplicates): same pixels, same vote.
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    probs = ensemble_probs(report, train.x[first], batch_size=batch_size)[inverse.reshape(-1)]
    sources, counts = np.unique(train.source, return_counts=True)
    meta = {
        "method": report["method"],
        "tta": bool(report["tta_flip"]),
        "selection": report["selection"]["method"],
        "members": [{"name": m["name"], "path": m["path"], "weight": m["weight"],
                     "model_sha256": sha256_file(resolve_target(m["path"]).model_path)}
                    for m in selected_members(report)],
        "val_accuracy": report["ensemble"]["val"]["accuracy_tta" if report["tta_flip"]
                                                  else "accuracy"],
        "data": {**data, "seed": seed},
        "sources": {str(s): int(c) for s, c in zip(sources, counts)},
    }
    targets = soft_targets.from_images(train.x, probs, meta)
    soft_targets.save(out, targets)
    return targets
