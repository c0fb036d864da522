"""The run folder: the files one training run leaves behind, and the one place that names them.

    runs/<name>/
      config.json              the TrainConfig, to rebuild and resume the run
      log.csv                  one row per epoch (loss, accuracy, lr, seconds)
      tensorboard/             the same curves for TensorBoard (when TensorFlow is installed)
      best.keras               the model at its best PublicTest accuracy (what ships)
      checkpoint/state.json    counters to resume exactly from the last checkpoint, naming
      checkpoint/train-epochNNNN.keras   the training model of that epoch (weights + optimizer;
                               written every --checkpoint-minutes and when the run stops)
      metrics.json             the run's summary ("status": complete | incomplete)
      predictions/<split>.npz  probs, probs_flip (mirrored input), y of best.keras on a split
      evaluation/              `fer-hybrid evaluate` reports
      explain/                 `fer-hybrid explain` report (shows dataset faces: never committed)
      history.png              loss and accuracy curves

`train` writes it, `evaluate`/`ensemble`/`export`/`results` read it. A *target* is what
those commands accept: a run folder or a bare `.keras` file (`resolve_target`).
Standard library + numpy only: nothing here imports Keras.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import NUM_CLASSES
from contract.files import atomic_output
from training.core.errors import FerError
from training.core.metrics import tta_average
from training.core.report import write_json
from training.core.splits import normalise_split

log = logging.getLogger(__name__)

# -- the folder ------------------------------------------------------------------------------


def default_run_name(model: str) -> str:
    """`<model>-<UTC time>`: the name of a run started without --name."""
    return f"{model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


class RunFolder:
    """Paths and small files of one run folder (nothing is created until written)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.resolve().name

    config = property(lambda self: self.path / "config.json")
    log_csv = property(lambda self: self.path / "log.csv")
    tensorboard = property(lambda self: self.path / "tensorboard")
    best_model = property(lambda self: self.path / "best.keras")
    checkpoint_dir = property(lambda self: self.path / "checkpoint")
    state = property(lambda self: self.path / "checkpoint" / "state.json")
    metrics = property(lambda self: self.path / "metrics.json")
    predictions_dir = property(lambda self: self.path / "predictions")
    evaluation_dir = property(lambda self: self.path / "evaluation")
    explain_dir = property(lambda self: self.path / "explain")
    history_png = property(lambda self: self.path / "history.png")

    def predictions(self, split: str) -> Path:
        return self.predictions_dir / f"{normalise_split(split)}.npz"

    def checkpoint_model(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"train-epoch{epoch:04d}.keras"

    def checkpoint_models(self) -> list[Path]:
        """Every checkpoint model file (only the newest is kept once a save completes)."""
        return sorted(self.checkpoint_dir.glob("train-epoch*.keras"))

    def holds_run(self) -> bool:
        """True once a run started here (a new run must not overwrite it)."""
        return self.config.exists() or self.checkpoint_dir.exists()

    def check_new(self) -> None:
        """FerError if a run already lives here."""
        if self.holds_run():
            raise FerError(f"run folder {self.path} already holds a run; continue it with "
                           f"--resume or pick another --name")

    def read_config(self) -> dict:
        """config.json as a dict; FerError if there is none (nothing to resume)."""
        if not self.config.is_file():
            raise FerError(f"nothing to resume: {self.config} does not exist; check "
                           f"--name/--runs-dir")
        return _read_json(self.config)

    def read_state(self) -> dict:
        """checkpoint/state.json, checked to name a checkpoint model that exists."""
        if not self.state.is_file() or not self.config.is_file():
            raise FerError(f"nothing to resume in {self.path}: no checkpoint/state.json or "
                           f"config.json; start a new run without --resume")
        state = _read_json(self.state)
        name = state.get("checkpoint_model")
        if not name or not (self.checkpoint_dir / name).is_file():
            raise FerError(f"checkpoint in {self.checkpoint_dir} is incomplete (model file "
                           f"missing); start a new run")
        return state

    def read_summary(self) -> dict:
        """metrics.json and config.json merged for reports ({} parts when missing/unreadable)."""
        out: dict = {}
        for path in (self.config, self.metrics):
            try:
                out.update(json.loads(path.read_text()))
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as err:
                log.warning("ignoring unreadable %s: %s", path, err)
        return out

    def read_metrics(self) -> dict:
        """metrics.json ({} when the run has not written one yet)."""
        return _read_json(self.metrics) if self.metrics.is_file() else {}

    def write_config(self, config: dict) -> None:
        write_json(self.config, config)

    def write_state(self, state: dict) -> None:
        write_json(self.state, state)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics, metrics)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FerError(f"cannot read {path} ({err}); the run folder is damaged") from err


# Stop reasons of a run that stopped before its end and continues with --resume.
PAUSED = ("time_budget", "stop_requested")


