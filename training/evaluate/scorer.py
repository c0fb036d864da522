"""What `explain` and `robustness` score: a run folder, a .keras file, or an exported models folder.

`resolve_source` makes the cheap checks (paths, manifest) before any data or TensorFlow loads;
`load_scorer` then loads the model(s) into one predictor (float32 NHWC 0..255 -> probabilities):
a Keras model, or the manifest's TF.js members run in Python (`training.export.tfjs`) and soft-voted
with their weights (`training.ensemble.voting.weighted_average`), i.e. what the page computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.manifest import MANIFEST_NAME, Manifest, read_manifest
from training.core.errors import FerError
from training.core.runs import Predictions, Target, resolve_target
from training.export.tfjs import Predictor


@dataclass
class Source:
    """A resolved explain target. kind: "run" | "keras" | "models"."""

    kind: str
    name: str
    path: Path
    target: Target | None = None  # run folder or .keras file
    manifest: Manifest | None = None  # models folder

    @property
    def has_keras(self) -> bool:
        """True when Keras layers exist to cut for Grad-CAM."""
        return self.target is not None

    @property
    def default_tta(self) -> bool:
        """Flip TTA as the target is normally scored: the manifest's choice, else on."""
        if self.manifest is not None:
            return bool(self.manifest.ensemble.get("tta_flip", True))
        return True


def resolve_source(path: str | Path, *, need_model: bool = True) -> Source:
    """A run folder, a .keras file, or a folder with manifest.json (or that file) -> Source.
    need_model=False: a run folder without best.keras will do (its saved predictions may be
    enough, as for `evaluate`)."""
    path = Path(path)
    manifest_file = path if path.name == MANIFEST_NAME and path.is_file() else path / MANIFEST_NAME
    if manifest_file.is_file():
        folder = manifest_file.parent
        return Source("models", folder.resolve().name, folder, manifest=read_manifest(folder))
    if need_model and path.is_dir() and not (path / "best.keras").is_file():
        raise FerError(f"{path} is neither a run folder (no best.keras) nor a models folder (no "
                       f"{MANIFEST_NAME}); pass runs/<name>, a .keras file or models/")
    target = resolve_target(path, need_model=need_model)
    return Source("run" if target.run is not None else "keras", target.name, path, target=target)


@dataclass
class Scorer:
    """The loaded target: `predict` (no TTA) and, for Keras targets, the model itself."""

    predict: Predictor
    keras_model: Any = None


def load_scorer(source: Source, *, batch_size: int = 256, model: Any = None) -> Scorer:
    """Load what `source` names (`model`: an already loaded Keras model to reuse)."""
    if source.manifest is not None:
        from training.ensemble.voting import weighted_average
        from training.export.tfjs import load_tfjs_graph_model

        members = source.manifest.members
        runners = [load_tfjs_graph_model((source.path / m.path).parent, batch_size=batch_size)
                   for m in members]
        weights = [m.weight for m in members]

        def vote(x: np.ndarray) -> np.ndarray:
            return weighted_average([run(x) for run in runners], weights).astype("float32")

        return Scorer(vote)
    from training.models.predict import predict_probs
    from training.models.serialization import load_model

    if model is None:
        model = load_model(source.target.model_path, float32=True)  # explains what ships

    def predict(x: np.ndarray) -> np.ndarray:
        return predict_probs(model, x, batch_size=batch_size)

    return Scorer(predict, model)


def scored_predictions(scorer: Scorer, x: np.ndarray, y: np.ndarray) -> Predictions:
    """Plain and mirrored probabilities of `scorer` on uint8 images `x` (as a run saves them)."""
    from training.models.predict import to_model_input

    inputs = to_model_input(x)
    return Predictions(scorer.predict(inputs),
                       scorer.predict(np.ascontiguousarray(inputs[:, :, ::-1])), y)
