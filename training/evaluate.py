"""Evaluate saved models / run folders on one split, with and without flip TTA.

A *target* is either a run folder (``runs/<name>/`` with ``best.keras``; its
``predictions/<split>.npz`` is reused, or created and saved there) or a bare
``.keras`` file. Keras/TensorFlow are imported only when a model really has
to be run, so everything that works from saved predictions stays light.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import FerError
from training.labels import LABELS, NUM_CLASSES
from training.metrics import evaluate_probs
from training.report import atomic_save_npz, pct, text_table, utc_now, write_json
from training.serialization import register_custom_objects

SPLITS = ("test", "val", "train")
SPLIT_TITLES = {"test": "PrivateTest", "val": "PublicTest", "train": "Training"}
_SPLIT_ALIASES = {
    "test": "test",
    "privatetest": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "train": "train",
    "training": "train",
}

# split name -> (x uint8 (N,48,48), y int64 (N,))
DataLoader = Callable[[str], "tuple[np.ndarray, np.ndarray]"]


def normalise_split(split: str) -> str:
    """'test'/'PrivateTest' -> 'test', 'val'/'PublicTest' -> 'val', 'train' -> 'train'."""
    key = str(split).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise FerError(
            f"unknown split {split!r}; use one of test (PrivateTest), val (PublicTest), train"
        )
    return _SPLIT_ALIASES[key]


def split_title(split: str) -> str:
    split = normalise_split(split)
    return f"{split} ({SPLIT_TITLES[split]})"


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """Saved outputs of one model on one split (the run-folder prediction contract)."""

    probs: np.ndarray  # (N, 7) float32
    probs_flip: np.ndarray  # (N, 7) float32, on mirrored images
    y: np.ndarray  # (N,) int64

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def check(self, where: str) -> Predictions:
        """Validate shapes/labels; FerError naming `where` otherwise."""
        y = np.asarray(self.y)
        for name, arr in (("probs", self.probs), ("probs_flip", self.probs_flip)):
            arr = np.asarray(arr)
            if arr.ndim != 2 or arr.shape != (y.shape[0], NUM_CLASSES):
                raise FerError(
                    f"{where}: {name} has shape {arr.shape}, expected ({y.shape[0]}, {NUM_CLASSES}); "
                    "delete the file and re-run `fer-hybrid evaluate` to recompute it"
                )
            if not np.all(np.isfinite(arr)):
                raise FerError(
                    f"{where}: {name} contains NaN/inf; delete the file and recompute it"
                )
        if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= NUM_CLASSES)):
            raise FerError(
                f"{where}: y must be (N,) labels in 0..{NUM_CLASSES - 1}; delete the file and recompute it"
            )
        return self

    def scored(self, tta: bool) -> np.ndarray:
        """Probabilities to score: plain, or the flip-TTA mean."""
        if tta:
            return (self.probs.astype("float64") + self.probs_flip.astype("float64")) / 2.0
        return self.probs.astype("float64")


def load_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    if not path.is_file():
        raise FerError(f"predictions file {path} not found; run `fer-hybrid evaluate` to create it")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("probs", "probs_flip", "y") if k not in data.files]
            if missing:
                raise FerError(
                    f"{path}: missing arrays {missing} (need probs, probs_flip, y); "
                    "delete it and re-run `fer-hybrid evaluate` to recompute it"
                )
            preds = Predictions(
                probs=np.asarray(data["probs"], dtype="float32"),
                probs_flip=np.asarray(data["probs_flip"], dtype="float32"),
                y=np.asarray(data["y"]).astype("int64"),
            )
    except FerError:
        raise
    except Exception as err:  # corrupt zip, pickled arrays, ...
        raise FerError(
            f"cannot read predictions {path} ({err}); delete it and recompute it"
        ) from err
    return preds.check(str(path))


def save_predictions(path: str | Path, preds: Predictions) -> Path:
    return atomic_save_npz(
        path,
        probs=np.asarray(preds.probs, dtype="float32"),
        probs_flip=np.asarray(preds.probs_flip, dtype="float32"),
        y=np.asarray(preds.y, dtype="int64"),
    )


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """What to evaluate: a run folder (with best.keras) or a bare .keras file."""

    name: str
    model_path: Path
    run_dir: Path | None = None

    def predictions_path(self, split: str) -> Path | None:
        if self.run_dir is None:
            return None
        return self.run_dir / "predictions" / f"{normalise_split(split)}.npz"


def resolve_target(path: str | Path, *, need_model: bool = True) -> Target:
    """A run folder or a .keras file -> Target; FerError if it is neither.

    With `need_model=False` a run folder without best.keras is accepted (its
    saved predictions may still be enough, e.g. for CPU-only ensembling).
    """
    path = Path(path)
    if path.is_dir():
        model = path / "best.keras"
        if need_model and not model.is_file():
            raise FerError(
                f"run folder {path} has no best.keras; train it first (`fer-hybrid train`) "
                "or pass the path of a .keras file"
            )
        return Target(name=path.resolve().name, model_path=model, run_dir=path)
    if path.is_file():
        if path.suffix != ".keras":
            raise FerError(f"{path} is not a .keras model file or a run folder")
        return Target(name=path.stem, model_path=path, run_dir=None)
    raise FerError(f"{path} does not exist; pass a run folder (runs/<name>) or a .keras file")


def load_model(path: str | Path):
    """Load a .keras model (Keras imported lazily). FerError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FerError(f"model file {path} not found")
    import keras

    register_custom_objects()  # a training checkpoint may hold a Trainer and RandomErasing

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as err:
        raise FerError(f"cannot load model {path}: {err}") from err


