"""Image decoding and resizing: everything becomes uint8 grayscale (default 48x48)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE
from training.core.errors import FerError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)


def is_image_file(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def _resample():
    from PIL import Image

    return Image.Resampling.LANCZOS


def to_gray_square(img, size: int = IMAGE_SIZE) -> np.ndarray:
    """PIL image -> (size, size) uint8: convert to L, centre-crop to square, Lanczos resize."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray(np.round(arr * 255.0 / hi).astype(np.uint8))
    elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # flatten onto white
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "L":
        img = img.convert("L")  # ITU-R 601-2 luma
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if img.size != (size, size):
        img = img.resize((size, size), _resample())
    return np.asarray(img, dtype=np.uint8)


def read_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode one image file to (size, size) uint8 grayscale; FerError names a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return to_gray_square(img, size)
    except FileNotFoundError:
        raise FerError(f"image {path} does not exist; rescan the folder") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise FerError(
            f"cannot decode image {path} ({type(err).__name__}: {err}); delete or replace that file"
        ) from None


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) uint8 -> (N, size, size) uint8 with Lanczos (no-op if already that size)."""
    from PIL import Image

    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W) grayscale images, got shape {x.shape}")
    if x.shape[1:] == (size, size):
        return x
    out = np.empty((len(x), size, size), np.uint8)
    res = _resample()
    for i, im in enumerate(x):
        out[i] = np.asarray(Image.fromarray(im).resize((size, size), res), dtype=np.uint8)
    return out


def finalize(x: np.ndarray, *, image_size: int = IMAGE_SIZE, rgb: bool = False) -> np.ndarray:
    """Resize to image_size and optionally repeat grey to 3 channels -> (N, S, S[, 3])."""
    x = resize_batch(np.asarray(x, np.uint8), image_size)
    if rgb:
        x = np.repeat(x[..., None], 3, axis=-1)
    return x


def pixel_hashes(x: np.ndarray) -> list[bytes]:
    """One digest per image of its exact uint8 pixels (and shape)."""
    import hashlib

    x = np.ascontiguousarray(x, dtype=np.uint8)
    shape = repr(x.shape[1:]).encode()
    return [hashlib.blake2b(shape + im.tobytes(), digest_size=16).digest() for im in x]
