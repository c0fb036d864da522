"""POST/DELETE /api/uploads through real HTTP requests (TestClient)."""

from __future__ import annotations

import hashlib
import io
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_backend_helpers import db_rows, image_bytes, make_settings, post_upload, stored_files

from backend.app import create_app


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, max_upload_bytes=200_000, max_image_side=1024, min_image_side=16)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def assert_nothing_stored(settings):
    custom = settings.custom_dir
    assert stored_files(custom) == []
    assert db_rows(custom) == []
    assert db_rows(custom, "claims") == []
    assert not list(custom.rglob("*tmp*"))


def test_good_upload_lands_on_disk_and_in_sqlite(client, settings, astronaut_rgb):
    face = Image.fromarray(astronaut_rgb[30:230, 140:330])  # Eileen Collins' face, RGB
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"  # Make
    buf = io.BytesIO()
    face.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    original = buf.getvalue()
    crop = face.convert("L").resize((96, 96))
    cbuf = io.BytesIO()
    crop.save(cbuf, "PNG")

    r = post_upload(client, cbuf.getvalue(), label="happy", original=original)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "label", "sha256", "deletion_token", "duplicate", "resent"}
    assert body["label"] == "happy" and body["duplicate"] is False and body["resent"] is False
    assert len(body["id"]) == 32 and len(body["deletion_token"]) >= 32

    path = settings.custom_dir / "happy" / f"{body['sha256']}.png"
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == body["sha256"]
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.size == (96, 96)
        assert np.array_equal(np.asarray(img), np.asarray(crop))  # lossless
    originals = list((settings.custom_dir / "originals").iterdir())
    assert len(originals) == 1 and originals[0].suffix == ".jpg"
    with Image.open(originals[0]) as img:
        assert not img.getexif()  # EXIF stripped
        assert img.size == face.size
    assert b"SecretCameraMaker" not in originals[0].read_bytes()

    rows = db_rows(settings.custom_dir)
    assert len(rows) == 1 and rows[0][0] == body["id"] and rows[0][1] == "happy"
    claims = db_rows(settings.custom_dir, "claims")
    assert len(claims) == 1
    token_hash, upload_id, _created, consent, source, _orig_sha, orig_ext = claims[0][:7]
    assert upload_id == body["id"] and consent == 1 and source == "camera" and orig_ext == "jpg"
    assert token_hash == hashlib.sha256(body["deletion_token"].encode()).hexdigest()
    assert body["deletion_token"] not in (
        settings.custom_dir / "uploads.sqlite"
    ).read_bytes().decode("latin-1")
    assert r.headers["cache-control"] == "no-store"

    stats = client.get("/api/uploads/stats").json()
    assert (
        stats["total"] == 1
        and stats["labels"]["happy"] == 1
        and set(stats["labels"])
        == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    )


def test_jpeg_and_webp_crops_are_stored_as_png(client, settings):
    for i, fmt in enumerate(["JPEG", "WEBP"]):
        r = post_upload(client, image_bytes(fmt=fmt, seed=i), label="sad", filename="x.bin")
        assert r.status_code == 201, r.text
        with Image.open(settings.custom_dir / "sad" / f"{r.json()['sha256']}.png") as img:
            assert img.format == "PNG"


