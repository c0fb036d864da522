"""An upload refused for its size costs the server almost nothing: it is refused from its header
and its byte count, before any pixel is decoded, so a burst of them cannot crowd out others.

Measured on `fer-hybrid serve` in a child process: the server's own CPU time (user + system,
all threads, from /proc) around each request.
"""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from server_process import ServerProcess

pytestmark = pytest.mark.slow

#: The goal: no more server CPU than this on any upload refused for its size.
REFUSAL_CPU_SECONDS = 0.2
CLAIMED = (4096, 3072)  # the largest original the server accepts (12.6 megapixels)


def save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def tiled(tile: int, seed: int = 0) -> Image.Image:
    """4096x3072 made of one small random tile: next to nothing in a lossless file."""
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, 256, (tile, tile, 3), dtype=np.uint8)
    return Image.fromarray(np.tile(cell, (CLAIMED[1] // tile, CLAIMED[0] // tile, 1)))


def smooth() -> Image.Image:
    yy, xx = np.mgrid[0 : CLAIMED[1], 0 : CLAIMED[0]]
    arr = 128 + 100 * np.sin(xx / 300.0) * np.cos(yy / 200.0)
    return Image.fromarray(arr.astype(np.uint8)).convert("RGB")


@pytest.fixture(scope="module")
def attacks() -> dict[str, tuple[str, bytes]]:
    """name -> (field, bytes): small files that would each cost seconds to decode and store."""
    face = Image.fromarray(np.random.default_rng(1).integers(0, 256, (600, 600), dtype=np.uint8))
    return {
        # the case: a few KB of lossless WebP claiming 4096x3072
        "lossless WebP": ("original", save(tiled(4), "WEBP", lossless=True)),
        "PNG": ("original", save(tiled(8), "PNG")),
        "lossy WebP": ("original", save(smooth(), "WEBP", quality=1)),
        "grey JPEG": ("original", save(smooth().convert("L"), "JPEG", quality=1)),
        "over the megapixel cap": ("original", save(smooth().resize((4096, 4096)), "JPEG", quality=5)),
        "crop over its side limit": ("crop", save(face, "PNG")),
    }


def crop_png() -> bytes:
    rng = np.random.default_rng(2)
    return save(Image.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8)), "PNG")


def post(url: str, crop: bytes, original: bytes | None = None, timeout: float = 60) -> httpx.Response:
    files = {"crop": ("crop.png", crop, "image/png")}
    if original is not None:
        files["original"] = ("photo", original, "application/octet-stream")
    return httpx.post(
        url + "/api/uploads", files=files, data={"label": "happy", "consent": "true"},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("cost"), FER_HYBRID_UPLOADS_PER_MINUTE="0") as s:
        # One small upload in each format first: the first request of a process imports the
        # decoders (~0.3 s once), which is not what a request costs.
        rng = np.random.default_rng(3)
        for i, (fmt, kwargs) in enumerate(
            [("PNG", {}), ("JPEG", {}), ("WEBP", {}), ("WEBP", {"lossless": True})]
        ):
            img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            r = post(s.url, save(img, fmt, **kwargs))
            assert r.status_code == 201, (i, r.text)
        yield s


def test_uploads_refused_for_their_size_cost_under_a_fifth_of_a_second(server, attacks):
    costs = {}
    for name, (field, data) in attacks.items():
        before = server.cpu_seconds()
        r = post(server.url, data, None) if field == "crop" else post(server.url, crop_png(), data)
        costs[name] = (r.status_code, round(server.cpu_seconds() - before, 3), len(data))
        assert r.status_code == 413, (name, r.text)
    expensive = {k: v for k, v in costs.items() if v[1] > REFUSAL_CPU_SECONDS}
    assert not expensive, f"(status, server CPU s, bytes sent): {costs}"


def test_a_burst_of_them_does_not_delay_another_client(server, attacks):
    """30 such uploads at once (one client's whole burst), and meanwhile another client's photo."""
    field, data = attacks["lossless WebP"]
    statuses: list[int] = []
    photo = save(smooth().resize((1600, 1200)), "JPEG", quality=90)

    def attacker() -> None:
        statuses.append(post(server.url, crop_png(), data).status_code)

    threads = [threading.Thread(target=attacker) for _ in range(30)]
    for t in threads:
        t.start()
    start = time.monotonic()
    r = post(server.url, crop_png(), photo)
    waited = time.monotonic() - start
    for t in threads:
        t.join()
    assert statuses == [413] * 30
    assert r.status_code == 201, r.text
    assert waited < 5, f"the other client waited {waited:.1f} s"
