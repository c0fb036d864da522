"""End-to-end: the /upload page (browser-side face detection + alignment, consent, POST, delete)."""

from __future__ import annotations

import io
import json
import time

import e2e_support
import numpy as np
import pytest
from e2e_support import ARTIFACTS, browser, live_server, multi_face_frame, require_browser, wait_state
from test_backend_helpers import db_rows

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture

UPLOAD_READY = "window.ferUploadState && window.ferUploadState.ready"


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def label_files(custom, label):
    d = custom / label
    return sorted(d.glob("*.png")) if d.exists() else []


def test_upload_flow_with_consent_and_deletion(e2e_models, astronaut_rgb, tmp_path):
    require_browser()
    custom = tmp_path / "custom"
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(png_bytes(astronaut_rgb))
    with live_server(e2e_models, custom) as base, browser() as b:
        ctx = b.new_context(viewport={"width": 412, "height": 900})
        posts = []
        ctx.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/upload?backend=wasm")
        wait_state(page, UPLOAD_READY, 60)
        page.set_input_files("#file", str(photo))
        wait_state(page, "window.ferUploadState.faces >= 1 && window.ferUploadState.selected === 0", 60)
        assert page.is_visible("#crops canvas")
        # The crop is the aligned face: 128x128 and not flat.
        spread = page.evaluate("""(() => { const c = document.querySelector('#crops canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
            return [c.width, c.height, hi - lo]; })()""")
        assert spread[:2] == [128, 128] and spread[2] > 80
        # Upload stays disabled until a label AND consent are given.
        assert page.is_disabled("#submit")
        page.check("input[name=label][value=happy]")
        assert page.is_disabled("#submit")
        assert not page.is_checked("#send-original")
        page.check("#consent")
        assert page.is_enabled("#submit")
        page.screenshot(path=str(ARTIFACTS / "upload_ready.png"), full_page=True)
        page.click("#submit")
        wait_state(page, "document.getElementById('result').dataset.status === 'ok'", 30)
        assert "happy" in page.inner_text("#result")
        files = label_files(custom, "happy")
        assert len(files) == 1
        assert not (custom / "originals").exists() or not any((custom / "originals").iterdir())
        # One POST, to /api/uploads, without the original photo (unticked by default).
        assert [p.url for p in posts] == [f"{base}/api/uploads"]
        # (Chromium does not expose multipart bodies with blobs to Playwright; originals/ is checked above.)
        stored = json.loads(page.evaluate("localStorage.getItem('fer-hybrid.uploads')"))
        assert len(stored) == 1 and stored[0]["token"] and stored[0]["label"] == "happy"
        page.screenshot(path=str(ARTIFACTS / "upload_done.png"), full_page=True)
        # Sent: Upload is off until the face or the label changes (a second tap used to store
        # a second claim on the same face).
        assert page.is_disabled("#submit")
        page.evaluate("document.getElementById('submit').click()")
        page.wait_for_timeout(300)
        assert len(posts) == 1 and len(db_rows(custom, "claims")) == 1

        # Server errors ({"detail": ...}) are shown to the user.
        page.route("**/api/uploads", lambda route: route.fulfill(
            status=413, content_type="application/json", body=json.dumps({"detail": "photo too large (test)"})))
        page.check("input[name=label][value=surprise]")
        assert page.is_enabled("#submit")
        page.click("#submit")
        wait_state(page, "!document.getElementById('message').hidden", 20)
        assert "photo too large (test)" in page.inner_text("#message")
        page.unroute("**/api/uploads")
        page.check("input[name=label][value=happy]")
        assert page.is_disabled("#submit"), "the face and label already sent"

        # "Delete my uploads" removes the file on the server and forgets the token.
        page.click("#delete-all")
        wait_state(page, "document.getElementById('delete-result').textContent.startsWith('Deleted 1')", 20)
        deadline = time.monotonic() + 5
        while label_files(custom, "happy") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert label_files(custom, "happy") == []
        assert not (custom / "happy").exists(), "no empty label folder is left behind"
        assert page.evaluate("localStorage.getItem('fer-hybrid.uploads')") == "[]"
        assert errors == []
        ctx.close()


def test_upload_with_original_and_no_face(e2e_models, astronaut_rgb, tmp_path):
    require_browser()
    custom = tmp_path / "custom"
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(png_bytes(astronaut_rgb))
    blank = tmp_path / "blank.png"
    blank.write_bytes(png_bytes(np.full((200, 200, 3), 90, np.uint8)))
    with live_server(e2e_models, custom) as base, browser() as b:
        page = b.new_page()
        page.goto(f"{base}/upload?backend=wasm")
        wait_state(page, UPLOAD_READY, 60)
        page.set_input_files("#file", str(blank))
        wait_state(page, "document.getElementById('status').textContent.startsWith('No face')", 30)
        assert page.is_disabled("#submit")
        page.set_input_files("#file", str(photo))
        wait_state(page, "window.ferUploadState.faces >= 1", 60)
        page.check("input[name=label][value=neutral]")
        page.check("#consent")
        page.check("#send-original")
        page.click("#submit")
        wait_state(page, "document.getElementById('result').dataset.status === 'ok'", 30)
        assert len(label_files(custom, "neutral")) == 1
        originals = [p for p in (custom / "originals").rglob("*") if p.is_file()]
        assert len(originals) == 1


