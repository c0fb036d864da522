"""Validation and clean re-encoding of uploaded images (Pillow).

The format is decided from the bytes (magic numbers), never from the file name or the
client's Content-Type. Every image goes through three stages:

1. `probe` reads the header only: sides, pixel count, whether the file holds enough bytes for
   the pixels it claims (a 1 KB JPEG cannot hold 4096x3072 pixels), whether it pays for its
   pixels in bytes (`least_paying_size`: decoding and storing cost time per pixel, so a few KB
   claiming 12 megapixels is refused here), and how much memory decoding it will take
   (`Header.decode_bytes`, for the server's decode budget). Nothing is decoded yet, so forged
   headers, decompression bombs and cheap files that would be expensive cost almost nothing.
2. `decode` decodes every pixel and rejects what the decoder had to make up: truncated data
   (JPEGs go through libjpeg-turbo in strict mode, `simplejpeg`, which turns every warning
   libjpeg would pad over, such as a scan cut short and closed with an end marker, into an
   error) and images that are mostly one flat colour (what padding and blank images look like).
3. The pixels are re-encoded from scratch, so no EXIF/ICC/text metadata survives: crops as
   lossless PNG, originals as JPEG (libjpeg-turbo encodes 12 megapixels in a few hundredths of
   a second, PNG and WebP take seconds) whose quality steps down until it stores at most
   1.5 times the bytes sent.

Every `ImageRejected` message is plain words meant for the user; no exception text (which can
hold Python object reprs and addresses) is ever passed through.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import simplejpeg
from PIL import ExifTags, Image, ImageChops

from .image_structure import (
    JpegLayout,
    jpeg_layout,
    least_complete_size,
    png_inflated_bytes,
    webp_is_lossless,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

#: Pillow format name -> file extension used on disk.
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}

#: Reject an image when more than this share of its pixels is one exact colour. libjpeg pads
#: missing data with one repeated colour, and a blank/forged image is one colour; a real face
#: photo never is: even a face crop darkened to 2 % brightness and saved as a quality-30 JPEG
#: has 81 % of its pixels on one value, and a 48x48 face on a 128x128 white background 86 %.
#: Above 90 % less than a tenth of the image (1,600 pixels of a 128x128 crop) carries anything.
FLAT_FILL_SHARE = 0.90

#: A stored original may take at most this many times the bytes that were sent (or
#: ORIGINAL_MIN_ALLOWANCE for tiny files), so a request cannot make the server store much more
#: than it received. Re-encoding a camera JPEG at quality 90 stays well inside this.
ORIGINAL_GROWTH = 1.5
ORIGINAL_MIN_ALLOWANCE = 64 * 1024
#: Quality of the stored JPEG original (visually lossless, about a camera's own size); a JPEG
#: sent at a lower quality is stored at its own (about the same size again).
ORIGINAL_QUALITY = 90
#: Lower JPEG qualities tried when the first does not fit the allowance (the last one first:
#: when even it does not fit, the upload is refused after two encodes, not six).
ORIGINAL_FALLBACK_QUALITIES = (85, 70, 50, 30, 10)

#: Decoding and storing an image costs time per pixel (a 12-megapixel original: ~0.1-0.4 s to
#: decode), so a file must pay for its pixels in bytes, checked before anything is decoded. A
#: lossless file (PNG, lossless WebP) of a photo never packs more than ~3 pixels into a byte
#: (camera noise does not compress); at 4 pixels a byte, the lowest JPEG step above (at most
#: 0.28 bytes a pixel, for pure noise) always fits ORIGINAL_GROWTH x what was sent, so a lossless
#: file that passes is never decoded only to be refused. Lossy files are photos at 2-50 pixels
#: a byte (a smooth photo at JPEG quality 10: 49); 64 leaves room and refuses the
#: few-KB-for-12-megapixels files at once.
MAX_PIXELS_PER_BYTE_LOSSLESS = 4
MAX_PIXELS_PER_BYTE_LOSSY = 64
#: Pixels every image gets for free: a crop (at most 512x512) costs milliseconds whatever it holds.
FREE_PIXELS = 512 * 512
#: libjpeg's quality 50 luminance table (JPEG standard, Annex K): a sent JPEG's quality is
#: estimated from how far its own table is scaled from this one.
_STANDARD_LUMA_SUM = sum(
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
)  # fmt: skip

#: Bytes per pixel of one working copy after decoding (Pillow keeps RGB/RGBA/LA in 4 bytes).
WORK_BYTES_PER_PIXEL = 4


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


@dataclass(frozen=True)
class Header:
    """What an image's header says, read before any pixel is decoded."""

    format: str
    width: int
    height: int
    mode: str
    decode_bytes: int  # upper estimate of the memory decoding + re-encoding it takes


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic number, or None when it is not PNG/JPEG/WebP."""
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


# ---------------------------------------------------------------- stage 1: the header
def probe(
    data: bytes, *, what: str, min_side: int, max_side: int, max_pixels: int | None
) -> Header:
    """Check what the header claims (sides, pixels, bytes for them); raise `ImageRejected`."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            f"{what} is not a PNG, JPEG or WebP image (checked its bytes, not its name)"
        )
    img = _open(data, fmt, what)
    width, height = img.size
    if width > max_side or height > max_side:
        raise ImageRejected(
            f"{what} is {width}x{height} pixels; the largest accepted side is {max_side}", 413
        )
    if width < min_side or height < min_side:
        raise ImageRejected(
            f"{what} is {width}x{height} pixels; the smallest accepted side is {min_side}"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise ImageRejected(
            f"{what} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the most accepted is {max_pixels / 1e6:.1f} megapixels",
            413,
        )
    jpeg = jpeg_layout(data) if fmt == "JPEG" else None
    least = least_complete_size(data, fmt, width, height, jpeg)
    if len(data) < least:
        raise ImageRejected(
            f"{what} says it is {width}x{height} pixels but holds only {len(data)} bytes; a "
            f"complete {fmt} of that size needs at least {least} bytes, so it is truncated "
            "or its header is forged"
        )
    paying = least_paying_size(data, fmt, width, height)
    if len(data) < paying:
        raise ImageRejected(
            f"{what} is {width}x{height} pixels in only {len(data)} bytes; decoding and storing "
            f"that many pixels takes at least {paying} bytes of a {fmt} file on this server, so "
            "send the photo as the camera saved it",
            413,
        )
    return Header(fmt, width, height, img.mode, _decode_bytes(data, fmt, img, jpeg))


def least_paying_size(data: bytes, fmt: str, width: int, height: int) -> int:
    """The fewest bytes a file must hold to have its pixels decoded (see MAX_PIXELS_PER_BYTE_*)."""
    lossless = fmt == "PNG" or (fmt == "WEBP" and webp_is_lossless(data))
    per_byte = MAX_PIXELS_PER_BYTE_LOSSLESS if lossless else MAX_PIXELS_PER_BYTE_LOSSY
    return max(0, width * height - FREE_PIXELS) // per_byte


def _open(data: bytes, fmt: str, what: str) -> Image.Image:
    """Open lazily (header only); errors become words, never exception text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected(f"{what} decompresses to too many pixels", 413) from err
    except Exception as err:  # noqa: BLE001 - any parser failure means a damaged header
        raise ImageRejected(
            f"{what} starts like a {fmt} file but its header is truncated or corrupt"
        ) from err


def _decode_bytes(data: bytes, fmt: str, img: Image.Image, jpeg: JpegLayout | None) -> int:
    """Memory to decode and re-encode this image: the decoded buffer + two working copies."""
    pixels = img.width * img.height
    bands = len(img.getbands())
    sample = 2 if fmt == "PNG" and len(data) >= 25 and data[24] == 16 else 1
    pillow = {"1": 1, "L": 1, "P": 1}.get(img.mode, 2 if img.mode.startswith("I;16") else 4)
    decoded = max(bands * sample, pillow)  # a 16-bit sample takes 2 bytes in the file
    total = pixels * (decoded + 2 * WORK_BYTES_PER_PIXEL)
    if jpeg is not None and jpeg.progressive:
        total += pixels * bands * 2  # libjpeg keeps every 16-bit coefficient of the image
    return total


# ---------------------------------------------------------------- stage 2: the pixels
def decode(
    data: bytes, *, what: str, min_side: int, max_side: int, max_pixels: int | None = None
) -> Image.Image:
    """Fully decode `data` into an upright L/LA/RGB/RGBA image, or raise `ImageRejected`."""
    head = probe(data, what=what, min_side=min_side, max_side=max_side, max_pixels=max_pixels)
    if head.format == "PNG":
        _check_png_complete(data, what)
    source = _open(data, head.format, what)
    img = _decode_jpeg(data, source, what) if head.format == "JPEG" else _load(source, what)
    img = _upright(img, source, what)
    img = _plain_mode(img)
    _check_not_flat(img, what)
    return img


def _load(img: Image.Image, what: str) -> Image.Image:
    """Decode every byte of a lazily opened image; truncated or corrupt data raises."""
    try:
        img.load()
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for bad data
        raise ImageRejected(
            f"{what} is truncated or corrupt: its {img.format} data ends early or does not decode"
        ) from err
    return img


def _decode_jpeg(data: bytes, source: Image.Image, what: str) -> Image.Image:
    """Decode a JPEG with libjpeg-turbo in strict mode: any recoverable error refuses it.

    libjpeg only warns when a scan stops early ("premature end of data segment"), when a
    restart marker is missing or when a table is bogus, and fills what is missing with flat grey;
    Pillow does not report those warnings, so a cut file followed by any segment and an end
    marker decoded "fine". `simplejpeg.decode_jpeg(strict=True)` raises on every one of them.
    The pixels are the same as Pillow's (same library, same default DCT and upsampling).
    """
    cmyk = source.mode == "CMYK"
    colorspace = {"L": "GRAY", "CMYK": "CMYK"}.get(source.mode, "RGB")
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace=colorspace, fastdct=False, fastupsample=False, strict=True
        )
    except Exception as err:  # noqa: BLE001 - ValueError with libjpeg's text: not for users
        raise ImageRejected(
            f"{what} is truncated or corrupt: its JPEG data ends early or does not decode "
            "(the rest would be filled with one flat colour)"
        ) from err
    if colorspace == "GRAY":
        return Image.fromarray(pixels[..., 0], "L")
    if cmyk and "adobe" in source.info:  # Adobe writes CMYK inverted; Pillow reads it so too
        pixels = 255 - pixels
    return Image.fromarray(pixels, "CMYK" if cmyk else "RGB")


#: EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(img: Image.Image, source: Image.Image, what: str) -> Image.Image:
    """Honour the EXIF orientation of `source` (the EXIF itself is never stored)."""
    try:
        orientation = source.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as err:  # noqa: BLE001 - a damaged EXIF block
        raise ImageRejected(f"{what} has a damaged orientation (EXIF) block") from err
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


def _check_png_complete(data: bytes, what: str) -> None:
    """Reject a PNG whose compressed data holds fewer rows than its header promises.

    A complete zlib stream that simply stops early decodes without error in Pillow (the
    missing rows come out black), so count the inflated bytes against the header's size.
    """
    try:
        got, need = png_inflated_bytes(data)
    except zlib.error as err:
        raise ImageRejected(f"{what} is corrupt: its PNG data does not decompress") from err
    if got < need:
        width, height = struct.unpack(">II", data[16:24])
        raise ImageRejected(
            f"{what} is truncated or corrupt: its PNG data holds only {got} of the {need} "
            f"bytes its {width}x{height} pixels need"
        )


def _check_not_flat(img: Image.Image, what: str) -> None:
    """Reject images mostly made of one exact colour (see FLAT_FILL_SHARE)."""
    pixels = img.width * img.height
    limit = FLAT_FILL_SHARE * pixels
    histogram = img.histogram()
    colour = []
    for i in range(len(img.getbands())):
        counts = histogram[256 * i : 256 * (i + 1)]
        top = max(counts)
        if top <= limit:  # some band has no value that common: cannot be one flat colour
            return
        colour.append(counts.index(top))
    mask = None  # 255 where every band has the common value
    for band, value in zip(img.split(), colour):
        hit = band.point([255 if v == value else 0 for v in range(256)])
        mask = hit if mask is None else ImageChops.multiply(mask, hit)
    share = mask.histogram()[255] / pixels
    if share > FLAT_FILL_SHARE:
        raise ImageRejected(
            f"{what} is {share:.0%} one flat colour; that is what a truncated or blank image "
            "looks like, not a photo of a face"
        )


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


# ---------------------------------------------------------------- stage 3: re-encoding
def _pixels_only(img: Image.Image) -> Image.Image:
    """A fresh image with the same pixels and no info (EXIF, ICC, text) to carry along."""
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    return clean


def encode(img: Image.Image, fmt: str, quality: int = ORIGINAL_QUALITY) -> bytes:
    """Re-encode pixels only: a fresh image carries no EXIF, ICC profile or text chunks."""
    clean = _pixels_only(img)
    buf = io.BytesIO()
    if fmt == "PNG":
        clean.save(buf, "PNG", optimize=False, compress_level=6)
    elif fmt == "JPEG":
        if clean.mode not in ("L", "RGB"):
            clean = clean.convert("RGB")
        clean.save(buf, "JPEG", quality=quality)
    elif fmt == "WEBP":
        clean.save(buf, "WEBP", quality=quality)
    else:  # pragma: no cover - callers pass known formats
        raise ValueError(fmt)
    return buf.getvalue()


def clean_crop(data: bytes, *, min_side: int, max_side: int) -> CleanImage:
    """Validate the face crop and re-encode it as metadata-free PNG (lossless)."""
    img = decode(data, what="the crop", min_side=min_side, max_side=max_side)
    return CleanImage(encode(img, "PNG"), "PNG", *img.size)


def clean_original(data: bytes, *, max_side: int, max_pixels: int | None = None) -> CleanImage:
    """Validate the optional original photo and store it as a JPEG without metadata.

    At ORIGINAL_QUALITY, or the sent JPEG's own quality when that is lower (re-encoding at the
    same quality takes about the same bytes again); when that stores more than ORIGINAL_GROWTH
    times the bytes sent, at the first ORIGINAL_FALLBACK_QUALITIES step that fits.
    """
    first = ORIGINAL_QUALITY
    if sniff_format(data) == "JPEG":
        first = min(first, _jpeg_quality(_open(data, "JPEG", "the original")))
    img = decode(data, what="the original", min_side=1, max_side=max_side, max_pixels=max_pixels)
    allowance = max(int(ORIGINAL_GROWTH * len(data)), ORIGINAL_MIN_ALLOWANCE)
    steps = [first] + [q for q in ORIGINAL_FALLBACK_QUALITIES if q < first]
    sizes: dict[int, int] = {}

    def fitting(quality: int) -> bytes | None:
        stored = encode(img, "JPEG", quality)
        sizes[quality] = len(stored)
        return stored if len(stored) <= allowance else None

    stored = fitting(steps[0])
    if stored is None and len(steps) > 1:
        # the lowest step next: when even it does not fit, refuse after two encodes, not six
        lowest = fitting(steps[-1])
        if lowest is not None:
            middle = (fitting(q) for q in steps[1:-1])
            stored = next((m for m in middle if m is not None), lowest)
    if stored is None:
        raise ImageRejected(
            f"the original would take {sizes[steps[-1]]} bytes to store even as a "
            f"quality-{steps[-1]} JPEG, more than {ORIGINAL_GROWTH}x the {len(data)} bytes "
            "sent; send the photo as the camera saved it",
            413,
        )
    return CleanImage(stored, "JPEG", *img.size)


def _jpeg_quality(source: Image.Image) -> int:
    """The libjpeg quality (1-100) whose luminance table is scaled like this JPEG's."""
    tables = getattr(source, "quantization", None) or {}
    luma = tables.get(0)
    if not luma:
        return ORIGINAL_QUALITY
    scale = 100 * sum(luma) / _STANDARD_LUMA_SUM  # libjpeg: 5000/q below 50, 200-2q above
    quality = 5000 / scale if scale > 100 else (200 - scale) / 2
    return max(1, min(100, round(quality)))
