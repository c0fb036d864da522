"""Robustness augmentations (opt-in, `fer-hybrid train --robust-aug`): the conditions a phone
camera meets and the robustness benchmark measures, trained in-graph like the rest of
`training.fit.augment`.

Each layer changes an image with probability `p` (`--robust-p`, default 0.3), draws its
parameters per image, is active only with `training=True`, takes NHWC float images on the
0..255 scale (the model contract) and uses only `keras.ops`/`keras.random` with a
`SeedGenerator`, so it runs inside the compiled train step on TensorFlow and JAX alike.
The default ranges are "moderate" conditions (rows and sizes are pixels of the 48x48 aligned
FER crop; other sizes scale with the image):

| name (`--robust-aug`) | layer | what it draws per image |
| --- | --- | --- |
| `low_light` | `RandomLowLight` | dark: gamma 1.0-3.0 then gain 0.2-1.0; or (1 in 4 of the changed images) over-exposed: gamma 0.5-1.0, gain 1.2-2.0; then Gaussian sensor noise, sigma 0-12 grey levels; clipped to 0..255 |
| `blur` | `RandomBlur` | half Gaussian defocus (sigma 0.3-1.5 px), half motion blur (a line 3-7 px long, horizontal, vertical or diagonal); one 7x7 kernel per image |
| `occlusion` | `RandomOcclusion` | one of: an eye band (sunglasses; rows ~10-26 around the eyes at 14-22), a lower-face mask (from row 25-31 down: the nose and the mouth at 32-42), a hand-sized 14-26 px patch anywhere; filled with one random grey level or (half the time) noise |
| `downscale` | `RandomDownscale` | a far face: down to 16-32 px (antialiased) and bilinearly back up to 48 |
| `rotation30` | the augmenter's `RandomRotation` | +/-30 degrees instead of +/-10 (every image, like the base rotation; `p` does not apply) |

`build_augmenter` (training.fit.augment) puts them after the geometric augmentation, in the order
light travels: the occluder is in the scene, the lens blurs it, the sensor darkens and
noises what the lens gives it, and a far face has few sensor pixels (so its noise is coarse
too); random erasing stays last. Names are stored in config.json expanded (`all` -> the five
names), so a run rebuilds the same augmenter if `all` grows later.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from training.fit.augment_names import ROBUST_AUGS, ROBUST_P, robust_names
from training.models.serialization import PACKAGE

__all__ = ["ROBUST_AUGS", "ROBUST_P", "robust_layers", "robust_names"]

REFERENCE_SIDE = 48.0  # the rows/sizes below are pixels of the 48x48 FER crop


def robust_layers(names, *, p: float = ROBUST_P, seed=None) -> list:
    """The layers for the (expanded) `names`, minus rotation30 (a parameter of the rotation);
    `seed(i)` gives layer i its seed."""
    seed = seed or (lambda i: None)
    make = {"occlusion": lambda: RandomOcclusion(p, seed=seed(6), name="robust_occlusion"),
            "blur": lambda: RandomBlur(p, seed=seed(7), name="robust_blur"),
            "low_light": lambda: RandomLowLight(p, seed=seed(8), name="robust_low_light"),
            "downscale": lambda: RandomDownscale(p, seed=seed(9), name="robust_downscale")}
    return [make[n]() for n in robust_names(names) if n in make]


def _pair(v) -> tuple[float, float]:
    lo, hi = (float(x) for x in v)
    if lo > hi:
        raise ValueError(f"range {v!r}: low end above the high end")
    return lo, hi


class _PerImage(layers.Layer):
    """Shared plumbing: probability `p` per image, a seed, identity unless training."""

    def __init__(self, p: float = ROBUST_P, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1] (got {p})")
        self.p = float(p)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or self.p <= 0:
            return images
        x = ops.cast(images, "float32")
        n = ops.shape(x)[0]
        out = self.change(x, n)
        apply = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < self.p
        return ops.cast(ops.where(apply, out, x), images.dtype)

    def uniform(self, n, lo_hi, shape=(1, 1, 1)):
        lo, hi = lo_hi
        return keras.random.uniform((n, *shape), lo, hi, seed=self.seed_generator)

    def change(self, x, n):  # every image changed; `call` keeps a fraction p of them
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "p": self.p, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomLowLight(_PerImage):
    """Low light (or over-exposure) and sensor noise: 255 * gain * (x/255)^gamma + N(0, sigma).

    A dark phone shot loses the mid-tones (gamma > 1) and the level (gain < 1); over-exposure
    (probability `over_p` among the changed images) lifts them and clips the highlights.
    """

    def __init__(self, p: float = ROBUST_P, gamma=(1.0, 3.0), gain=(0.2, 1.0),
                 noise=(0.0, 12.0), over_p: float = 0.25, over_gamma=(0.5, 1.0),
                 over_gain=(1.2, 2.0), seed: int | None = None, **kwargs):
        super().__init__(p, seed, **kwargs)
        self.gamma, self.gain, self.noise = _pair(gamma), _pair(gain), _pair(noise)
        self.over_p = float(over_p)
        self.over_gamma, self.over_gain = _pair(over_gamma), _pair(over_gain)

    def change(self, x, n):
        over = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < self.over_p
        gamma = ops.where(over, self.uniform(n, self.over_gamma), self.uniform(n, self.gamma))
        gain = ops.where(over, self.uniform(n, self.over_gain), self.uniform(n, self.gain))
        sigma = self.uniform(n, self.noise)
        # clip first: a fractional power of a (rounding-)negative value is NaN
        level = 255.0 * gain * ops.power(ops.clip(x / 255.0, 0.0, 1.0), gamma)
        noise = keras.random.normal(ops.shape(x), seed=self.seed_generator) * sigma
        return ops.clip(level + noise, 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "gamma": list(self.gamma), "gain": list(self.gain),
                "noise": list(self.noise), "over_p": self.over_p,
                "over_gamma": list(self.over_gamma), "over_gain": list(self.over_gain)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomBlur(_PerImage):
    """Defocus (Gaussian, sigma in `sigma` px) or, with probability `motion_p`, motion blur (a
    line `motion_length` px long, horizontal, vertical or along a diagonal).

    One 7x7 kernel per image (7 taps hold +/-2 sigma of the widest Gaussian and the longest
    line; a fractional length weights the line's end taps), applied by one depthwise
    convolution with the batch moved into the channels, so every image gets its own kernel
    for ~49 multiply-adds a pixel. Borders are mirrored, so edges do not darken. (Under
    `--distribute` with JAX the batch axis is sharded, so XLA regathers it for this one
    convolution: correct, a little traffic between devices.)
    """

    TAPS = 7

    def __init__(self, p: float = ROBUST_P, sigma=(0.3, 1.5), motion_length=(3.0, 7.0),
                 motion_p: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(p, seed, **kwargs)
        self.sigma, self.motion_length = _pair(sigma), _pair(motion_length)
        if self.motion_length[1] > self.TAPS or self.sigma[0] <= 0:
            raise ValueError(f"motion_length must fit {self.TAPS} taps and sigma be > 0")
        self.motion_p = float(motion_p)

    def kernels(self, n):
        """(n, 7, 7) kernels, each summing to 1."""
        r = (self.TAPS - 1) // 2
        t = ops.cast(ops.arange(-r, r + 1), "float32")
        dy, dx = t[None, :, None], t[None, None, :]
        sigma = self.uniform(n, self.sigma, (1, 1))
        gauss = ops.exp(-(dy * dy + dx * dx) / (2.0 * sigma * sigma))
        # A line through the centre along (uy, ux): horizontal, vertical, both diagonals.
        d = keras.random.randint((n,), 0, 4, seed=self.seed_generator)
        uy = ops.take(ops.convert_to_tensor([0.0, 1.0, 1.0, 1.0]), d)[:, None, None]
        ux = ops.take(ops.convert_to_tensor([1.0, 0.0, 1.0, -1.0]), d)[:, None, None]
        on_line = ops.equal(dy * ux - dx * uy, 0.0)  # integer grid: exact
        along = (dy * uy + dx * ux) / (uy * uy + ux * ux)  # tap index along the line
        half = (self.uniform(n, self.motion_length, (1, 1)) - 1.0) / 2.0
        line = ops.where(on_line, ops.clip(half + 0.5 - ops.abs(along), 0.0, 1.0), 0.0)
        motion = keras.random.uniform((n, 1, 1), seed=self.seed_generator) < self.motion_p
        k = ops.where(motion, line, gauss)
        return k / ops.sum(k, axis=(1, 2), keepdims=True)

    def change(self, x, n):
        r = (self.TAPS - 1) // 2
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        k = self.kernels(n)
        xp = ops.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="symmetric")
        # (N, H, W, C) -> (1, H, W, N*C): image i's channels are depthwise channels i*C..
        xt = ops.reshape(ops.transpose(xp, (1, 2, 0, 3)), (1, h + 2 * r, w + 2 * r, -1))
        kt = ops.transpose(k, (1, 2, 0))[:, :, :, None]  # (7, 7, N, 1)
        kt = ops.reshape(ops.repeat(kt, c, axis=3), (self.TAPS, self.TAPS, -1, 1))
        y = ops.depthwise_conv(xt, kt, padding="valid")
        return ops.transpose(ops.reshape(y, (h, w, -1, c)), (2, 0, 1, 3))

    def get_config(self):
        return {**super().get_config(), "sigma": list(self.sigma),
                "motion_length": list(self.motion_length), "motion_p": self.motion_p}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomOcclusion(_PerImage):
    """One occluder per image, of a kind drawn from `kinds`: "eyes" (sunglasses: a band over
    the eyes), "mask" (a face mask: nose, mouth and chin), "hand" (a hand-sized patch
    anywhere). Filled with one random grey level or, with probability `noise_p`, uniform
    noise (like random erasing).

    Rows are those of the aligned 48x48 crop (eyes ~14-22, mouth ~32-42), jittered so the
    model cannot learn one fixed edge: eye band centre row 16-20, 8-12 rows tall, columns
    from 1-6 to 42-47; mask from row 25-31 to the bottom, columns from 0-5 to 43-48; hand
    14-26 px a side, anywhere in the image.
    """

    KINDS = ("eyes", "mask", "hand")

    def __init__(self, p: float = ROBUST_P, kinds=KINDS, noise_p: float = 0.5,
                 seed: int | None = None, **kwargs):
        super().__init__(p, seed, **kwargs)
        self.kinds = tuple(kinds)
        bad = [k for k in self.kinds if k not in self.KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be some of {self.KINDS} (got {kinds!r})")
        self.noise_p = float(noise_p)

    def boxes(self, n):
        """(top, bottom, left, right) in pixels of the 48 crop, each (n,), per the kind."""
        u = lambda lo, hi: self.uniform(n, (lo, hi), ())  # noqa: E731
        centre, tall = u(16.0, 20.0), u(8.0, 12.0)
        eyes = (centre - tall / 2, centre + tall / 2, u(1.0, 6.0), u(42.0, 47.0))
        mask = (u(25.0, 31.0), ops.full((n,), 48.0), u(0.0, 5.0), u(43.0, 48.0))
        hh, hw = u(14.0, 26.0), u(14.0, 26.0)
        top, left = u(0.0, 1.0) * (48.0 - hh), u(0.0, 1.0) * (48.0 - hw)
        hand = (top, top + hh, left, left + hw)
        by_kind = {"eyes": eyes, "mask": mask, "hand": hand}
        choice = keras.random.randint((n,), 0, len(self.kinds), seed=self.seed_generator)
        box = by_kind[self.kinds[0]]
        for i, kind in enumerate(self.kinds[1:], start=1):
            box = tuple(ops.where(ops.equal(choice, i), a, b)
                        for a, b in zip(by_kind[kind], box, strict=True))
        return box

    def change(self, x, n):
        h, w = x.shape[1], x.shape[2]
        top, bottom, left, right = self.boxes(n)
        sy, sx = h / REFERENCE_SIDE, w / REFERENCE_SIDE
        rows = ops.cast(ops.arange(h), "float32")[None, :]  # (1, H)
        cols = ops.cast(ops.arange(w), "float32")[None, :]
        in_r = ops.logical_and(rows >= (top * sy)[:, None], rows < (bottom * sy)[:, None])
        in_c = ops.logical_and(cols >= (left * sx)[:, None], cols < (right * sx)[:, None])
        inside = ops.logical_and(in_r[:, :, None], in_c[:, None, :])[..., None]  # (N, H, W, 1)
        grey = self.uniform(n, (0.0, 255.0))
        noise = keras.random.uniform(ops.shape(x), 0.0, 255.0, seed=self.seed_generator)
        noisy = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < self.noise_p
        return ops.where(inside, ops.where(noisy, noise, grey), x)

    def get_config(self):
        return {**super().get_config(), "kinds": list(self.kinds), "noise_p": self.noise_p}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomDownscale(_PerImage):
    """A far face: down to a random side in `size` (whole pixels, per image; for the 48 crop)
    with an antialiasing triangle filter, then bilinearly back up.

    `keras.ops.image.resize` takes one output size per batch, and a size drawn at run time is
    a new shape that XLA would compile again; instead each image's down-then-up resampling
    is one (H, H) matrix R built for its own size (the low-resolution side padded to the
    largest), and the image becomes R_y @ x @ R_x^T: per-image sizes, static shapes, ~3
    48x48x48 products per image.
    """

    def __init__(self, p: float = ROBUST_P, size=(16, 32), seed: int | None = None, **kwargs):
        super().__init__(p, seed, **kwargs)
        self.size = tuple(int(s) for s in _pair(size))
        if self.size[0] < 1:
            raise ValueError(f"size must be >= 1 (got {size!r})")

    @staticmethod
    def resampling(low, full: int, cap: int):
        """(n, full, full): down from `full` to `low` (n,) pixels, then bilinearly back up;
        `cap` >= every `low`."""
        scale = full / low[:, None, None]  # > 1: source pixels per low-resolution pixel
        k = ops.cast(ops.arange(cap), "float32")[None, :, None]
        j = ops.cast(ops.arange(full), "float32")[None, None, :]
        used = ops.cast(k < low[:, None, None], "float32")
        # Down: a triangle filter as wide as the scale (area-weighting, like an antialiased
        # bilinear resize), renormalised at the borders.
        down = ops.relu(1.0 - ops.abs(j - ((k + 0.5) * scale - 0.5)) / scale) * used
        down = down / ops.maximum(ops.sum(down, axis=2, keepdims=True), 1e-6)  # (n, cap, full)
        # Up: bilinear with half-pixel centres, clamped at the borders.
        u = ops.clip((ops.transpose(j, (0, 2, 1)) + 0.5) / scale - 0.5, 0.0,
                     low[:, None, None] - 1.0)  # (n, full, 1)
        up = ops.relu(1.0 - ops.abs(u - ops.transpose(k, (0, 2, 1)))) \
            * ops.transpose(used, (0, 2, 1))  # (n, full, cap)
        return ops.matmul(up, down)

    def change(self, x, n):
        h, w = x.shape[1], x.shape[2]
        lo, hi = self.size
        side = ops.floor(self.uniform(n, (lo, hi + 1.0), ()))  # whole pixels, lo..hi
        side = ops.minimum(side, float(hi))  # uniform's maxval is exclusive, but be sure

        def matrix(full):
            low = ops.maximum(ops.round(side * full / REFERENCE_SIDE), 1.0)
            cap = max(1, min(full, round(hi * full / REFERENCE_SIDE)))
            return self.resampling(ops.minimum(low, float(cap)), full, cap)

        ry = matrix(h)
        rx = ry if w == h else matrix(w)
        y = ops.einsum("nij,njwc->niwc", ry, x)
        return ops.einsum("niwc,nlw->nilc", y, rx)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size)}
