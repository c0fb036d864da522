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

Given FER+ `votes` for the validation images (`--targets ferplus`), it scores agreement with
people instead: val_accuracy is the FER+ majority agreement on the rows that metric scores
(`training.data.ferplus_agreement.ferplus_agreement`, ties count) and val_loss the cross-entropy
against their vote distribution, so RunMonitor selects and schedules by them.
"""

from __future__ import annotations

import keras
import numpy as np

from training.models.predict import pad_to_batches

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

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int,
                 votes=None):
        super().__init__()
        self.votes = votes  # training.data.ferplus.FerPlusVotes lined up with x, or None
        self.core = model
        self.n = len(x)
        self.batch_size = int(batch_size)
        self.x = pad_to_batches(x, self.batch_size)
        self.y = np.asarray(y)

    def on_epoch_end(self, epoch, logs=None):
        probs = self.core.predict(self.x, batch_size=self.batch_size, verbose=0)[:self.n]
        if logs is not None:
            logs.update(val_metrics(probs, self.y) if self.votes is None
                        else vote_metrics(probs, self.votes))


def vote_metrics(probs: np.ndarray, votes) -> dict[str, float]:
    """val_accuracy = FER+ majority agreement, val_loss = cross-entropy against the vote
    distribution over our seven classes, both on the rows the agreement metric scores."""
    from training.data.ferplus_agreement import ferplus_agreement
    from training.fit.targets import vote_distribution

    probs = np.asarray(probs, dtype="float64")
    scored = votes.scored
    dist = vote_distribution(votes.seven)[scored]
    ce = -(dist * np.log(np.clip(probs[scored], EPSILON, 1.0 - EPSILON))).sum(axis=1)
    agreement = ferplus_agreement(probs.argmax(axis=1), votes.votes, scored)
    return {"val_loss": float(ce.mean()), "val_accuracy": float(agreement["majority_agreement"])}