def predict_split(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> Predictions:
    """Plain and mirrored probabilities of `model` on images `x`."""
    from training.predict import predict_probs

    probs = predict_probs(model, x, batch_size=batch_size, flip=False)
    probs_flip = predict_probs(model, x, batch_size=batch_size, flip=True)
    return Predictions(probs=probs, probs_flip=probs_flip, y=np.asarray(y, dtype="int64"))


# --------------------------------------------------------------------------- data


def make_data_loader(data_dir: Path | None = None, fer2013: Path | None = None) -> DataLoader:
    """A loader split -> (x, y) backed by `training.data.load_splits`, loading once.

    `data_dir` / `fer2013` are passed on to load_splits under whichever
    parameter names it accepts.
    """
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def load(split: str) -> tuple[np.ndarray, np.ndarray]:
        split = normalise_split(split)
        if not cache:
            try:
                from training.data import load_splits
            except ImportError as err:
                raise FerError(f"the data loader (training.data) is not available: {err}") from err
            kwargs = _data_kwargs(load_splits, data_dir=data_dir, fer2013=fer2013)
            splits = load_splits(**kwargs)
            for key, ds in splits.items():
                cache[key] = (np.asarray(ds.x), np.asarray(ds.y, dtype="int64"))
        if split not in cache:
            raise FerError(f"the data loader returned no {split_title(split)} split")
        return cache[split]

    return load


def _data_kwargs(fn: Callable, *, data_dir: Path | None, fer2013: Path | None) -> dict:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict = {}
    for value, names in (
        (data_dir, ("data_dir", "data_root", "datasets_dir", "data_path", "root")),
        (fer2013, ("fer2013", "fer2013_csv", "fer2013_path", "fer2013_file", "csv_path")),
    ):
        if value is None:
            continue
        name = next((n for n in names if n in params), names[0] if var_kw else None)
        if name is None:
            raise FerError(
                f"training.data.load_splits does not accept {names[0]}=; drop that option"
            )
        kwargs[name] = value
    return kwargs


# --------------------------------------------------------------------------- evaluation


def get_predictions(
    target: Target,
    split: str,
    data_loader: DataLoader | None,
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
        model = load_model(target.model_path)
        if model_cache is not None:
            model_cache[target.model_path] = model
    preds = predict_split(model, x, y, batch_size=batch_size).check(str(target.model_path))
    if saved is not None:
        save_predictions(saved, preds)
    return preds, "computed"


def default_out_dir(target: Target) -> Path:
    if target.run_dir is not None:
        return target.run_dir / "evaluation"
    return target.model_path.parent / f"{target.model_path.stem}_evaluation"


def evaluate_target(
    target: Target,
    split: str = "test",
    *,
    tta: bool = True,
    out_dir: Path | None = None,
    data_loader: DataLoader | None = None,
    batch_size: int = 256,
) -> dict:
    """Score one target on one split and write its reports.

    Writes into `out_dir` (default <run>/evaluation/): metrics_<split>.json,
    confusion_<split>.png and confusion_<split>.json. Returns the metrics dict
    (with "files" listing what was written).
    """
    from training.plots import plot_confusion_matrix

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
    }
    files = {
        "metrics": out_dir / f"metrics_{split}.json",
        "confusion_png": out_dir / f"confusion_{split}.png",
        "confusion_json": out_dir / f"confusion_{split}.json",
    }
    mode = "flip TTA" if metrics["tta"] else "no TTA"
    plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        files["confusion_png"],
        title=f"{target.name}: {SPLIT_TITLES[split]} ({mode}), acc {pct(metrics['accuracy'])}",
    )
    write_json(
        files["confusion_json"],
        {
            "labels": list(LABELS),
            "rows": "true",
            "columns": "predicted",
            "split": split,
            "tta": metrics["tta"],
            "counts": metrics["confusion_matrix"],
        },
    )
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
        f"  per class ({mode}):",
    ]
    rows = [
        [label, pct(v["recall"], 1), pct(v["precision"], 1), pct(v["f1"], 1), v["support"]]
        for label, v in result["per_class"].items()
    ]
    table = text_table(["class", "recall", "precision", "F1", "support"], rows)
    lines.extend("    " + line for line in table.splitlines())
    return "\n".join(lines)
