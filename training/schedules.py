"""Learning-rate schedules beyond the paper's plateau halving (opt-in with --schedule).

`scheduled_lr` is the curve as a pure function of the epoch; `EpochLRSchedule` applies it
at the start of each epoch from the absolute epoch index, so a resumed run continues the
curve where it stopped. "plateau" (the default) leaves the lr to RunMonitor.
"""

from __future__ import annotations

import math

import keras

SCHEDULES = ("plateau", "cosine", "onecycle")


def scheduled_lr(kind: str, epoch: int, *, base_lr: float, epochs: int,
                 min_lr: float = 0.0, warmup_frac: float = 0.3) -> float:
    """Learning rate for 0-based `epoch` of `epochs` (pure function; plateau -> base_lr).

    cosine:   base_lr -> min_lr along half a cosine.
    onecycle: linear warm-up from base_lr/25 to base_lr over `warmup_frac` of the epochs,
              then cosine down to min_lr (Smith & Topin 2017, as in fast.ai).
    """
    epochs = max(1, int(epochs))
    if kind == "plateau":
        return float(base_lr)
    if kind == "cosine":
        t = min(epoch, epochs - 1) / max(1, epochs - 1)
        return float(min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t)))
    if kind == "onecycle":
        warm = max(1, round(warmup_frac * epochs))
        start = base_lr / 25.0
        if epoch < warm:
            return float(start + (base_lr - start) * epoch / warm)
        t = min(epoch - warm, epochs - warm - 1) / max(1, epochs - warm - 1)
        return float(min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t)))
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


class EpochLRSchedule(keras.callbacks.Callback):
    """Sets the optimizer's lr at each epoch start from `scheduled_lr`.

    A per-epoch callback rather than a LearningRateSchedule object: `fit(initial_epoch=k)`
    hands it the absolute epoch, so resume needs no extra state, and RunMonitor's
    `get_lr` keeps reading a plain float.
    """

    def __init__(self, kind: str, *, base_lr: float, epochs: int, min_lr: float = 0.0):
        super().__init__()
        self.kind, self.base_lr, self.epochs, self.min_lr = kind, base_lr, epochs, min_lr

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = scheduled_lr(
            self.kind, epoch, base_lr=self.base_lr, epochs=self.epochs, min_lr=self.min_lr)
