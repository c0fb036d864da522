"""Learning-rate schedules beyond the paper's plateau halving (opt-in with --schedule).

`scheduled_lr` is the curve as a pure function of the epoch (no Keras here, so options are
checked before TensorFlow loads); `training.fit.callbacks.EpochLRSchedule` applies it at the start
of each epoch from the absolute epoch index, so a resumed run continues the
curve where it stopped. "plateau" (the default) leaves the lr to RunMonitor.

A schedule can also be stretched over minutes of training instead of epochs
(`--schedule-minutes`, `progress_lr`): on a GPU whose speed nobody has measured yet, a
fixed epoch count either ends long before the call does or is cut off with the lr still
high; by the clock, every run ends with its schedule finished.
"""

from __future__ import annotations

import math

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
        return _cosine(min(epoch, epochs - 1) / max(1, epochs - 1), base_lr, min_lr)
    if kind == "onecycle":
        warm = max(1, round(warmup_frac * epochs))
        start = base_lr / 25.0
        if epoch < warm:
            return float(start + (base_lr - start) * epoch / warm)
        return _cosine(min(epoch - warm, epochs - warm - 1) / max(1, epochs - warm - 1),
                       base_lr, min_lr)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def progress_lr(kind: str, progress: float, *, base_lr: float, min_lr: float = 0.0,
                warmup_frac: float = 0.3) -> float:
    """Learning rate at `progress` in [0, 1] of a schedule (the same curves as `scheduled_lr`,
    on a continuous axis: the fraction of the training minutes used)."""
    t = min(max(float(progress), 0.0), 1.0)
    if kind == "plateau":
        return float(base_lr)
    if kind == "cosine":
        return _cosine(t, base_lr, min_lr)
    if kind == "onecycle":
        start = base_lr / 25.0
        if t < warmup_frac:
            return float(start + (base_lr - start) * t / warmup_frac)
        return _cosine((t - warmup_frac) / (1.0 - warmup_frac), base_lr, min_lr)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def _cosine(t: float, base_lr: float, min_lr: float) -> float:
    return float(min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t)))


def time_progress(state: dict, epoch: int, epochs: int, minutes: float) -> float:
    """How far a run stretched over `minutes` is: by the clock (its training seconds so far,
    kept in the run's state across resumes) or by epochs, whichever is further."""
    by_epoch = epoch / max(1, epochs - 1)
    return max(by_epoch, float(state.get("train_seconds", 0.0)) / (60.0 * minutes))
