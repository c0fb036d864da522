"""Multi-face scenes for the page's detector and classifier (issue 12, "Dynamic environments").

Faces come only from images that ship inside packages: scikit-image's astronaut and LFW subset,
matplotlib's Grace Hopper portrait (never a dataset image). `compose` pastes them onto a
640x480 background (the live page asks the camera for 640x480) at a chosen face width,
in-plane rotation and lighting, and returns the image with the ground truth. `match` pairs ground
truth with the page's detections; `compare` sets a scene face against the same face as a single
crop. Pure NumPy/scikit-image: the browser part lives in e2e_support.analyse_photo.

Conventions (what the numbers in models/scenes.* mean):

* face size = width in pixels of the face box (the box BlazeFace draws on that face upright);
* ground-truth box = that box scaled and centred on the pasted face, axis-aligned and *not*
  enlarged by the rotation (BlazeFace boxes stay face-sized on tilted faces);
* a face counts as detected when a detection overlaps it with IoU >= MATCH_IOU, one detection per
  face, best overlap first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CANVAS = (480, 640)  # (height, width): the page's camera resolution
MATCH_IOU = 0.4
# Gain and gamma on the face's region: out = 255 * gain * (in / 255) ** gamma, plus sensor noise
# (std in grey levels) where the light is low, as a phone camera adds it.
LIGHTS = {
    "normal": (1.0, 1.0, 0.0),
    "dim": (0.45, 1.2, 2.0),
    "dark": (0.16, 1.4, 3.0),
}
BACKGROUNDS = ("plain", "noise", "gradient")


@dataclass(frozen=True)
class FaceSource:
    """A face photo and the face box in it (x, y, w, h); `kind` says where it came from."""

    name: str
    image: np.ndarray  # RGB uint8
    box: tuple[float, float, float, float]
    kind: str
    margin: float = 1.8  # patch side / face side: hair, ears and some shoulders come along


@dataclass(frozen=True)
class Placement:
    """One face in a scene: which source, face width, rotation (degrees, counter-clockwise),
    light."""

    source: int
    size: int
    angle: float = 0.0
    light: str = "normal"
    centre: tuple[float, float] | None = None  # (x, y); None: `place` chooses


@dataclass
class Scene:
    image: np.ndarray
    placements: list[Placement]
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # ground truth


# ---------------------------------------------------------------- faces shipped in packages
# Face boxes measured once with the page's BlazeFace (`python tests/bench_scenes.py --calibrate`):
# the two photos on their own; LFW as the mean box over its 100 faces pasted 160 px wide (the
# 25x25 crops run from brow to chin, BlazeFace's box sits a little lower and inside).
ASTRONAUT_BOX = (172.1, 74.3, 105.2, 105.2)
HOPPER_BOX = (168.5, 137.5, 198.8, 198.8)
LFW_BOX = (1.1, 4.0, 20.4, 20.4)
LFW_MARGIN = 1.3  # the crops have no hair or background: less patch, less smeared edge


def astronaut_source() -> FaceSource:
    from skimage import data

    return FaceSource("astronaut", data.astronaut(), ASTRONAUT_BOX, "photo")


def hopper_source() -> FaceSource:
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg

    img = mpimg.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return FaceSource("grace_hopper", np.ascontiguousarray(img[..., :3]), HOPPER_BOX, "photo")


def lfw_sources(n: int) -> list[FaceSource]:
    """The first `n` of scikit-image's 100 LFW faces (25x25 grey, tight crops), as RGB."""
    from skimage import data

    faces = data.lfw_subset()[:100]  # the other 100 images are not faces
    out = []
    for i, f in enumerate(faces[:n]):
        rgb = np.repeat(np.rint(f * 255).astype(np.uint8)[..., None], 3, axis=2)
        out.append(FaceSource(f"lfw{i:02d}", rgb, LFW_BOX, "lfw", LFW_MARGIN))
    return out


