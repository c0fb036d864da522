"""Batch prediction with optional horizontal-flip test-time augmentation.

Shared by training (which saves validation/test probabilities at the end of a
run), evaluation and ensembling, so every consumer sees the same numbers.
"""

from __future__ import annotations

import numpy as np

from training.core.runs import Predictions


def to_model_input(x: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 NHWC in [0, 255].

    Models normalise inside their own graph (a Rescaling layer), so the
    contract with the page and the manifest is simply "raw grey levels".
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype("float32")


def pad_to_batches(x: np.ndarray, batch_size: int) -> np.ndarray:
    """`x` with zero images appended up to a multiple of `batch_size`.

    XLA (JAX, TensorFlow with jit) compiles a step once per input shape: a partial last
    batch costs a second compilation, tens of seconds for a big model on a GPU call."""
    extra = -len(x) % batch_size
    if not extra:
        return x
    return np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)])


def predict_probs(model, x: np.ndarray, *, batch_size: int = 256, flip: bool = False) -> np.ndarray:
    """Class probabilities (N, num_classes) for uint8 images `x`, in full batches.

    With `flip=True` the images are mirrored left-right first; averaging the
    plain and flipped outputs (`training.core.metrics.tta_average`) is the paper's flip TTA.
    """
    inputs = to_model_input(x)
    if flip:
        inputs = inputs[:, :, ::-1, :]
    n = len(inputs)
    if n == 0:
        return np.zeros((0, model.output_shape[-1]), dtype="float32")
    batch = min(int(batch_size), n)
    probs = model.predict(pad_to_batches(inputs, batch), batch_size=batch, verbose=0)[:n]
    return np.asarray(probs, dtype="float32")


def predict_split(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> Predictions:
    """Plain and mirrored probabilities of `model` on images `x` (what a run folder saves)."""
    probs = predict_probs(model, x, batch_size=batch_size, flip=False)
    probs_flip = predict_probs(model, x, batch_size=batch_size, flip=True)
    return Predictions(probs=probs, probs_flip=probs_flip, y=np.asarray(y, dtype="int64"))
