"""In-graph data augmentation (runs on the accelerator, inside the training model).

The paper's augmentation: random horizontal flip, +/-10 degree rotation,
+/-10 % zoom and +/-10 % horizontal/vertical shift. The layers are active only
when called with `training=True`, so the wrapped model evaluates unaugmented.
`RandomErasing` (cutout filled with noise) and the robustness conditions of
`training.fit.augment_robust` (low light, blur, occlusion, down-scaling, +/-30 degree rotation;
`--robust-aug`) are the opt-in extras, off by default; `build_augmenter` is the one place
that assembles the pipeline.

Only the *core* model is saved as `best.keras` and exported; the training checkpoint
holds the whole training model (augmenter included, to resume exactly). The augmenter
wraps the core for training:

    train_model = with_augmentation(core, seed=0)   # input -> augmenter -> core
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from training.fit.augment_robust import ROBUST_P, robust_layers, robust_names
from training.models.serialization import PACKAGE


def build_augmenter(*, seed: int | None = None, flip: bool = True, rotation_deg: float = 10.0,
                    zoom: float = 0.1, shift: float = 0.1, erasing: float = 0.0,
                    robust=(), robust_p: float = ROBUST_P,
                    name: str = "augment") -> keras.Sequential:
    """A keras.Sequential of Random* layers (flip, rotation, zoom, translation).

    erasing: probability of random erasing (cutout with noise) per image, applied last
    so the erased patch is not blurred by the geometric resampling; 0 (default) leaves
    it out, so the paper's augmenter is unchanged.
    robust: names of `training.fit.augment_robust.ROBUST_AUGS` (or "all"); "rotation30" widens
    the rotation to +/-30 degrees, the others add their layer (each changing an image with
    probability `robust_p`) after the geometric ones. Empty (default): unchanged.
    """
    robust = robust_names(robust)
    if "rotation30" in robust:
        rotation_deg = max(rotation_deg, 30.0)

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
    steps.extend(robust_layers(robust, p=robust_p, seed=s))  # after the geometry: see there
    if erasing:
        steps.append(RandomErasing(erasing, seed=s(5), name="random_erasing"))
    return keras.Sequential(steps, name=name)


def with_augmentation(core: keras.Model, augmenter: keras.Layer | None = None, *,
                      seed: int | None = None, erasing: float = 0.0, robust=(),
                      robust_p: float = ROBUST_P) -> keras.Model:
    """Training model: input -> augmenter -> core (the core's weights are shared, not copied)."""
    if augmenter is None:
        augmenter = build_augmenter(seed=seed, erasing=erasing, robust=robust, robust_p=robust_p)
    inputs = keras.Input(shape=core.input_shape[1:], name="pixels")
    outputs = core(augmenter(inputs))
    return keras.Model(inputs, outputs, name=f"train_{core.name}")


# The geometric layers Keras marks `supports_jit = False` on every backend.
_GEOMETRIC = (layers.RandomRotation, layers.RandomZoom, layers.RandomTranslation)


def allow_xla(model: keras.Model) -> bool:
    """Under JAX, let XLA compile a training model that holds the geometric Random* layers;
    returns whether the model will be compiled with XLA.

    Keras marks RandomRotation, RandomZoom and RandomTranslation `supports_jit = False`
    because TensorFlow's ImageProjectiveTransformV3 has no XLA kernel, and one such layer
    turns XLA off for the whole model (`jit_compile="auto"`, and the setter refuses True).
    Under JAX the same layers are plain jax ops (map_coordinates) that compile fine, while a
    model left uncompiled runs every op from Python, one dispatch at a time: the first GPU
    session trained at about 1 s per batch with the H200 mostly 0-5 % busy. TensorFlow
    keeps Keras' choice (its graph mode is fast without XLA). Call it before `compile` or
    after it (a compiled model is switched to XLA), and after loading a compiled checkpoint
    (loading rebuilds the layers with the flag off).
    """
    compiled = getattr(model, "compiled", False)
    if keras.backend.backend() == "jax":
        # _flatten_layers: Keras' own walk over nested layers (it is what decides "auto").
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, _GEOMETRIC):
                layer.supports_jit = True
        if compiled and not model.jit_compile:  # a loaded checkpoint, compiled with XLA refused
            model.jit_compile = True  # (the setter still refuses if another layer cannot)
            model.train_function = model.test_function = model.predict_function = None
    if compiled:
        return bool(model.jit_compile)
    return all(layer.supports_jit for layer in model._flatten_layers())


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomErasing(layers.Layer):
    """With probability `p`, replace one random rectangle of each image by uniform noise.

    Area is 2..`max_area` of the image, aspect ratio 0.3..3.3 (Zhong et al. 2017).
    Images are NHWC on the 0..255 scale (the model contract); noise is drawn in the
    same range. Only active with `training=True`.
    """

    def __init__(self, p: float = 0.5, min_area: float = 0.02, max_area: float = 0.25,
                 value_range: tuple = (0.0, 255.0), seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.p = float(p)
        self.min_area = float(min_area)
        self.max_area = float(max_area)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or self.p <= 0:
            return images
        shape = ops.shape(images)
        n, h, w = shape[0], shape[1], shape[2]
        hf, wf = ops.cast(h, "float32"), ops.cast(w, "float32")
        sg = self.seed_generator
        area = keras.random.uniform((n,), self.min_area, self.max_area, seed=sg) * hf * wf
        log_r = keras.random.uniform((n,), math.log(0.3), math.log(1 / 0.3), seed=sg)
        ratio = ops.exp(log_r)
        eh = ops.minimum(ops.sqrt(area * ratio), hf)
        ew = ops.minimum(ops.sqrt(area / ratio), wf)
        top = keras.random.uniform((n,), seed=sg) * (hf - eh)
        left = keras.random.uniform((n,), seed=sg) * (wf - ew)
        rows = ops.cast(ops.arange(h), "float32")[None, :]  # (1, H)
        cols = ops.cast(ops.arange(w), "float32")[None, :]
        in_r = ops.logical_and(rows >= top[:, None], rows < (top + eh)[:, None])  # (N, H)
        in_c = ops.logical_and(cols >= left[:, None], cols < (left + ew)[:, None])  # (N, W)
        apply = keras.random.uniform((n,), seed=sg) < self.p
        mask = ops.logical_and(in_r[:, :, None], in_c[:, None, :])
        mask = ops.logical_and(mask, apply[:, None, None])[..., None]  # (N, H, W, 1)
        lo, hi = self.value_range
        noise = keras.random.uniform(ops.shape(images), lo, hi, seed=sg, dtype=images.dtype)
        return ops.where(mask, noise, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "p": self.p, "min_area": self.min_area,
                "max_area": self.max_area, "value_range": list(self.value_range),
                "seed": self.seed}
