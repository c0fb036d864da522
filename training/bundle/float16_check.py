"""Is float16 storage harmless for this model? Measured, not assumed.

The float16 weights are restored as float32 (`keras_file.rebuild_keras`), so the restored
model computes in float32 with weights rounded to 11 significant bits. `measure` runs the
original best.keras and that restored model on the same images and compares: largest
probability change, top-1 agreement and (with labels) the accuracy change. The images are
the run's own validation split, loaded the way its config.json says (`data`, `seed`) and
checked against the labels in its predictions/val.npz; when that data is not here, a
deterministic probe set (smooth random fields: no labels, so no accuracy) stands in.
`decide` turns the measurement into float16 or float32.

Keras is imported inside the functions (under whatever backend is set: JAX on the GPU
machine); TensorFlow is never imported here.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.core.errors import FerError
from training.core.runs import RunFolder, load_predictions

log = logging.getLogger(__name__)

DEFAULT_MIN_AGREEMENT = 99.9  # percent of images whose top-1 class must not change
DEFAULT_MAX_ACCURACY_CHANGE = 0.1  # percentage points
PROBE_IMAGES = 512


@dataclass
class EvalImages:
    x: np.ndarray  # (N, 48, 48) uint8
    y: np.ndarray | None  # (N,) labels, None for the probe set
    source: str  # for the manifest: where the images came from


def probe_images(n: int = PROBE_IMAGES, seed: int = 0, size: int = 48) -> EvalImages:
    """Deterministic face-sized images: blurred random fields over the full 0..255 range.

    Smooth rather than white noise so that the convolutions see structure at every scale
    and the model's outputs spread over classes (noise gives near-constant predictions,
    which would agree under any rounding).
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 6, 6))
    up = np.kron(coarse, np.ones((size // 6, size // 6)))[:, :size, :size]
    x = np.clip(up + rng.normal(0, 24, size=(n, size, size)), 0, 255).astype(np.uint8)
    return EvalImages(x=x, y=None, source=f"probe: {n} deterministic synthetic images "
                                          f"(seed {seed}; no labels)")


_loaded: dict[str, object] = {}


def run_images(run: RunFolder) -> EvalImages:
    """The images `run` validated on, or the probe set (with the reason in `source`)."""
    from training.data.splits import load_splits

    config = run.read_config()
    data = {k: v for k, v in (config.get("data") or {}).items() if v not in (None, [])}
    seed = int(config.get("seed") or 0)
    key = json.dumps([data, seed], sort_keys=True)
    if key not in _loaded:  # runs trained on the same data load it once
        try:
            val = load_splits(**data, seed=seed, include_test=False, progress=False)["val"]
            _loaded[key] = (np.asarray(val.x), np.asarray(val.y, dtype="int64"))
        except (FerError, OSError) as err:
            _loaded[key] = f"its data is not here ({' '.join(str(err).split())})"
    found = _loaded[key]
    if isinstance(found, str):
        return _probe_because(found)
    x, y = found
    if run.predictions("val").is_file():
        saved = load_predictions(run.predictions("val")).y
        if saved.shape != y.shape or not np.array_equal(saved, y):
            return _probe_because("the data found here does not match the labels of its "
                                  "predictions/val.npz")
    return EvalImages(x=x, y=y, source=f"val: the run's validation split as its config.json "
                                         f"loads it ({len(y)} images, data {data or 'default'})")


def _probe_because(reason: str) -> EvalImages:
    probe = probe_images()
    probe.source += f"; the run's validation images were not used: {reason}"
    return probe


def measure(model_path: Path, rounded_keras: bytes, images: EvalImages, *,
            batch_size: int = 256) -> dict:
    """Compare best.keras with its float16-rounded restoration on `images`."""
    from training.models.predict import predict_probs
    from training.models.serialization import load_model

    reference = predict_probs(load_model(model_path), images.x, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="fer-bundle-") as scratch:
        path = Path(scratch) / "float16.keras"  # a private scratch file, gone on return
        path.write_bytes(rounded_keras)
        rounded = predict_probs(load_model(path), images.x, batch_size=batch_size)
    top_ref, top_rounded = reference.argmax(1), rounded.argmax(1)
    # A diverged run predicts NaN: the comparison is meaningless then, and a NaN in the
    # manifest would make the whole bundle unwritable (strict JSON), losing every run in it.
    not_finite = int((~np.isfinite(reference).all(1) | ~np.isfinite(rounded).all(1)).sum())
    check = {
        "images": images.source,
        "n": int(len(images.x)),
        "max_abs_prob_change": (
            float(np.abs(reference - rounded).max()) if not not_finite else None
        ),
        "top1_agreement_pct": round(100.0 * float((top_ref == top_rounded).mean()), 4),
        "not_finite_images": not_finite,
    }
    if images.y is not None:
        acc32 = 100.0 * float((top_ref == images.y).mean())
        acc16 = 100.0 * float((top_rounded == images.y).mean())
        check.update(accuracy_float32_pct=round(acc32, 4), accuracy_float16_pct=round(acc16, 4),
                     accuracy_change_pp=round(acc16 - acc32, 4))
    return check


def decide(check: dict, *, min_agreement: float = DEFAULT_MIN_AGREEMENT,
           max_accuracy_change: float = DEFAULT_MAX_ACCURACY_CHANGE,
           max_prob_change: float | None = None) -> tuple[str, str]:
    """('float16' | 'float32', why) for a measurement from `measure`."""
    if check.get("not_finite_images"):
        return "float32", (f"the model predicts NaN or infinity on {check['not_finite_images']} "
                           f"of {check['n']} images (a diverged run?): kept as trained")
    problems = []
    if check["top1_agreement_pct"] < min_agreement:
        problems.append(f"top-1 agreement {check['top1_agreement_pct']:.2f}% < "
                        f"{min_agreement:g}%")
    change = check.get("accuracy_change_pp")
    if change is not None and abs(change) > max_accuracy_change:
        problems.append(f"accuracy change {change:+.2f} pp exceeds {max_accuracy_change:g} pp")
    if max_prob_change is not None and check["max_abs_prob_change"] > max_prob_change:
        problems.append(f"max |dp| {check['max_abs_prob_change']:.2e} > {max_prob_change:g}")
    if problems:
        return "float32", "float16 changed the predictions: " + "; ".join(problems)
    return "float16", (f"float16 kept {check['top1_agreement_pct']:.2f}% top-1 agreement"
                       + (f", accuracy {change:+.2f} pp" if change is not None else "")
                       + f", max |dp| {check['max_abs_prob_change']:.2e}")