def initial_state(lr: float) -> dict:
    """checkpoint/state.json of a run that has not trained an epoch yet."""
    return {
        "epoch": 0,  # epochs completed
        "best_val_accuracy": None,
        "best_epoch": 0,
        "plateau_wait": 0,
        "early_stop_wait": 0,
        "lr": float(lr),
        "train_seconds": 0.0,
        # None | "completed" | "early_stopping" | "time_budget" | "stop_requested" (the last
        # two: paused, resumable; PAUSED)
        "stop_reason": None,
        "checkpoint_model": None,
    }


# -- predictions -----------------------------------------------------------------------------


@dataclass
class Predictions:
    """Saved outputs of one model on one split (`predictions/<split>.npz`)."""

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
                    f"{where}: {name} has shape {arr.shape}, expected ({y.shape[0]}, "
                    f"{NUM_CLASSES}); delete the file and re-run `fer-hybrid evaluate` to "
                    "recompute it"
                )
            if not np.all(np.isfinite(arr)):
                raise FerError(f"{where}: {name} contains NaN/inf; delete the file and "
                               "recompute it")
        if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= NUM_CLASSES)):
            raise FerError(f"{where}: y must be (N,) labels in 0..{NUM_CLASSES - 1}; delete "
                           "the file and recompute it")
        return self

    def scored(self, tta: bool) -> np.ndarray:
        """Probabilities to score: plain, or the flip-TTA mean."""
        return tta_average(self.probs, self.probs_flip) if tta else self.probs.astype("float64")


def load_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    if not path.is_file():
        raise FerError(f"predictions file {path} not found; run `fer-hybrid evaluate` to "
                       "create it")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("probs", "probs_flip", "y") if k not in data.files]
            if missing:
                raise FerError(f"{path}: missing arrays {missing} (need probs, probs_flip, y); "
                               "delete it and re-run `fer-hybrid evaluate` to recompute it")
            preds = Predictions(probs=np.asarray(data["probs"], dtype="float32"),
                                probs_flip=np.asarray(data["probs_flip"], dtype="float32"),
                                y=np.asarray(data["y"]).astype("int64"))
    except FerError:
        raise
    except Exception as err:  # corrupt zip, pickled arrays, ...
        raise FerError(f"cannot read predictions {path} ({err}); delete it and recompute "
                       "it") from err
    return preds.check(str(path))


def save_predictions(path: str | Path, preds: Predictions) -> Path:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        # np.savez is given a file object, so it does not append its own `.npz`.
        np.savez(fh, probs=np.asarray(preds.probs, dtype="float32"),
                 probs_flip=np.asarray(preds.probs_flip, dtype="float32"),
                 y=np.asarray(preds.y, dtype="int64"))
    return Path(path)


# -- targets ---------------------------------------------------------------------------------


@dataclass
class Target:
    """What `evaluate`/`ensemble`/`export` take: a run folder (with best.keras) or a .keras file."""

    name: str
    model_path: Path
    run: RunFolder | None = None

    @property
    def run_dir(self) -> Path | None:
        return self.run.path if self.run is not None else None

    def predictions_path(self, split: str) -> Path | None:
        return self.run.predictions(split) if self.run is not None else None


def resolve_target(path: str | Path, *, need_model: bool = True) -> Target:
    """A run folder or a .keras file -> Target; FerError if it is neither.

    With `need_model=False` a run folder without best.keras is accepted (its
    saved predictions may still be enough, e.g. for CPU-only ensembling).
    """
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        if need_model and not run.best_model.is_file():
            raise FerError(
                f"run folder {path} has no best.keras; train it first (`fer-hybrid train`) "
                "or pass the path of a .keras file"
            )
        if need_model:
            check_keras_file(run.best_model)
        return Target(name=run.name, model_path=run.best_model, run=run)
    if path.is_file():
        if path.suffix != ".keras":
            raise FerError(f"{path} is not a .keras model file or a run folder")
        check_keras_file(path)
        return Target(name=path.stem, model_path=path, run=None)
    raise FerError(f"{path} does not exist; pass a run folder (runs/<name>) or a .keras file")


# What every Keras 3 .keras file holds: it is a zip archive of these (and metadata.json).
KERAS_ENTRIES = ("config.json", "model.weights.h5")


def check_keras_file(path: str | Path) -> None:
    """FerError in one line unless `path` looks like a Keras 3 .keras file: a zip archive with
    config.json and model.weights.h5. Read without Keras, so a missing, empty or text file is
    refused in milliseconds rather than after TensorFlow's start-up (where Keras calls an
    unreadable file "File not found")."""
    path = Path(path)
    if path.is_dir():
        raise FerError(f"{path} is a folder, not a .keras model file")
    if not path.is_file():
        raise FerError(f"model file {path} not found")
    if path.stat().st_size == 0:
        raise FerError(f"model file {path} is empty; re-train it or pass another model")
    if not zipfile.is_zipfile(path):
        raise FerError(f"model file {path} is not a .keras file (not a zip archive); re-train "
                       "it or pass another model")
    with zipfile.ZipFile(path) as archive:
        missing = [e for e in KERAS_ENTRIES if e not in archive.namelist()]
    if missing:
        raise FerError(f"model file {path} is not a .keras file (no {', '.join(missing)} in "
                       "it); re-train it or pass another model")
