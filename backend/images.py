"""Validation and clean re-encoding of uploaded images (Pillow).

The format is decided from the bytes (magic numbers), never from the file name
or the client's Content-Type. Images are fully decoded (to catch truncation),
size-checked before decoding (to defuse decompression bombs) and re-encoded
from pixels only, so no EXIF/ICC/text metadata survives.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

#: Pillow format name -> file extension used on disk.
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; the message is meant for the user."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class CleanImage:
    """A decoded, re-encoded image: `data` is what goes on disk."""

    data: bytes
    format: str  # PNG | JPEG | WEBP (of `data`)
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic number, or None when it is not PNG/JPEG/WebP."""
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode(data: bytes, *, what: str, min_side: int, max_side: int) -> Image.Image:
    """Fully decode `data` into an upright image, or raise `ImageRejected`."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            f"{what} is not a PNG, JPEG or WebP image (checked its bytes, not its name)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width > max_side or height > max_side:
                raise ImageRejected(
                    f"{what} is {width}x{height} pixels; the largest accepted side is {max_side}",
                    413,
                )
            if width < min_side or height < min_side:
                raise ImageRejected(
                    f"{what} is {width}x{height} pixels; the smallest accepted side is {min_side}"
                )
            img.load()  # decodes every byte: truncated or corrupt data raises here
            img = ImageOps.exif_transpose(img)  # honour orientation, then drop the EXIF
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected(f"{what} decompresses to too many pixels", 413) from err
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as err:
        raise ImageRejected(f"{what} is truncated or corrupt ({fmt}): {err}") from err
    return _plain_mode(img)


def _plain_mode(img: Image.Image) -> Image.Image:
    """Map exotic modes (16-bit, CMYK, palette, ...) onto L/LA/RGB/RGBA."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("1",):
        return img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        # 16/32-bit grey: scale down to 8 bits
        return (
            img.point(lambda v: v / 256).convert("L")
            if img.mode.startswith("I;16")
            else img.convert("L")
        )
    return img.convert("RGBA" if "A" in img.getbands() else "RGB")


def encode(img: Image.Image, fmt: str) -> bytes:
    """Re-encode pixels only: a fresh image carries no EXIF, ICC profile or text chunks."""
    clean = Image.frombytes(img.mode, img.size, img.tobytes())
    buf = io.BytesIO()
    if fmt == "PNG":
        clean.save(buf, "PNG", optimize=False, compress_level=6)
    elif fmt == "JPEG":
        if clean.mode not in ("L", "RGB"):
            clean = clean.convert("RGB")
        clean.save(buf, "JPEG", quality=95)
    elif fmt == "WEBP":
        clean.save(buf, "WEBP", quality=95)
    else:  # pragma: no cover - callers pass known formats
        raise ValueError(fmt)
    return buf.getvalue()


def clean_crop(data: bytes, *, min_side: int, max_side: int) -> CleanImage:
    """Validate the face crop and re-encode it as metadata-free PNG."""
    img = decode(data, what="the crop", min_side=min_side, max_side=max_side)
    return CleanImage(encode(img, "PNG"), "PNG", *img.size)


def clean_original(data: bytes, *, max_side: int) -> CleanImage:
    """Validate the optional original photo; re-encode it in its own format without metadata."""
    fmt = sniff_format(data) or "PNG"
    img = decode(data, what="the original", min_side=1, max_side=max_side)
    return CleanImage(encode(img, fmt), fmt, *img.size)
