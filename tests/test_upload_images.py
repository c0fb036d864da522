"""Issue 14, image side: truncated/forged/flat images, size and memory amplification, error words.

Through HTTP where it is about the API (TestClient against create_app), plus unit tests of
backend/images.py helpers and backend/decode_budget.py.
"""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile
from test_backend_helpers import db_rows, make_settings, post_upload, stored_files

from backend import images
from backend.app import create_app
from backend.images import ImageRejected


# ---------------------------------------------------------------- helpers
def encode(arr: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kwargs)
    return buf.getvalue()


def face_crop(astronaut: np.ndarray, side: int = 128) -> np.ndarray:
    """A square crop around Eileen Collins' face, resized like the page does."""
    return np.asarray(Image.fromarray(astronaut[20:240, 130:350]).resize((side, side)))


def grey(arr: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).convert("L"))


def cut_with_eoi(jpeg: bytes, fraction: float) -> bytes:
    """The JPEG cut short, then closed with an EOI marker as if it were complete."""
    return jpeg[: int(len(jpeg) * fraction)] + b"\xff\xd9"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_16bit(width: int, height: int, colour_type: int = 2, seed: int = 0) -> bytes:
    """A 16-bit PNG (colour type 0 grey, 2 RGB) of smooth noise: small file, big decode."""
    channels = {0: 1, 2: 3}[colour_type]
    rng = np.random.default_rng(seed)
    row = rng.integers(0, 65536, size=width * channels, dtype=np.uint16).astype(">u2").tobytes()
    raw = b"".join(b"\x00" + row for _ in range(height))  # repeated rows compress well
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        images.PNG_MAGIC
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def png_adam7(grey_arr: np.ndarray) -> bytes:
    """An interlaced (Adam7) 8-bit grey PNG, built by hand (Pillow cannot write one)."""
    passes = (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    )
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = grey_arr[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    height, width = grey_arr.shape
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    return (
        images.PNG_MAGIC
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int, data_from: np.ndarray) -> bytes:
    """A real small JPEG whose frame header is edited to claim width x height."""
    jpeg = bytearray(encode(data_from, "JPEG", quality=90))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    jpeg[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(jpeg)


@pytest.fixture
def settings(tmp_path):
    # the shipped defaults for every image limit; no rate limit (one client sends dozens of
    # images here; the limiter has its own tests in test_api_contract.py)
    return make_settings(tmp_path, uploads_per_minute=0)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def assert_nothing_stored(settings):
    assert stored_files(settings.custom_dir) == []
    assert db_rows(settings.custom_dir) == []


def assert_words_only(detail: str) -> None:
    assert isinstance(detail, str) and detail
    for leak in ("0x", "<", ">", "object at", "BytesIO"):
        assert leak not in detail, detail


# ---------------------------------------------------------------- defect 1: truncated / forged / flat
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_short_but_closed_with_eoi_is_rejected(
    client, settings, astronaut_rgb, fraction, progressive
):
    jpeg = encode(face_crop(astronaut_rgb), "JPEG", quality=90, progressive=progressive)
    r = post_upload(client, cut_with_eoi(jpeg, fraction))
    assert r.status_code == 400, r.text
    assert "truncated" in r.json()["detail"]
    assert_words_only(r.json()["detail"])
    assert_nothing_stored(settings)


def test_jpeg_cut_exactly_at_a_restart_marker_is_rejected(client, settings, astronaut_rgb):
    """Cut at an interval boundary, libjpeg skips straight to the EOI: only the count shows it."""
    jpeg = encode(grey(face_crop(astronaut_rgb)), "JPEG", quality=90, restart_marker_rows=1)
    restarts = [i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and 0xD0 <= jpeg[i + 1] <= 0xD7]
    assert len(restarts) == 15  # 16 MCU rows of 8 pixels
    for cut in (restarts[3], restarts[10], restarts[-1]):
        r = post_upload(client, jpeg[:cut] + b"\xff\xd9")
        assert r.status_code == 400, r.text
        assert "truncated" in r.json()["detail"]
    assert_nothing_stored(settings)


@pytest.mark.parametrize("interlaced", [False, True])
def test_png_whose_data_stops_early_is_rejected(client, settings, astronaut_rgb, interlaced):
    """A complete zlib stream holding only 40 of 128 rows: Pillow pads the rest silently."""
    face = face_crop(astronaut_rgb)
    raw = b"".join(b"\x00" + face[y].tobytes() for y in range(40))
    ihdr = struct.pack(">IIBBBBB", 128, 128, 8, 2, 0, 0, int(interlaced))
    short = (
        images.PNG_MAGIC
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )
    r = post_upload(client, short)
    assert r.status_code == 400, r.text
    assert "truncated" in r.json()["detail"]
    assert_words_only(r.json()["detail"])
    assert_nothing_stored(settings)


def test_truncated_original_jpeg_is_rejected(client, settings, astronaut_rgb):
    original = cut_with_eoi(encode(astronaut_rgb, "JPEG", quality=85), 0.4)
    r = post_upload(client, encode(face_crop(astronaut_rgb), "PNG"), original=original)
    assert r.status_code == 400, r.text
    assert "original" in r.json()["detail"] and "truncated" in r.json()["detail"]
    assert_nothing_stored(settings)


@pytest.fixture
def decoded(monkeypatch):
    """The sizes of every image decoded during the test: by Pillow (ImageFile.load) or, for
    JPEG, by libjpeg-turbo (simplejpeg.decode_jpeg)."""
    sizes = []
    real_load = ImageFile.ImageFile.load
    real_jpeg = images.simplejpeg.decode_jpeg

    def spy(self):
        sizes.append(self.size)
        return real_load(self)

    def jpeg_spy(data, *args, **kwargs):
        height, width = images.simplejpeg.decode_jpeg_header(data)[:2]
        sizes.append((width, height))
        return real_jpeg(data, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    monkeypatch.setattr(images.simplejpeg, "decode_jpeg", jpeg_spy)
    return sizes


def test_header_claiming_4096_squared_from_a_kilobyte_is_refused_before_decoding(
    client, settings, astronaut_rgb, decoded
):
    forged = jpeg_claiming(4096, 3072, astronaut_rgb[:32, :32])
    assert len(forged) < 2000
    crop = encode(face_crop(astronaut_rgb), "PNG")
    r = post_upload(client, crop, original=forged)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "original" in detail and "bytes" in detail and "4096x3072" in detail, detail
    assert_words_only(detail)
    assert (4096, 3072) not in decoded  # refused from the header alone
    assert_nothing_stored(settings)


def test_png_header_claiming_more_pixels_than_its_data_can_hold_is_refused(astronaut_rgb):
    small = encode(grey(astronaut_rgb[:64, :64]), "PNG")
    ihdr = struct.pack(">IIBBBBB", 4096, 3072, 8, 0, 0, 0, 0)
    forged = small[:8] + png_chunk(b"IHDR", ihdr) + small[33:]
    with pytest.raises(ImageRejected, match="bytes") as err:
        images.probe(forged, what="the original", min_side=1, max_side=4096, max_pixels=None)
    assert err.value.status_code == 400
    assert_words_only(str(err.value))


@pytest.mark.parametrize(
    "case",
    # (a white 4096x3072 original is refused before decoding: a few KB cannot pay for its
    # pixels, tests/test_upload_cost.py; one the size of a crop is decoded and checked)
    ["one grey value", "one colour + 5 % noise", "white PNG 512x512 original"],
)
def test_images_mostly_one_flat_fill_are_rejected(client, settings, astronaut_rgb, case):
    crop = encode(face_crop(astronaut_rgb), "PNG")
    original = None
    if case == "one grey value":
        crop = encode(np.full((128, 128), 128, np.uint8), "PNG")
    elif case == "one colour + 5 % noise":
        arr = np.full((128, 128, 3), (40, 80, 120), np.uint8)
        arr[:6] = np.random.default_rng(0).integers(0, 256, (6, 128, 3))
        crop = encode(arr, "PNG")
    else:
        original = encode(np.full((512, 512), 255, np.uint8), "PNG")
    r = post_upload(client, crop, original=original)
    assert r.status_code == 400, (case, r.text)
    assert "one flat colour" in r.json()["detail"]
    assert_words_only(r.json()["detail"])
    assert_nothing_stored(settings)


def _legit_images(astronaut: np.ndarray):
    face = face_crop(astronaut)
    for side in (48, 128):
        crop = face_crop(astronaut, side)
        for quality in (30, 50, 75, 95):
            yield f"jpeg {side} q{quality}", encode(crop, "JPEG", quality=quality)
            yield f"grey jpeg {side} q{quality}", encode(grey(crop), "JPEG", quality=quality)
        yield (
            f"optimized progressive {side}",
            encode(crop, "JPEG", quality=80, optimize=True, progressive=True),
        )
        yield f"png {side}", encode(crop, "PNG")
        yield f"grey png {side}", encode(grey(crop), "PNG")
        yield f"webp {side}", encode(crop, "WEBP", quality=80)
        yield f"lossless webp {side}", encode(crop, "WEBP", lossless=True)
    yield "restart markers", encode(face, "JPEG", quality=90, restart_marker_blocks=2)
    pil_face = Image.fromarray(face)
    for mode, kwargs in (("P", {}), ("P", {"bits": 4}), ("1", {}), ("LA", {}), ("RGBA", {})):
        img = pil_face.quantize(16 if kwargs else 256) if mode == "P" else pil_face.convert(mode)
        buf = io.BytesIO()
        img.save(buf, "PNG", **kwargs)
        yield f"png mode {mode} {kwargs}", buf.getvalue()
    yield "interlaced png", png_adam7(grey(face))
    yield "16-bit png", png_16bit(128, 128, 0)
    white = np.full((128, 128, 3), 255, np.uint8)
    white[40:88, 40:88] = face_crop(astronaut, 48)  # a small face on a flat white background
    yield "face on white (86 % flat)", encode(white, "PNG")
    yield "face on white jpeg", encode(white, "JPEG", quality=75)
    dark = (grey(face).astype(float) * 0.02).round().astype(np.uint8)  # values 0..5
    yield "very dark grey jpeg", encode(dark, "JPEG", quality=30)
    yield "very dark png", encode((face * 0.05).astype(np.uint8), "PNG")


def test_real_photos_in_every_format_are_accepted(client, settings, astronaut_rgb):
    refused = {}
    for case, data in _legit_images(astronaut_rgb):
        r = post_upload(client, data, label="happy")
        if r.status_code != 201:
            refused[case] = r.text
    assert not refused


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_real_photo_originals_are_accepted_and_stay_compact(client, settings, astronaut_rgb, fmt):
    photo = np.tile(astronaut_rgb, (2, 3, 1))  # 1536x1024, a real photo
    original = encode(photo, fmt, **({"quality": 85} if fmt != "PNG" else {}))
    r = post_upload(client, encode(face_crop(astronaut_rgb), "PNG"), original=original)
    assert r.status_code == 201, r.text
    (stored,) = (settings.custom_dir / "originals").iterdir()
    assert stored.stat().st_size <= 1.5 * len(original)
    with Image.open(stored) as img:
        assert img.size == (1536, 1024)


# ---------------------------------------------------------------- defect 5: sizes and memory
def test_crop_larger_than_the_page_sends_gets_413(client, settings, astronaut_rgb):
    assert settings.max_crop_side == 512  # the page sends 128x128; 4x slack
    big = np.asarray(Image.fromarray(astronaut_rgb).resize((600, 600)))
    r = post_upload(client, encode(big, "JPEG", quality=80))
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert "crop" in detail and "600x600" in detail and "512" in detail, detail
    ok = post_upload(client, encode(face_crop(astronaut_rgb, 512), "PNG"))
    assert ok.status_code == 201, ok.text


def test_original_over_the_megapixel_cap_gets_413_before_decoding(
    client, settings, astronaut_rgb, decoded
):
    assert settings.max_original_pixels == 4096 * 3072
    photo = np.asarray(Image.fromarray(astronaut_rgb).resize((4096, 4096)))
    original = encode(photo, "JPEG", quality=50)
    assert len(original) < settings.max_upload_bytes
    r = post_upload(client, encode(face_crop(astronaut_rgb), "PNG"), original=original)
    assert r.status_code == 413, r.text
    assert "megapixels" in r.json()["detail"] and "original" in r.json()["detail"]
    assert (4096, 4096) not in decoded
    assert_nothing_stored(settings)


def test_a_request_never_stores_more_than_twice_its_size(client, settings):
    """Low-quality JPEGs of fine detail re-encode huge; what is stored stays bounded."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(blocks).resize((4096, 3072), Image.NEAREST))
    original = encode(photo, "JPEG", quality=10)
    crop = encode(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), "JPEG", quality=10)
    request_bytes = len(original) + len(crop)
    assert request_bytes < settings.max_upload_bytes
    r = post_upload(client, crop, original=original)
    assert r.status_code == 201, r.text
    stored = sum(p.stat().st_size for p in stored_files(settings.custom_dir))
    assert stored <= 2 * request_bytes, (stored, request_bytes)


def test_16bit_png_memory_estimate_counts_two_bytes_per_sample():
    for colour_type, bands in ((0, 1), (2, 3)):
        head = images.probe(
            png_16bit(300, 200, colour_type),
            what="the original",
            min_side=1,
            max_side=4096,
            max_pixels=None,
        )
        assert head.decode_bytes >= 300 * 200 * bands * 2
    eight_bit = images.probe(
        encode(np.zeros((200, 300), np.uint8) + 7, "PNG"),
        what="x",
        min_side=1,
        max_side=4096,
        max_pixels=None,
    )
    sixteen = images.probe(
        png_16bit(300, 200, 0), what="x", min_side=1, max_side=4096, max_pixels=None
    )
    assert sixteen.decode_bytes > eight_bit.decode_bytes


def test_16bit_png_original_is_accepted_and_scaled_to_8_bits(client, settings, astronaut_rgb):
    r = post_upload(client, encode(face_crop(astronaut_rgb), "PNG"), original=png_16bit(640, 480))
    assert r.status_code == 201, r.text


def test_decoding_waits_for_the_memory_budget_then_answers_503(tmp_path, astronaut_rgb):
    from backend.routers.uploads import decode_budget

    settings = make_settings(
        tmp_path, decode_memory_bytes=64 * 1024 * 1024, decode_wait_seconds=0.3
    )
    budget = decode_budget(settings)
    crop = encode(face_crop(astronaut_rgb), "PNG")
    with TestClient(create_app(settings)) as client:
        with budget.reserve(settings.decode_memory_bytes, timeout=1):  # someone else decodes
            t0 = time.monotonic()
            r = post_upload(client, crop)
            waited = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert waited >= 0.3
        assert "busy" in r.json()["detail"] and r.headers.get("retry-after")
        assert_nothing_stored(settings)
        assert post_upload(client, crop).status_code == 201  # budget released


def test_an_image_bigger_than_the_whole_budget_gets_413(tmp_path, astronaut_rgb):
    settings = make_settings(tmp_path, decode_memory_bytes=16 * 1024 * 1024)
    original = encode(np.tile(astronaut_rgb, (4, 4, 1)), "JPEG", quality=80)  # 2048x2048
    with TestClient(create_app(settings)) as client:
        r = post_upload(client, encode(face_crop(astronaut_rgb), "PNG"), original=original)
    assert r.status_code == 413, r.text
    assert "memory" in r.json()["detail"]
    assert_words_only(r.json()["detail"])


def test_decode_budget_is_never_exceeded_under_concurrency():
    from backend.decode_budget import DecodeBudget

    budget = DecodeBudget(100)
    in_use = 0
    peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        nonlocal in_use, peak
        size = (7, 30, 55, 100, 1)[i % 5]
        try:
            for _ in range(20):
                with budget.reserve(size, timeout=10):
                    with lock:
                        in_use += size
                        peak = max(peak, in_use)
                        assert in_use <= 100
                    time.sleep(0.0005)
                    with lock:
                        in_use -= size
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 0 < peak <= 100 and budget.in_use == 0


def test_decode_budget_refuses_what_can_never_fit_and_times_out():
    from backend.decode_budget import BudgetBusy, BudgetTooSmall, DecodeBudget

    budget = DecodeBudget(10)
    with pytest.raises(BudgetTooSmall):
        with budget.reserve(11, timeout=1):
            pass
    with budget.reserve(8, timeout=1):
        t0 = time.monotonic()
        with pytest.raises(BudgetBusy):
            with budget.reserve(5, timeout=0.2):
                pass
        assert time.monotonic() - t0 >= 0.2
        with budget.reserve(2, timeout=0):  # still fits next to the 8
            assert budget.in_use == 10
    assert budget.in_use == 0


def test_decode_budget_serves_waiters_first_come_first_served():
    """A big request is not starved by a stream of small ones that would fit."""
    from backend.decode_budget import DecodeBudget

    budget = DecodeBudget(10)
    order: list[str] = []
    first = budget.reserve(6, timeout=1)
    first.__enter__()

    def take(name: str, size: int) -> None:
        with budget.reserve(size, timeout=5):
            order.append(name)

    big = threading.Thread(target=take, args=("big", 10))
    big.start()
    time.sleep(0.05)
    small = threading.Thread(target=take, args=("small", 2))  # would fit now, but queues behind
    small.start()
    time.sleep(0.05)
    assert order == []
    first.__exit__(None, None, None)
    big.join()
    small.join()
    assert order == ["big", "small"]


# ---------------------------------------------------------------- defect 7: words only
@pytest.mark.parametrize(
    "case, data",
    [
        ("garbage after the PNG magic", images.PNG_MAGIC + b"\x13\x37garbage" * 30),
        ("JPEG magic then junk", b"\xff\xd8\xff" + b"\x00junk!" * 40),
        ("truncated PNG", None),
        ("WebP header only", b"RIFF\x24\x00\x00\x00WEBPVP8 "),
        ("empty PNG after IHDR", None),
    ],
)
def test_error_details_are_words_not_python_objects(client, settings, astronaut_rgb, case, data):
    png = encode(face_crop(astronaut_rgb), "PNG")
    if case == "truncated PNG":
        data = png[: len(png) // 3]
    elif case == "empty PNG after IHDR":
        data = png[:33]
    for field in ("crop", "original"):
        kwargs = {"crop": data} if field == "crop" else {"crop": png, "original": data}
        r = post_upload(client, **kwargs)
        assert r.status_code == 400, (case, field, r.text)
        detail = r.json()["detail"]
        assert_words_only(detail)
        assert f"the {field}" in detail and ("corrupt" in detail or "truncated" in detail), detail
    assert_nothing_stored(settings)
