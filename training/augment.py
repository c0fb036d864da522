"""In-graph data augmentation (runs on the accelerator, inside the training model).

The paper's augmentation: random horizontal flip, +/-10 degree rotation,
+/-10 % zoom and +/-10 % horizontal/vertical shift. The layers are active only
when called with `training=True`, so the wrapped model evaluates unaugmented.

Only the *core* model is ever saved, checkpointed as `best.keras` or exported;
the augmenter wraps it for training:

    train_model = with_augmentation(core, seed=0)   # input -> augmenter -> core
"""

from __future__ import annotations

import keras
from keras import layers


def build_augmenter(*, seed: int | None = None, flip: bool = True, rotation_deg: float = 10.0,
                    zoom: float = 0.1, shift: float = 0.1, erasing: float = 0.0,
                    name: str = "augment") -> keras.Sequential:
    """A keras.Sequential of Random* layers (flip, rotation, zoom, translation).

    erasing: probability of random erasing (cutout with noise) per image, applied last
    so the erased patch is not blurred by the geometric resampling; 0 (default) leaves
    it out, so the paper's augmenter is unchanged.
    """

    def s(i):  # distinct but reproducible seeds per layer
        return None if seed is None else int(seed) * 10 + i

    steps = []
    if flip:
        steps.append(layers.RandomFlip("horizontal", seed=s(1)))
    if rotation_deg:
        steps.append(layers.RandomRotation(rotation_deg / 360.0, fill_mode="nearest", seed=s(2)))
    if zoom:
        steps.append(layers.RandomZoom(zoom, fill_mode="nearest", seed=s(3)))
    if shift:
        steps.append(layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=s(4)))
    if erasing:
        from training.recipes import RandomErasing

        steps.append(RandomErasing(erasing, seed=s(5), name="random_erasing"))
    return keras.Sequential(steps, name=name)


def with_augmentation(core: keras.Model, augmenter: keras.Layer | None = None, *,
                      seed: int | None = None, erasing: float = 0.0) -> keras.Model:
    """Training model: input -> augmenter -> core (the core's weights are shared, not copied)."""
    augmenter = augmenter if augmenter is not None else build_augmenter(seed=seed, erasing=erasing)
    inputs = keras.Input(shape=core.input_shape[1:], name="pixels")
    outputs = core(augmenter(inputs))
    return keras.Model(inputs, outputs, name=f"train_{core.name}")
