"""A JPEG cut short is refused whatever comes between the cut and its end marker.

libjpeg pads a scan that stops early with flat grey and only warns; a file cut mid-scan and closed
with a comment, an APPn or a quantisation-table segment before FF D9 looks complete to anything
that walks markers. Over HTTP: every such variant is a 400 and leaves nothing behind, and intact
files of the same kinds are still accepted.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_backend_helpers import db_rows, make_settings, post_upload, stored_files

from backend.app import create_app

EOI = b"\xff\xd9"
#: Segments a cut file may carry before its end marker: a comment, an APP1, a quantisation table.
SEGMENTS = {
    "COM": b"\xff\xfe\x00\x07hello",
    "APP1": b"\xff\xe1\x00\x07hello",
    "DQT": b"\xff\xdb\x00\x43\x00" + bytes(range(1, 65)),
}
CUTS = (0.1, 0.3, 0.5, 0.65, 0.8)


def jpeg(progressive: bool, content: str) -> bytes:
    if content == "noise":  # the issue's own recipe: 128x128 random RGB
        img = Image.frombytes("RGB", (128, 128), os.urandom(128 * 128 * 3))
    else:
        rng = np.random.default_rng(7)
        yy, xx = np.mgrid[0:128, 0:128]
        arr = (128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 12, (128, 128)))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("cuts"), uploads_per_minute=0)
    with TestClient(create_app(settings)) as c:
        c.settings = settings
        yield c


def test_the_issue_recipe_is_refused(client):
    data = jpeg(False, "noise")
    cut = data[: len(data) // 2] + SEGMENTS["COM"] + EOI
    r = post_upload(client, cut)
    assert r.status_code == 400, r.text
    assert "truncated" in r.json()["detail"]


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("segment", sorted(SEGMENTS))
def test_cut_before_any_segment_and_end_marker_is_refused(client, progressive, segment):
    refused = []
    for content in ("noise", "smooth"):
        data = jpeg(progressive, content)
        for cut in CUTS:
            r = post_upload(client, data[: int(len(data) * cut)] + SEGMENTS[segment] + EOI)
            if r.status_code != 400 or "truncated" not in r.json()["detail"]:
                refused.append((content, cut, r.status_code, r.text[:120]))
    assert not refused, f"accepted or mis-reported cut files: {refused}"
    assert stored_files(client.settings.custom_dir) == []
    assert db_rows(client.settings.custom_dir) == []


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_intact_files_of_the_same_kinds_are_accepted(client, progressive):
    for content in ("noise", "smooth"):
        data = jpeg(progressive, content)
        r = post_upload(client, data)
        assert r.status_code == 201, (content, r.text)
        # an intact file with a comment in front of its end marker is still a complete file
        r = post_upload(client, data[:-2] + SEGMENTS["COM"] + EOI)
        assert r.status_code == 201 and r.json()["duplicate"], (content, r.text)


def test_strict_decoding_keeps_what_pillow_did_for_cmyk_and_rotated_photos(client):
    """The strict decoder replaced Pillow's for JPEG: CMYK (Adobe, stored inverted) still comes
    out as Pillow reads it, and the EXIF orientation still turns the picture upright."""
    smooth = Image.open(io.BytesIO(jpeg(False, "smooth"))).convert("RGB").resize((96, 64))
    buf = io.BytesIO()
    smooth.convert("CMYK").save(buf, "JPEG", quality=95)
    r = post_upload(client, buf.getvalue(), label="fear")
    assert r.status_code == 201, r.text
    with Image.open(client.settings.custom_dir / "fear" / f"{r.json()['sha256']}.png") as stored:
        expected = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        assert np.array_equal(np.asarray(stored.convert("RGB")), np.asarray(expected))

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    smooth.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    r = post_upload(client, buf.getvalue(), label="surprise")
    assert r.status_code == 201, r.text
    with Image.open(client.settings.custom_dir / "surprise" / f"{r.json()['sha256']}.png") as up:
        assert up.size == (64, 96)  # upright: the sides swapped
