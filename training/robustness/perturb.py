"""Graded corruptions of 48x48 grey face crops for the robustness benchmark.

Pure numpy (+ PIL for JPEG and resizing), batch-wise, seeded: ``perturb(x, name, severity,
seed)`` takes uint8 or float crops (N, 48, 48) in grey levels 0..255 and returns new uint8
crops. The same (x, name, severity, seed) always gives the same bytes, whichever other
conditions run, because every (condition, severity) draws from its own generator
``default_rng([seed, crc32(name), severity])``.

Severities are 1 (mild), 2 (moderate), 3 (severe); 0 is the clean crop. Each condition's
parameters per severity are in ``CONDITIONS[name].levels`` and go into the benchmark's JSON.
Positions refer to the FER2013 48x48 crop: on the average PrivateTest face the eyes are the
darkest rows 14-21 (pupils at row ~17, columns ~10-20 and ~28-38), the nose tip is at rows
~27-30 and the mouth at rows ~36-43, columns ~16-32. Rows/columns are Python slices
``[start, stop)``.

| condition | family | what (mild / moderate / severe) |
| --- | --- | --- |
| ``low_light`` | lighting | ``255 * gain * (x/255)**gamma`` + Gaussian sensor noise sigma: gain 0.65/0.45/0.30, gamma 1.15/1.4/1.7, sigma 2/4/6 grey levels (mean of an average crop ~76/44/24) |
| ``night`` | lighting | Gaussian blur sigma 0.6/0.9/1.2 px, then gain 0.25/0.18/0.12, gamma 1.6/1.8/2.0, noise sigma 5/7/9 (mean ~21/14/8) |
| ``over_exposure`` | lighting | ``255 * min(1, gain * (x/255)**gamma)``: gain 1.3/1.6/2.0, gamma 0.9/0.8/0.7 |
| ``motion_blur`` | blur | a line kernel 3/5/9 px long at a random angle per image |
| ``defocus_blur`` | blur | an anti-aliased disk of radius 1/2/3 px |
| ``jpeg`` | compression | PIL JPEG at quality 50/25/10 (of the 48x48 crop) |
| ``roll`` | pose | in-plane rotation by 10/20/30 degrees about the centre, sign random per image, bilinear, mirrored borders |
| ``scale`` | resolution | box-filtered down to 32/24/16 px, bilinear back up to 48 |
| ``occlusion_eyes`` | occlusion | sunglasses: rows 15-21/13-23/11-25 x columns 8-40/5-43/3-45 set to 20 |
| ``occlusion_lower`` | occlusion | mask: rows 34-48 x cols 10-38 (mouth, chin) / rows 29-48 x cols 4-44 (below the nose) / rows 25-48 x cols 2-46 (up to the nose bridge) set to 200 |
| ``occlusion_hand`` | occlusion | a 12/16/20 px square at a random place inside the crop, filled with the crop's median grey (a hand of that skin tone) |
| ``low_light_roll`` | combined | ``roll`` then ``low_light``, both at the severity |
| ``night_mask`` | combined | ``occlusion_lower`` moderate, then ``night`` at the severity |
| ``low_light_scale`` | combined | ``scale`` then ``low_light``, both at the severity |

Order inside the combinations: the scene (pose, occluders, face size) first, then the light and
the sensor, as a camera would see it. Geometric conditions do not model what the page's
eye alignment would undo: they measure the model's own tolerance when alignment is off.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SIZE = 48
SEVERITIES = (1, 2, 3)
SEVERITY_NAMES = {0: "clean", 1: "mild", 2: "moderate", 3: "severe"}


@dataclass(frozen=True)
class Condition:
    name: str
    family: str
    title: str
    levels: dict[int, dict]  # severity -> parameters
    fn: Callable[[np.ndarray, dict, np.random.Generator], np.ndarray] = field(repr=False)

    def params(self, severity: int) -> dict:
        if severity not in self.levels:
            raise ValueError(f"{self.name} has severities {sorted(self.levels)}, not {severity}")
        return self.levels[severity]


# --------------------------------------------------------------------------- helpers


def as_float(x: np.ndarray) -> np.ndarray:
    """Crops (N, H, W) or one crop (H, W) as float64 grey levels; checked."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected crops (N, H, W), got shape {x.shape}")
    return x.astype("float64")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Grey levels rounded (half to even) and clipped to uint8, as a camera quantises them."""
    return np.clip(np.rint(np.asarray(x, "float64")), 0, 255).astype("uint8")


def _pad(x: np.ndarray, r: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (r, r), (r, r)), mode="reflect")


def convolve(x: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Correlate each crop with a small odd kernel (k, k) or its own (N, k, k), mirrored edges."""
    x = as_float(x)
    kernels = np.asarray(kernels, "float64")
    if kernels.ndim == 2:
        kernels = np.broadcast_to(kernels, (len(x), *kernels.shape))
    k = kernels.shape[-1]
    r = k // 2
    padded = _pad(x, r)
    h, w = x.shape[1:]
    out = np.zeros_like(x)
    for dy in range(k):
        for dx in range(k):
            weight = kernels[:, dy, dx]
            if np.any(weight):
                out += weight[:, None, None] * padded[:, dy:dy + h, dx:dx + w]
    return out