def test_lost_answer_is_resent_with_the_same_key(e2e_models, astronaut_rgb, tmp_path, monkeypatch):
    """The server stores the upload but its answer is lost (500): the page re-sends with the same
    Idempotency-Key, gets the token of the stored contribution, and can delete it completely."""
    require_browser()
    from backend import storage

    real_add = storage.UploadStore.add
    keys = []

    def add_then_lose_the_answer(self, *args, **kwargs):
        stored = real_add(self, *args, **kwargs)
        keys.append(kwargs.get("key"))
        if len(keys) == 1:
            raise RuntimeError("committed, but the answer is lost (test)")
        return stored

    monkeypatch.setattr(storage.UploadStore, "add", add_then_lose_the_answer)
    custom = tmp_path / "custom"
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(png_bytes(astronaut_rgb))
    with live_server(e2e_models, custom) as base, browser() as b:
        page = b.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/upload?backend=wasm")
        wait_state(page, UPLOAD_READY, 60)
        page.set_input_files("#file", str(photo))
        wait_state(page, "window.ferUploadState.faces >= 1", 60)
        page.check("input[name=label][value=sad]")
        page.check("#consent")
        page.click("#submit")
        wait_state(page, "document.getElementById('result').dataset.status === 'ok'", 30)
        assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
        assert page.evaluate("window.ferUploadState.lastUpload.resent") is True
        assert len(db_rows(custom, "claims")) == 1 and len(label_files(custom, "sad")) == 1
        assert page.evaluate("localStorage.getItem('fer-hybrid.pending')") == "[]"
        page.click("#delete-all")
        wait_state(page, "document.getElementById('delete-result').textContent.startsWith('Deleted 1')", 20)
        assert label_files(custom, "sad") == []
        assert db_rows(custom) == [] and db_rows(custom, "claims") == []
        assert errors == []


def test_crops_are_numbered_like_the_faces_in_the_preview(e2e_models, astronaut_rgb, tmp_path):
    """Two faces side by side: the preview numbers them in reading order (1 left, 2 right), and
    each crop carries its face's number, in the same order."""
    require_browser()
    photo = tmp_path / "two.png"
    photo.write_bytes(png_bytes(multi_face_frame(astronaut_rgb)))
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        page = b.new_context(viewport={"width": 390, "height": 844}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/upload?backend=wasm")
        wait_state(page, UPLOAD_READY, 60)
        page.set_input_files("#file", str(photo))
        wait_state(page, "window.ferUploadState.faces === 2", 60)
        tags = page.evaluate("""[...document.querySelectorAll('#preview-overlay .face-tag')].map((t) => {
            const r = t.getBoundingClientRect(); return { face: t.dataset.face, x: r.left + r.width / 2,
            text: t.innerText.trim(), shown: !t.hidden && r.width > 0 }; })""")
        boxes = page.evaluate("""[...document.querySelectorAll('#preview-overlay .face-box')].map((b) => {
            const r = b.getBoundingClientRect(); return { face: b.dataset.face, x: r.left + r.width / 2 }; })""")
        crops = page.evaluate("""[...document.querySelectorAll('#crops button')].map((b) => ({
            label: b.getAttribute('aria-label'), num: b.querySelector('.crop-num') && b.querySelector('.crop-num').innerText }))""")
        faces = page.evaluate("window.ferUploadState.numbered")
        page.screenshot(path=str(ARTIFACTS / "upload_two_faces.png"), full_page=True)
        assert errors == []
    assert sorted(t["face"] for t in tags) == ["1", "2"] and all(t["shown"] for t in tags), tags
    assert [t["text"] for t in sorted(tags, key=lambda t: t["x"])] == ["1", "2"], tags
    assert [b["face"] for b in sorted(boxes, key=lambda b: b["x"])] == ["1", "2"], boxes
    assert crops == [{"label": "Face 1", "num": "1"}, {"label": "Face 2", "num": "2"}], crops
    # Crop k is the face numbered k: the page's record of each crop's box, left face first.
    assert [f["number"] for f in faces] == [1, 2] and faces[0]["box"]["x"] < faces[1]["box"]["x"], faces


def test_photo_inputs_offer_the_gallery(e2e_models, tmp_path):
    """`capture` makes a phone open its front camera at once, with no way to the gallery; the
    buttons say "Take or choose a photo" and "Photo", so neither input may carry it."""
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        page = b.new_page()
        found = {}
        for path in ("/", "/upload"):
            page.goto(base + path)
            found[path] = page.eval_on_selector_all(
                "input[type=file]", "els => els.map((e) => [e.id, e.getAttribute('accept'), e.getAttribute('capture')])")
    assert found == {"/": [["photo", "image/*", None]], "/upload": [["file", "image/*", None]]}, found
