"""Exact validation on fixed-shape batches (`ValidationPass`), instead of fit's validation_data.

Keras validates `validation_data` in batches whose last one is partial, so XLA compiles the
evaluation step twice. Padding that batch with zero-weight samples keeps val_accuracy exact
but not val_loss: Keras averages the per-batch losses weighted by the batch size, padding
included. So the validation set is padded to whole batches here, run through the core model
with `predict` (one shape, one compilation), the padding is cut off, and accuracy and
cross-entropy are computed on the real images only: exact, and the same numbers Keras'
validation gave (plain cross-entropy, unweighted, unsmoothed, at inference).

The callback must run before any callback that reads val_* (RunMonitor, TensorBoard): it
writes val_loss and val_accuracy into the epoch's logs, which Keras passes to every
callback as one dict.
"""

from __future__ import annotations

import keras
import numpy as np

from training.predict import pad_to_batches

EPSILON = 1e-7  # keras.config.epsilon(): Keras' cross-entropy clips probabilities the same way


def val_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and mean cross-entropy of probabilities `probs` (N, C) for labels `y` (N,)."""
    probs = np.asarray(probs, dtype="float64")
    y = np.asarray(y, dtype="int64")
    picked = np.clip(probs[np.arange(len(y)), y], EPSILON, 1.0 - EPSILON)
    return {"val_loss": float(-np.log(picked).mean()),
            "val_accuracy": float((probs.argmax(axis=1) == y).mean())}


class ValidationPass(keras.callbacks.Callback):
    """Adds exact val_loss / val_accuracy of `model` on (x, y) to each epoch's logs."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int):
        super().__init__()
        self.core = model
        self.n = len(x)
        self.batch_size = int(batch_size)
        self.x = pad_to_batches(x, self.batch_size)
        self.y = np.asarray(y)

    def on_epoch_end(self, epoch, logs=None):
        probs = self.core.predict(self.x, batch_size=self.batch_size, verbose=0)[:self.n]
        if logs is not None:
            logs.update(val_metrics(probs, self.y))