def test_duplicates_share_the_image_but_not_the_token(client, settings):
    png = image_bytes(seed=1)
    first = post_upload(client, png, label="fear").json()
    second = post_upload(client, png, label="fear", filename="other-name.png").json()
    assert second["duplicate"] is True and second["id"] == first["id"]
    assert second["sha256"] == first["sha256"]
    assert second["deletion_token"] != first["deletion_token"]
    assert len(db_rows(settings.custom_dir)) == 1
    assert len(db_rows(settings.custom_dir, "claims")) == 2
    assert client.get("/api/uploads/stats").json()["total"] == 1

    other_label = post_upload(client, png, label="angry")
    assert other_label.status_code == 409
    assert "different label" in other_label.json()["detail"]
    assert not (settings.custom_dir / "angry").exists() or not any(
        (settings.custom_dir / "angry").iterdir()
    )

    path = settings.custom_dir / "fear" / f"{first['sha256']}.png"
    url = f"/api/uploads/{first['id']}"
    assert (
        client.delete(url, headers={"X-Deletion-Token": first["deletion_token"]}).status_code == 204
    )
    assert path.exists()  # the second contributor still has it
    assert (
        client.delete(url, headers={"X-Deletion-Token": first["deletion_token"]}).status_code == 403
    )
    assert (
        client.delete(url, headers={"X-Deletion-Token": second["deletion_token"]}).status_code
        == 204
    )
    assert not path.exists()
    assert_nothing_stored(settings)


def test_delete_needs_the_right_token(client, settings):
    body = post_upload(client, image_bytes(seed=2), label="neutral").json()
    url = f"/api/uploads/{body['id']}"
    r = client.delete(url)
    assert r.status_code == 403 and "X-Deletion-Token" in r.json()["detail"]
    r = client.delete(url, headers={"X-Deletion-Token": "nope"})
    assert r.status_code == 403 and r.json()["detail"]
    assert (
        client.delete("/api/uploads/" + "0" * 32, headers={"X-Deletion-Token": "x"}).status_code
        == 404
    )
    assert (
        client.delete("/api/uploads/..%2F..%2Fetc", headers={"X-Deletion-Token": "x"}).status_code
        == 404
    )
    assert len(stored_files(settings.custom_dir)) == 1
    r = client.delete(url, headers={"X-Deletion-Token": body["deletion_token"]})
    assert r.status_code == 204 and r.content == b""
    assert_nothing_stored(settings)
    assert (
        client.delete(url, headers={"X-Deletion-Token": body["deletion_token"]}).status_code == 404
    )


def test_deleting_the_last_upload_of_a_label_removes_its_folder(client, settings):
    first = post_upload(client, image_bytes(seed=30), label="surprise").json()
    second = post_upload(client, image_bytes(seed=31), label="surprise").json()
    folder = settings.custom_dir / "surprise"
    for body, left in ((first, True), (second, False)):
        r = client.delete(f"/api/uploads/{body['id']}",
                          headers={"X-Deletion-Token": body["deletion_token"]})
        assert r.status_code == 204
        assert folder.is_dir() == left
    assert_nothing_stored(settings)
    assert post_upload(client, image_bytes(seed=32), label="surprise").status_code == 201


