"""What an image file's bytes say about its completeness, read without decoding any pixel.

`backend.images` uses these to refuse forged and truncated uploads cheaply:

* `jpeg_layout` reads a JPEG's frame marker (baseline, progressive, arithmetic), which the
  byte floor and the decode-memory estimate depend on (whether a JPEG's scans are complete is
  left to the strict decoder: marker walking cannot tell where a cut scan ends);
* `least_complete_size` is a lower bound on the bytes a complete file of a given format and
  size must hold (a 1 KB file cannot be a complete 4096x4096 JPEG);
* `webp_is_lossless` tells a lossless WebP (VP8L) from a lossy one (VP8) by its chunks;
* `png_inflated_bytes` inflates a PNG's IDAT chunks in bounded steps and says how many of the
  bytes its header needs are really there (Pillow fills missing rows black).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

#: Deflate cannot compress better than about 1032:1 (258-byte matches coded in 2 bits), so a
#: complete PNG holds at least raw_bytes / 1032 bytes of image data.
DEFLATE_MAX_RATIO = 1032
#: PNG colour type -> samples per pixel.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass
class JpegLayout:
    """What a JPEG's frame marker says (read without decoding any scan)."""

    sof: int | None = None  # the frame marker (baseline, progressive, arithmetic, ...)

    @property
    def progressive(self) -> bool:
        return self.sof in _SOF_PROGRESSIVE

    @property
    def arithmetic(self) -> bool:
        return self.sof in _SOF_ARITHMETIC


_SOF_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_SOF_ARITHMETIC = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOF = {0xC0, 0xC1, 0xC3, 0xC5, 0xC7} | _SOF_PROGRESSIVE | _SOF_ARITHMETIC


def jpeg_layout(data: bytes) -> JpegLayout:
    """Walk the JPEG's marker segments up to its frame marker (no decoding)."""
    layout = JpegLayout()
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # EOI, or a scan before any frame: no frame to read
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # segments without a length
            pos += 2
            continue
        if marker in _SOF:
            layout.sof = marker
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return layout


def least_complete_size(
    data: bytes, fmt: str, width: int, height: int, jpeg: JpegLayout | None
) -> int:
    """A lower bound on the bytes any complete file of this format and size must hold."""
    if fmt == "JPEG" and jpeg is not None and not jpeg.arithmetic:
        # Huffman coding spends at least one bit on the DC term of every 8x8 block of the
        # first component, whatever the content or quality.
        return math.ceil(width / 8) * math.ceil(height / 8) // 8
    if fmt == "PNG" and len(data) >= 26:
        depth, colour_type = data[24], data[25]
        channels = _PNG_CHANNELS.get(colour_type, 1)
        raw = height * (1 + math.ceil(width * channels * depth / 8))  # + 1 filter byte a row
        return raw // DEFLATE_MAX_RATIO
    return 0  # WebP (lossless or VP8) can code a flat image in almost nothing: checked later


def webp_is_lossless(data: bytes) -> bool:
    """True when the WebP's image chunk is VP8L (lossless); False for VP8 (lossy, with or
    without an alpha chunk). Walks the RIFF chunks, so extended (VP8X) files are read too."""
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return False


#: Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def png_raw_size(width: int, height: int, depth: int, colour_type: int, interlace: int) -> int:
    """Bytes the IDAT stream must inflate to: each row is a filter byte + its packed samples."""
    bits = _PNG_CHANNELS.get(colour_type, 1) * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        cols, rows = math.ceil(max(0, width - x0) / dx), math.ceil(max(0, height - y0) / dy)
        if cols and rows:
            total += rows * (1 + math.ceil(cols * bits / 8))
    return total


def png_inflated_bytes(data: bytes) -> tuple[int, int]:
    """(bytes the IDAT stream inflates to, bytes the header's size needs), inflating in 1 MiB
    steps and stopping once enough is there (no big buffer). Raises zlib.error when corrupt."""
    width, height = struct.unpack(">II", data[16:24])
    depth, colour_type, interlace = data[24], data[25], data[28]
    need = png_raw_size(width, height, depth, colour_type, interlace)
    inflater, got, pos = zlib.decompressobj(), 0, 8
    while pos + 8 <= len(data) and got < need:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunk = data[pos + 8 : pos + 8 + length]
            while chunk and got < need:
                got += len(inflater.decompress(chunk, 1 << 20))
                chunk = inflater.unconsumed_tail
        pos += 12 + length
    return got, need
