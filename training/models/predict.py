"""Batch prediction with optional horizontal-flip test-time augmentation.

Shared by training (which saves validation/test probabilities at the end of a
run), evaluation and ensembling, so every consumer sees the same numbers; `get_predictions`
reuses a run folder's saved predictions of a split or computes them from its best.keras.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.core.errors import FerError
from training.core.runs import Predictions, Target, load_predictions, save_predictions
from training.core.splits import normalise_split, split_title


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


def get_predictions(
    target: Target,
    split: str,
    data_loader: Callable[[str], tuple[np.ndarray, np.ndarray]] | None,
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
        from training.models.serialization import load_model  # Keras: only to compute

        model = load_model(target.model_path, float32=True)  # scores what ships
        if model_cache is not None:
            model_cache[target.model_path] = model
    preds = predict_split(model, x, y, batch_size=batch_size).check(str(target.model_path))
    if saved is not None:
        save_predictions(saved, preds)
    return preds, "computed"