def _truncated(fmt: str) -> bytes:
    data = image_bytes(size=(128, 128), fmt=fmt, seed=3)
    return data[: len(data) // 2]


def _bomb_png() -> bytes:
    img = Image.new("L", (5000, 5000))  # over max_image_side=1024, compresses to a few KB
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "case, kwargs, status, words",
    [
        ("text named .png", dict(crop=b"hello, I am not an image" * 10), 400, "not a PNG"),
        ("html named .png", dict(crop=b"<html><script>alert(1)</script></html>"), 400, "not a PNG"),
        ("truncated png", dict(crop=_truncated("PNG")), 400, "truncated or corrupt"),
        ("truncated jpeg", dict(crop=_truncated("JPEG")), 400, "truncated or corrupt"),
        ("png magic, garbage", dict(crop=b"\x89PNG\r\n\x1a\n" + b"\0" * 200), 400, "corrupt"),
        ("gif", dict(crop=b"GIF89a" + b"\0" * 100), 400, "not a PNG"),
        ("too many pixels", dict(crop=_bomb_png()), 413, "largest accepted side"),
        ("too small", dict(crop=image_bytes(size=(8, 8))), 400, "smallest accepted side"),
        ("unknown label", dict(label="joy"), 422, "unknown label"),
        ("traversal label", dict(label="../x"), 422, "unknown label"),
        ("traversal label 2", dict(label="happy/../../x"), 422, "unknown label"),
        ("missing label", dict(label=None), 422, "label"),
        ("missing consent", dict(consent=None), 400, "consent"),
        ("false consent", dict(consent="false"), 400, "consent"),
        ("empty consent", dict(consent=""), 400, "consent"),
        ("bad source", dict(source="satellite"), 422, "source"),
        ("missing crop", dict(crop=None), 422, "crop"),
        ("corrupt original", dict(original=b"\xff\xd8\xff" + b"x" * 50), 400, "original"),
    ],
)
def test_bad_uploads_are_rejected_and_leave_nothing(client, settings, case, kwargs, status, words):
    args = dict(crop=image_bytes(seed=4), label="happy", consent="true", filename="crop.png")
    args.update(kwargs)
    r = post_upload(client, **args)
    assert r.status_code == status, (case, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail
    assert_nothing_stored(settings)


def test_oversized_files_get_413_and_leave_nothing(client, settings):
    big = image_bytes(size=(300, 300), seed=5)  # ~270 KB of noise > 200 KB limit
    assert len(big) > settings.max_upload_bytes
    r = post_upload(client, big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert_nothing_stored(settings)


def test_huge_body_is_refused_while_streaming(client, settings):
    chunk = b"\0" * 65536
    sent = 0

    def body():
        nonlocal sent
        for _ in range(2000):  # would be ~130 MB; the server stops reading long before
            sent += len(chunk)
            yield chunk

    r = client.post(
        "/api/uploads",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    assert_nothing_stored(settings)

    r = client.post(
        "/api/uploads",
        content=b"x",
        headers={"content-type": "multipart/form-data; boundary=xyz", "content-length": str(10**9)},
    )
    assert r.status_code == 413


def test_traversal_filename_is_ignored(client, settings, tmp_path):
    r = post_upload(client, image_bytes(seed=6), filename="../../x.png")
    assert r.status_code == 201
    assert not list(tmp_path.rglob("x.png"))
    files = stored_files(settings.custom_dir)
    assert files == [settings.custom_dir / "happy" / f"{r.json()['sha256']}.png"]


def test_not_multipart_is_a_clear_400(client, settings):
    r = client.post("/api/uploads", json={"label": "happy"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
    assert_nothing_stored(settings)


def test_twenty_concurrent_uploads_lose_nothing(client, settings):
    results: list = [None] * 20
    same = image_bytes(seed=999)

    def worker(i: int) -> None:
        crop = same if i % 4 == 0 else image_bytes(seed=100 + i)
        results[i] = post_upload(client, crop, label="surprise")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and r.status_code == 201 for r in results), [r.text for r in results]
    bodies = [r.json() for r in results]
    same_ids = {b["id"] for i, b in enumerate(bodies) if i % 4 == 0}
    assert len(same_ids) == 1
    assert sum(not b["duplicate"] for i, b in enumerate(bodies) if i % 4 == 0) == 1
    assert len({b["id"] for b in bodies}) == 16
    assert len({b["deletion_token"] for b in bodies}) == 20
    assert len(db_rows(settings.custom_dir)) == 16
    assert len(db_rows(settings.custom_dir, "claims")) == 20
    files = stored_files(settings.custom_dir)
    assert len(files) == 16 and {f.stem for f in files} == {b["sha256"] for b in bodies}
    assert not list(settings.custom_dir.rglob("*tmp*"))


def test_cross_site_posts_are_refused(client, settings):
    files = {"crop": ("c.png", image_bytes(seed=7), "image/png")}
    data = {"label": "happy", "consent": "true"}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        r = client.post("/api/uploads", files=files, data=data, headers=headers)
        assert r.status_code == 403 and "own pages" in r.json()["detail"], headers
    assert_nothing_stored(settings)
    same = client.post(
        "/api/uploads",
        files=files,
        data=data,
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 201, same.text