def gaussian_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-r, r + 1)
    g = np.exp(-(t**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """A defocus disk: each cell weighted by the share of it inside the circle."""
    r = int(np.ceil(radius))
    s = supersample
    t = (np.arange((2 * r + 1) * s) + 0.5) / s - (r + 0.5)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    inside = (yy**2 + xx**2 <= radius**2).astype("float64")
    k = inside.reshape(2 * r + 1, s, 2 * r + 1, s).mean(axis=(1, 3))
    return k / k.sum()


def line_kernel(length: int, angle_rad: float, samples_per_px: int = 16) -> np.ndarray:
    """Motion blur: a line of `length` px through the centre, splatted bilinearly."""
    r = length // 2
    k = np.zeros((2 * r + 1, 2 * r + 1))
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, length * samples_per_px)
    ys, xs = r + t * np.sin(angle_rad), r + t * np.cos(angle_rad)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = np.clip(y0 + dy, 0, 2 * r), np.clip(x0 + dx, 0, 2 * r)
            np.add.at(k, (yi, xi), wy * wx)
    return k / k.sum()


def _reflect(coord: np.ndarray, size: int) -> np.ndarray:
    """Mirror coordinates into [0, size - 1] (-1 -> 1, size -> size - 2)."""
    period = 2 * (size - 1)
    c = np.mod(coord, period)
    return np.where(c > size - 1, period - c, c)


def rotate(x: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Rotate each crop by its own angle in degrees about the centre (bilinear, mirrored
    borders); the sign picks the direction."""
    x = as_float(x)
    n, h, w = x.shape
    theta = np.deg2rad(np.asarray(angles_deg, "float64")).reshape(n, 1, 1)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    # inverse mapping: the output pixel at (y, x) comes from the input rotated back
    cos, sin = np.cos(theta), np.sin(theta)
    src_x = _reflect(cos * xx - sin * yy + cx, w)
    src_y = _reflect(sin * xx + cos * yy + cy, h)
    y0 = np.clip(np.floor(src_y).astype(int), 0, h - 2)
    x0 = np.clip(np.floor(src_x).astype(int), 0, w - 2)
    fy, fx = src_y - y0, src_x - x0
    idx = np.arange(n)[:, None, None]

    def at(dy, dx):
        return x[idx, y0 + dy, x0 + dx]

    return ((1 - fy) * ((1 - fx) * at(0, 0) + fx * at(0, 1))
            + fy * ((1 - fx) * at(1, 0) + fx * at(1, 1)))


def _pil_map(x: np.ndarray, fn: Callable) -> np.ndarray:
    from PIL import Image

    crops = to_uint8(as_float(x))
    return np.stack([np.asarray(fn(Image.fromarray(c, mode="L")), "uint8") for c in crops])


# --------------------------------------------------------------------------- the conditions


def _light(x, p, rng):
    y = 255.0 * p["gain"] * (np.clip(as_float(x), 0, 255) / 255.0) ** p["gamma"]
    if p.get("noise_sigma"):
        y = y + rng.normal(0.0, p["noise_sigma"], size=y.shape)
    return y


def _night(x, p, rng):
    return _light(convolve(x, gaussian_kernel(p["blur_sigma"])), p, rng)


def _over(x, p, rng):
    return np.minimum(255.0, _light(x, p, rng))


def _motion(x, p, rng):
    x = as_float(x)
    angles = rng.uniform(0, np.pi, size=len(x))
    return convolve(x, np.stack([line_kernel(p["length_px"], a) for a in angles]))


def _defocus(x, p, rng):
    return convolve(x, disk_kernel(p["radius_px"]))


def _jpeg(x, p, rng):
    from PIL import Image

    def codec(img):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=p["quality"])
        return Image.open(io.BytesIO(buf.getvalue())).convert("L")

    return _pil_map(x, codec)


def _roll(x, p, rng):
    x = as_float(x)
    signs = rng.choice((-1.0, 1.0), size=len(x))
    return rotate(x, signs * p["degrees"])


def _scale(x, p, rng):
    from PIL import Image

    side = p["pixels"]
    return _pil_map(x, lambda img: img.resize((side, side), Image.BOX)
                    .resize((SIZE, SIZE), Image.BILINEAR))


def _box(x, p, rng):
    x = as_float(x).copy()
    (r0, r1), (c0, c1) = p["rows"], p["cols"]
    x[:, r0:r1, c0:c1] = p["fill"]
    return x


def _hand(x, p, rng):
    x = as_float(x).copy()
    n, h, w = x.shape
    s = p["side_px"]
    tops = rng.integers(0, h - s + 1, size=n)
    lefts = rng.integers(0, w - s + 1, size=n)
    fill = np.median(x.reshape(n, -1), axis=1)
    for i in range(n):
        x[i, tops[i]:tops[i] + s, lefts[i]:lefts[i] + s] = fill[i]
    return x


def _combined(x, p, rng):
    for name, severity in p["steps"]:
        cond = CONDITIONS[name]
        x = to_uint8(cond.fn(x, cond.params(severity), rng))
    return x


def _levels(**columns) -> dict[int, dict]:
    """{1: {k: v1}, 2: {k: v2}, 3: {k: v3}} from k=(v1, v2, v3)."""
    return {s: {k: v[i] for k, v in columns.items()} for i, s in enumerate(SEVERITIES)}


_LOW_LIGHT = _levels(gain=(0.65, 0.45, 0.30), gamma=(1.15, 1.4, 1.7), noise_sigma=(2, 4, 6))
_CONDITIONS = [
    Condition("low_light", "lighting", "low light (gamma, gain, sensor noise)", _LOW_LIGHT, _light),
    Condition("night", "lighting", "night (very dark, strong noise, blur)",
              _levels(gain=(0.25, 0.18, 0.12), gamma=(1.6, 1.8, 2.0), noise_sigma=(5, 7, 9),
                      blur_sigma=(0.6, 0.9, 1.2)), _night),
    Condition("over_exposure", "lighting", "over-exposure (gain, clipped highlights)",
              _levels(gain=(1.3, 1.6, 2.0), gamma=(0.9, 0.8, 0.7)), _over),
    Condition("motion_blur", "blur", "motion blur (random direction)",
              _levels(length_px=(3, 5, 9)), _motion),
    Condition("defocus_blur", "blur", "defocus blur (disk)", _levels(radius_px=(1, 2, 3)),
              _defocus),
    Condition("jpeg", "compression", "JPEG compression", _levels(quality=(50, 25, 10)), _jpeg),
    Condition("roll", "pose", "in-plane roll (random sign)", _levels(degrees=(10, 20, 30)), _roll),
    Condition("scale", "resolution", "small face (down-sampled, up again)",
              _levels(pixels=(32, 24, 16)), _scale),
    Condition("occlusion_eyes", "occlusion", "eyes occluded (sunglasses)",
              _levels(rows=((15, 21), (13, 23), (11, 25)), cols=((8, 40), (5, 43), (3, 45)),
                      fill=(20, 20, 20)), _box),
    Condition("occlusion_lower", "occlusion", "lower face occluded (mask)",
              _levels(rows=((34, 48), (29, 48), (25, 48)), cols=((10, 38), (4, 44), (2, 46)),
                      fill=(200, 200, 200)), _box),
    Condition("occlusion_hand", "occlusion", "hand-sized patch at a random place",
              _levels(side_px=(12, 16, 20)), _hand),
    Condition("low_light_roll", "combined", "low light + roll",
              {s: {"steps": [["roll", s], ["low_light", s]]} for s in SEVERITIES}, _combined),
    Condition("night_mask", "combined", "night + mask",
              {s: {"steps": [["occlusion_lower", 2], ["night", s]]} for s in SEVERITIES},
              _combined),
    Condition("low_light_scale", "combined", "low light + small face",
              {s: {"steps": [["scale", s], ["low_light", s]]} for s in SEVERITIES}, _combined),
]
CONDITIONS: dict[str, Condition] = {c.name: c for c in _CONDITIONS}
FAMILIES = tuple(dict.fromkeys(c.family for c in _CONDITIONS))


def rng_for(name: str, severity: int, seed: int) -> np.random.Generator:
    """The generator of one (condition, severity): independent of every other condition."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(severity)])


def perturb(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Crops (N, 48, 48) under condition `name` at `severity` (0: a uint8 copy), uint8 out."""
    if name not in CONDITIONS and name != "clean":
        raise ValueError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")
    if severity == 0 or name == "clean":
        return to_uint8(as_float(x))
    cond = CONDITIONS[name]
    return to_uint8(cond.fn(x, cond.params(severity), rng_for(name, severity, seed)))
