"""End-to-end: the /upload page (browser-side face detection + alignment, consent, POST, delete)."""

from __future__ import annotations

import io
import json
import time

import e2e_support
import numpy as np
import pytest
from e2e_support import ARTIFACTS, browser, live_server, require_browser, wait_state

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

        # Server errors ({"detail": ...}) are shown to the user.
        page.route("**/api/uploads", lambda route: route.fulfill(
            status=413, content_type="application/json", body=json.dumps({"detail": "photo too large (test)"})))
        page.click("#submit")
        wait_state(page, "!document.getElementById('message').hidden", 20)
        assert "photo too large (test)" in page.inner_text("#message")
        page.unroute("**/api/uploads")

        # "Delete my uploads" removes the file on the server and forgets the token.
        page.click("#delete-all")
        wait_state(page, "document.getElementById('delete-result').textContent.startsWith('Deleted 1')", 20)
        deadline = time.monotonic() + 5
        while label_files(custom, "happy") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert label_files(custom, "happy") == []
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
    from test_backend_helpers import db_rows

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