# ---------------------------------------------------------------- composing
def background(kind: str, rng: np.random.Generator, shape=CANVAS) -> np.ndarray:
    h, w = shape
    if kind == "plain":
        return np.full((h, w, 3), rng.integers(60, 200, size=3), np.uint8)
    if kind == "noise":
        base = rng.integers(70, 180, size=3).astype(np.float32)
        return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    if kind == "gradient":
        a, b = rng.integers(20, 235, size=(2, 3)).astype(np.float32)
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        return np.broadcast_to(a + (b - a) * t, (h, w, 3)).astype(np.uint8)
    raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")


def picture(name: str, shape=CANVAS) -> np.ndarray:
    """scikit-image's picture `name` as a float RGB frame of `shape` (height, width): scaled to
    cover it and centre-cropped (grey pictures repeated into RGB)."""
    from skimage import data
    from skimage.transform import resize

    h, w = shape
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    k = max(h / img.shape[0], w / img.shape[1])
    big = resize(img, (int(np.ceil(img.shape[0] * k)), int(np.ceil(img.shape[1] * k))),
                 anti_aliasing=True, preserve_range=True)
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return big[y0:y0 + h, x0:x0 + w]


def relight(rgb: np.ndarray, light: str, rng: np.random.Generator) -> np.ndarray:
    """Apply LIGHTS[light] to float RGB 0..255 (noise after the gain: dark frames are grainy)."""
    gain, gamma, noise = LIGHTS[light]
    out = 255.0 * gain * (np.clip(rgb, 0, 255) / 255.0) ** gamma
    if noise:
        out = out + rng.normal(0, noise, out.shape)
    return np.clip(out, 0, 255)


def patch_side(size: int, source: FaceSource) -> float:
    """Side in scene pixels of the pasted patch of a face `size` wide (its footprint)."""
    _, _, bw, bh = source.box
    return source.margin * max(bw, bh) * size / bw


