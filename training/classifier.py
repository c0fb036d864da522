"""The page's classifier in Python: grey crops in, the ensemble's probabilities out.

``web/js/classifier.js`` runs ``models/manifest.json``'s members, soft-votes them with the
manifest's weights and, when ``ensemble.tta_flip`` is set, averages each crop with its mirror
image. `load_classifier` does the same from Python for any model target:

* a models folder (``manifest.json`` + ``<member>/model.json``): each member's TF.js graph model
  through `training.tfjs.load_tfjs_graph_model` (the dequantised weights the browser sees),
  soft voting with `training.ensemble.weighted_average`, flip TTA as the manifest says;
* a run folder (its ``best.keras``) or a ``.keras`` file (`training.runs.resolve_target`): a
  one-member ensemble of the float Keras model, flip TTA unless told otherwise.

`resolve_classifier` makes every cheap check (paths, manifest, input shape) without TensorFlow,
so a command fails on a bad target before it loads data; `load_classifier` then loads models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE, NUM_CLASSES
from contract.manifest import MANIFEST_NAME, read_manifest
from training.errors import FerError
from training.runs import resolve_target

Classify = Callable[[np.ndarray], np.ndarray]
"""uint8 crops (N, H, W) -> (N, 7) float64 probabilities."""


@dataclass
class ClassifierSpec:
    """What will be loaded: members (model.json folders or .keras files), weights, TTA."""

    name: str
    kind: str  # "models" (a manifest's TF.js ensemble) | "run" | "keras"
    path: Path
    members: list[dict] = field(default_factory=list)  # [{"name", "path", "weight"}]
    tta: bool = True
    run_dir: Path | None = None

    def describe(self) -> dict:
        """JSON-ready: what was measured."""
        return {"name": self.name, "kind": self.kind, "path": str(self.path),
                "tta_flip": self.tta,
                "members": [{**m, "path": str(m["path"])} for m in self.members]}


def is_models_folder(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def resolve_classifier(path: str | Path, *, tta: bool | None = None) -> ClassifierSpec:
    """A models folder, run folder or .keras file -> ClassifierSpec; FerError if none of them.

    tta: None follows the manifest (models folder) or means flip TTA (Keras targets).
    """
    path = Path(path)
    if not path.exists():
        raise FerError(f"{path} does not exist; pass a models folder (with manifest.json), a run "
                       "folder (runs/<name>) or a .keras file")
    if is_models_folder(path):
        manifest = read_manifest(path)  # ManifestError (one error line) when invalid
        size = (manifest.input.get("height"), manifest.input.get("width"),
                manifest.input.get("channels", 1))
        if size != (IMAGE_SIZE, IMAGE_SIZE, 1):
            raise FerError(f"{path / MANIFEST_NAME}: input {size}, but the benchmark's crops are "
                           f"{IMAGE_SIZE}x{IMAGE_SIZE} grey; export 48x48x1 models")
        members = [{"name": m.name, "path": (path / m.path).parent, "weight": float(m.weight)}
                   for m in manifest.members]
        use_tta = bool(manifest.ensemble.get("tta_flip")) if tta is None else tta
        return ClassifierSpec(path.resolve().name, "models", path, members, use_tta)
    target = resolve_target(path)  # FerError for an odd file or a run without best.keras
    kind = "run" if target.run is not None else "keras"
    member = {"name": target.name, "path": target.model_path, "weight": 1.0}
    return ClassifierSpec(target.name, kind, path, [member], True if tta is None else tta,
                          target.run_dir)


def load_classifier(spec: ClassifierSpec, *, batch_size: int = 256) -> Classify:
    """Load the members (TensorFlow imported here) and return the ensemble as the page runs it."""
    from training.ensemble import weighted_average
    from training.metrics import tta_average
    from training.predict import to_model_input

    if spec.kind == "models":
        from training.tfjs import load_tfjs_graph_model

        predictors = [load_tfjs_graph_model(m["path"], batch_size=batch_size)
                      for m in spec.members]
    else:
        from training.export import keras_predictor
        from training.serialization import load_model

        predictors = [keras_predictor(load_model(m["path"], float32=True), batch_size=batch_size)
                      for m in spec.members]
    weights = [m["weight"] for m in spec.members]

    def classify(x: np.ndarray) -> np.ndarray:
        inputs = to_model_input(x)
        if not len(inputs):
            return np.zeros((0, NUM_CLASSES))
        mirrored = np.ascontiguousarray(inputs[:, :, ::-1, :]) if spec.tta else None
        probs = []
        for predict in predictors:
            p = predict(inputs)
            probs.append(tta_average(p, predict(mirrored)) if spec.tta else p)
        return weighted_average(probs, weights)

    return classify
