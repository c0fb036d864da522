"""Fixed-shape training batches: full batches only, a fresh shuffle every epoch.

XLA (JAX, and TensorFlow with jit) compiles the train step once per input shape; a partial
last batch compiles it a second time, which on a lent GPU costs tens of seconds per process.
`TrainBatches` therefore drops the `n % batch_size` remainder, but draws a new permutation
every epoch (seeded from the run's seed and the epoch, so a resumed run sees the same batches
as an uninterrupted one), so every image is still seen over the epochs.

Class weights become per-sample weights here (the third element of each batch): Keras also
accepts `class_weight` with a PyDataset, but not on every backend, and explicit weights keep
the batches the one source of truth.

    batches = TrainBatches(x, y, batch_size=128, seed=0, class_weights={0: 1.2, ...})
    model.fit(batches, epochs=E, initial_epoch=e0, shuffle=False,
              callbacks=[batches.epoch_callback(), ...])
"""

from __future__ import annotations

import time

import keras
import numpy as np

from training.core.errors import FerError


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the n training images in `epoch` (0-based) of a run seeded `seed`."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class TrainBatches(keras.utils.PyDataset):
    """(x, y[, sample_weight]) batches of exactly `batch_size` images (fewer images than that:
    one batch of all of them), reshuffled each epoch.

    The epoch comes from Keras' callback hook (`epoch_callback`), not from counting the
    dataset's own on_epoch_* calls, which Keras may call more than once per epoch.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int = 0,
                 class_weights: dict[int, float] | None = None, initial_epoch: int = 0,
                 soft_targets: np.ndarray | None = None,
                 label_targets: np.ndarray | None = None):
        super().__init__()  # one worker, no multiprocessing: the arrays are already in memory
        if len(x) != len(y):
            raise FerError(f"{len(x)} images but {len(y)} labels")
        if len(x) == 0 or batch_size < 1:
            raise FerError(f"cannot batch {len(x)} images by {batch_size}")
        self.x, self.y = x, np.asarray(y)
        # Offline distillation: per-image teacher probabilities travel with their images
        # (training.fit.trainer.Trainer.inputs), so they follow every shuffle.
        self.soft = None if soft_targets is None else np.asarray(soft_targets)[:len(x)]
        # --targets ferplus|mix: per-image label distributions, the same way.
        self.targets = None if label_targets is None else np.asarray(label_targets)[:len(x)]
        self.batch_size = min(int(batch_size), len(x))
        self.seed = int(seed)
        self.weights = None
        if class_weights is not None:
            table = np.array([class_weights.get(c, 1.0) for c in range(int(self.y.max()) + 1)],
                             dtype="float32")
            self.weights = table[self.y]
        self.set_epoch(initial_epoch)
        self.trained_images = 0
        self.train_seconds = 0.0

    @property
    def images_per_epoch(self) -> int:
        """Images actually trained on per epoch (the remainder is dropped)."""
        return len(self) * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._order = epoch_permutation(len(self.x), self.seed, self.epoch)

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        # Sorted: the order inside a batch does not matter to the step, and in-order gathers
        # from the big image array are faster.
        idx = np.sort(self._order[i * self.batch_size:(i + 1) * self.batch_size])
        x = self.x[idx]
        if self.soft is not None or self.targets is not None:
            from training.fit.trainer import Trainer

            x = Trainer.inputs(x, None if self.soft is None else self.soft[idx],
                               None if self.targets is None else self.targets[idx])
        if self.weights is None:
            return x, self.y[idx]
        return x, self.y[idx], self.weights[idx]

    def epoch_callback(self) -> keras.callbacks.Callback:
        """The callback that tells the batches which epoch starts and times the training
        phase of each epoch; pass it to `fit` *first*, so its on_epoch_end runs before any
        validation or saving."""
        return _EpochHook(self)

    @property
    def images_per_second(self) -> float | None:
        """Images trained per second of training phase (compilation included; validation,
        logging and saving excluded), over the epochs of this process; None before one."""
        if not self.train_seconds:
            return None
        return self.trained_images / self.train_seconds


class _EpochHook(keras.callbacks.Callback):
    def __init__(self, batches: TrainBatches):
        super().__init__()
        self.batches = batches
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.batches.epoch:
            self.batches.set_epoch(epoch)
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        # Keras has turned the logs into Python floats by now, so the step is done even on
        # backends that dispatch asynchronously (JAX).
        self.batches.train_seconds += time.monotonic() - self._t0
        self.batches.trained_images += self.batches.images_per_epoch