def face_patch(source: FaceSource, p: Placement) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float patch, alpha 0..1): the face scaled, rotated and centred in one resampling
    (so the ground-truth centre is exact), framed by a feathered ellipse."""
    from skimage.filters import gaussian
    from skimage.transform import warp

    x, y, bw, bh = source.box
    scale = p.size / bw
    n = max(4, int(round(source.margin * max(bw, bh) * scale)))
    img = source.image.astype(np.float32)
    if scale < 1:  # anti-alias before shrinking, as a camera's optics would
        img = gaussian(img, sigma=(1 / scale - 1) / 2, channel_axis=2, preserve_range=True)
    # Pixel-centre coordinates: the face centre (edge coordinates x + w/2) is index x + w/2 - 0.5.
    sx, sy = x + bw / 2 - 0.5, y + bh / 2 - 0.5
    c = (n - 1) / 2
    t = np.deg2rad(p.angle)
    cos, sin = np.cos(t), np.sin(t)

    def to_source(xy: np.ndarray) -> np.ndarray:
        # Positive angle = counter-clockwise on screen (y points down).
        u, v = (xy[:, 0] - c) / scale, (xy[:, 1] - c) / scale
        return np.stack([sx + cos * u - sin * v, sy + sin * u + cos * v], axis=1)

    patch = warp(img, to_source, output_shape=(n, n), order=1, mode="edge", preserve_range=True)
    # Feathered ellipse: no square edge for the detector to find, and the rotation's lost
    # corners never show.
    yy, xx = (np.mgrid[0:n, 0:n] - c) / (n / 2)
    alpha = np.clip((1.0 - np.hypot(xx, yy)) / 0.25, 0, 1)
    return patch, alpha


def place(placements: list[Placement], sources: list[FaceSource], rng: np.random.Generator,
          shape=CANVAS, tries: int = 400) -> list[Placement] | None:
    """Give every placement without a centre one where its patch stays inside the canvas and off
    every other patch (those with a centre first, then largest first); None when they do not fit."""
    h, w = shape
    radius = [patch_side(p.size, sources[p.source]) / 2 for p in placements]
    if 2 * max(radius, default=0) > min(w, h):
        return None
    out = list(placements)
    taken = [(*p.centre, r) for p, r in zip(placements, radius) if p.centre is not None]
    for i in sorted((i for i, p in enumerate(placements) if p.centre is None), key=lambda i: -radius[i]):
        p, r = placements[i], radius[i]
        for _ in range(tries):
            x, y = rng.uniform(r, w - r), rng.uniform(r, h - r)
            if all(np.hypot(x - tx, y - ty) >= r + tr for tx, ty, tr in taken):
                taken.append((x, y, r))
                out[i] = Placement(p.source, p.size, p.angle, p.light, (float(x), float(y)))
                break
        else:
            return None
    return out


def compose(placements: list[Placement], sources: list[FaceSource], *, background_kind="plain",
            seed: int = 0, shape=CANVAS) -> Scene:
    """Paste each placed face (centres required: see `place`) onto a background."""
    rng = np.random.default_rng(seed)
    canvas = background(background_kind, rng, shape).astype(np.float32)
    boxes = []
    for p in placements:
        if p.centre is None:
            raise ValueError("every placement needs a centre: call place() first")
        src = sources[p.source]
        patch, alpha = face_patch(src, p)
        patch = relight(patch, p.light, rng)
        n = patch.shape[0]
        cx, cy = p.centre
        x0, y0 = int(round(cx - n / 2)), int(round(cy - n / 2))
        # Clip to the canvas (a placed patch fits; a hand-given centre may not).
        sx0, sy0 = max(0, -x0), max(0, -y0)
        ex, ey = min(n, shape[1] - x0), min(n, shape[0] - y0)
        a = alpha[sy0:ey, sx0:ex, None]
        region = canvas[y0 + sy0:y0 + ey, x0 + sx0:x0 + ex]
        region[...] = a * patch[sy0:ey, sx0:ex] + (1 - a) * region
        # The face centre sits at the patch's centre, n/2 from its corner (edge coordinates).
        fx, fy = x0 + n / 2, y0 + n / 2
        _, _, bw, bh = src.box
        s = p.size / bw
        boxes.append((fx - bw * s / 2, fy - bh * s / 2, bw * s, bh * s))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(image, list(placements), boxes)


def single_crop(source_index: int, sources: list[FaceSource], size: int = 160,
                background_kind: str = "plain", seed: int = 0) -> Scene:
    """The reference view of a face: alone, large, upright, normal light, in the canvas centre."""
    h, w = CANVAS
    p = Placement(source_index, size, 0.0, "normal", (w / 2, h / 2))
    return compose([p], sources, background_kind=background_kind, seed=seed)


# ---------------------------------------------------------------- scoring
def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def box_tuple(box: dict) -> tuple[float, float, float, float]:
    return (box["x"], box["y"], box["w"], box["h"])


def match(truth: list[tuple], detections: list[dict],
          min_iou: float = MATCH_IOU) -> list[int | None]:
    """For each ground-truth box, the index of its detection (greedy on IoU, each detection used
    once) or None."""
    pairs = sorted(((iou(t, box_tuple(d["box"])), ti, di) for ti, t in enumerate(truth)
                    for di, d in enumerate(detections)), reverse=True)
    out: list[int | None] = [None] * len(truth)
    used: set[int] = set()
    for v, ti, di in pairs:
        if v < min_iou:
            break
        if out[ti] is None and di not in used:
            out[ti] = di
            used.add(di)
    return out


def compare(probs, reference) -> dict:
    """A scene face's probabilities against its single crop's: same top-1, L1 distance (0..2)."""
    p, q = np.asarray(probs, float), np.asarray(reference, float)
    return {"agree": bool(p.argmax() == q.argmax()), "l1": float(np.abs(p - q).sum())}
