"""End-to-end: the live camera page in headless Chromium (fake camera from a Y4M of a real face).

Runs against the real backend (Uvicorn in a thread) with a tiny exported model ensemble, on the
wasm backend. Latency numbers are written to tests/_artifacts/e2e_metrics.json.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import e2e_support
import pytest
from e2e_support import (
    ARTIFACTS,
    LABELS,
    RequestLog,
    allowed_live_url,
    browser,
    js_state,
    live_server,
    page_weight,
    require_browser,
    save_json,
    wait_state,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Shared session fixtures (assigned, not imported, so they can be used as parameters).
e2e_models = e2e_support.e2e_models
e2e_videos = e2e_support.e2e_videos

REPO = Path(__file__).resolve().parents[1]
READY = "window.ferState && window.ferState.ready"


def open_live(b, base, *, query="backend=wasm", viewport=(412, 860)):
    ctx = b.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    log = RequestLog(ctx)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/?{query}")
    return ctx, page, log, errors


def start_and_wait_faces(page, n_faces, timeout_s=60):
    wait_state(page, READY, timeout_s)
    assert page.evaluate("window.ferState.backend") == "wasm"
    page.click("#toggle")
    return wait_state(
        page,
        f"window.ferState.frames >= 3 && window.ferState.faces.length >= {n_faces}"
        " && window.ferState.faces.every(f => f.label)",
        timeout_s,
    )


def assert_private(log: RequestLog, base: str) -> None:
    assert log.foreign(base) == [], "requests left 127.0.0.1"
    assert log.non_get() == [], "live recognition must only GET static files"
    assert not [r for r in log.requests if r["body"]], "a request carried a body"
    bad = [r["url"] for r in log.requests if not allowed_live_url(base, r["url"])]
    assert bad == [], f"unexpected requests: {bad}"
    assert not [r for r in log.requests if "/api/" in r["url"]]


def overlay_faces(page) -> list[dict]:
    """The overlay's boxes (DOM elements over the video) with their tags' numbers and text."""
    return page.evaluate(
        """[...document.querySelectorAll('#overlay .face-box')].map((b) => {
            const t = document.querySelector(`#overlay .face-tag[data-face="${b.dataset.face}"]`);
            return { face: b.dataset.face, w: b.offsetWidth, tag: t && !t.hidden ? t.innerText : null }; })"""
    )


def test_live_single_face_labelled_locally(e2e_models, e2e_videos, tmp_path):
    with live_server(e2e_models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        ctx, page, log, errors = open_live(b, base)
        t0 = time.monotonic()
        start_and_wait_faces(page, 1)
        first_label_s = time.monotonic() - t0
        # Let it run a little and sample the per-frame timings.
        samples = []
        for _ in range(12):
            time.sleep(0.4)
            s = js_state(page)
            samples.append((s["detectMs"], s["classifyPerFaceMs"], s["lastLatencyMs"]))
        s = js_state(page)
        assert 1 <= len(s["faces"]) <= 2
        face = max(s["faces"], key=lambda f: f["box"]["w"])
        assert face["label"] in LABELS
        assert len(face["probs"]) == 7 and abs(sum(face["probs"]) - 1) < 1e-3
        box = face["box"]
        # The astronaut's face is near the top middle of the 640x480 frame.
        assert 150 < box["x"] + box["w"] / 2 < 450 and 40 < box["y"] + box["h"] / 2 < 300
        assert 60 < box["w"] < 300
        # DOM mirrors of the state, and a non-empty overlay.
        assert int(page.get_attribute("body", "data-faces")) >= 1
        assert page.get_attribute("#face-list li", "data-label") in LABELS
        assert page.get_attribute("body", "data-state") == "running"
        # One model (no "variants" in the manifest): no model menu, nothing else loaded.
        assert s["variants"] == [] and s["variant"] is None and not page.is_visible("#model-choice")
        boxes = overlay_faces(page)
        assert boxes and all(x["w"] > 20 and x["tag"] for x in boxes), boxes
        # The list's first row is the face numbered 1 on the picture.
        assert page.get_attribute("#face-list li", "data-face") == "1"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live_portrait.png"))
        page.set_viewport_size({"width": 860, "height": 412})
        time.sleep(1)
        page.screenshot(path=str(ARTIFACTS / "live_landscape.png"))
        assert errors == []
        assert_private(log, base)
        # Stop releases the camera and clears faces.
        page.click("#toggle")
        wait_state(page, "window.ferState.status === 'ready' && window.ferState.faces.length === 0", 20)
        assert overlay_faces(page) == [] and page.query_selector_all("#face-list li") == []
        ctx.close()
    med = lambda i: statistics.median(x[i] for x in samples if x[i] is not None)
    save_json("e2e_metrics.json", {
        "backend": "wasm (single-threaded SIMD), headless Chromium",
        "first_label_after_load_s": round(first_label_s, 2),
        "detect_ms_median": round(med(0), 2),
        "classify_ms_per_face_median": round(med(1), 2),
        "frame_latency_ms_median": round(med(2), 2),
        "page_weight_bytes": page_weight(REPO / "web", e2e_models),
    })


def test_live_several_faces(e2e_models, e2e_videos, tmp_path):
    with live_server(e2e_models, tmp_path / "custom") as base, browser(e2e_videos["multi"]) as b:
        ctx, page, log, errors = open_live(b, base)
        start_and_wait_faces(page, 2)
        s = js_state(page)
        xs = sorted(f["box"]["x"] + f["box"]["w"] / 2 for f in s["faces"])
        assert xs[0] < 320 < xs[-1], "one face on each half of the frame"
        assert all(f["label"] in LABELS for f in s["faces"])
        assert len(page.query_selector_all("#face-list li")) >= 2
        page.screenshot(path=str(ARTIFACTS / "live_multi.png"))
        assert errors == []
        assert_private(log, base)
        ctx.close()


def test_service_worker_registers_and_serves_offline(e2e_models, tmp_path):
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx, page, _log, _errors = open_live(b, base)
        wait_state(page, READY, 60)
        scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
        assert scope == base + "/"
        # The install step caches the shell, the vendored files and every model file.
        wait_state(page, """caches.keys().then(async ks => {
            const all = [];
            for (const k of ks) for (const r of await (await caches.open(k)).keys()) all.push(new URL(r.url).pathname);
            return all.includes('/models/manifest.json') && all.includes('/models/tiny_cnn/model.json')
              && all.some(p => p.endsWith('.bin') && p.startsWith('/models/'))
              && all.includes('/static/vendor/human-3.3.6/models/blazeface.bin') && all.includes('/static/js/main.js');
        })""", 60)
        # Offline reload: the page still comes up and loads its models from the cache.
        ctx.set_offline(True)
        page.reload()
        wait_state(page, READY + " && window.ferState.modelsLoaded", 60)
        assert page.evaluate("window.ferState.error") is None
        ctx.close()


def test_insecure_context_decision(e2e_models, tmp_path):
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx, page, _, _ = open_live(b, base)
        wait_state(page, READY, 60)
        cases = page.evaluate("""import('/static/js/env.js').then(m => ({
            lanHttp: m.cameraProblem({isSecureContext: false, hostname: '192.168.1.20', protocol: 'http:', hasMediaDevices: false}),
            lanHttps: m.cameraProblem({isSecureContext: true, hostname: '192.168.1.20', protocol: 'https:', hasMediaDevices: true}),
            localhost: m.cameraProblem({isSecureContext: false, hostname: 'localhost', protocol: 'http:', hasMediaDevices: true}),
            noMedia: m.cameraProblem({isSecureContext: true, hostname: 'example.org', protocol: 'https:', hasMediaDevices: false}),
        }))""")
        assert cases["lanHttp"]["code"] == "insecure"
        assert "--https" in cases["lanHttp"]["message"] and "localhost" in cases["lanHttp"]["message"]
        assert cases["lanHttps"] is None and cases["localhost"] is None
        assert cases["noMedia"]["code"] == "no-media"
        ctx.close()


def test_insecure_origin_shows_https_hint(e2e_models, tmp_path):
    """Open the page via a non-localhost name over plain HTTP (a phone on the LAN would see this)."""
    require_browser()
    from e2e_support import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    # the name must be trusted (`serve --trusted-host`), like any name a phone uses
    with live_server(e2e_models, tmp_path / "custom", trusted_hosts=["fer-phone.test"]) as base, \
            sync_playwright() as p:
        port = base.rsplit(":", 1)[1]
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=CHROMIUM_ARGS + ["--host-resolver-rules=MAP fer-phone.test 127.0.0.1"])
        try:
            page = b.new_page()
            page.goto(f"http://fer-phone.test:{port}/?backend=wasm")
            wait_state(page, "window.ferState && window.ferState.cameraProblem", 30)
            assert page.evaluate("window.isSecureContext") is False
            assert page.evaluate("window.ferState.cameraProblem") == "insecure"
            text = page.inner_text("#message")
            assert "HTTPS" in text and "fer-hybrid serve --host 0.0.0.0 --https" in text
            assert page.is_disabled("#toggle")
            page.screenshot(path=str(ARTIFACTS / "insecure.png"))
        finally:
            b.close()


def test_missing_models_and_denied_camera_show_messages(tmp_path):
    require_browser()
    empty = tmp_path / "models"
    empty.mkdir()
    with live_server(empty, tmp_path / "custom") as base, browser() as b:
        ctx = b.new_context()
        # Simulate the user refusing the camera permission prompt.
        ctx.add_init_script("""navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));""")
        page = ctx.new_page()
        page.goto(f"{base}/?backend=wasm")
        wait_state(page, READY, 60)
        assert page.evaluate("window.ferState.error") == "models"
        assert "models failed to load" in page.inner_text("#message")
        page.click("#toggle")
        wait_state(page, "window.ferState.error === 'denied'", 20)
        assert "permission was denied" in page.inner_text("#message")
        assert page.is_visible("#message")
        ctx.close()


def test_committed_models_label_the_astronaut(e2e_videos, tmp_path):
    """The models committed in models/ (placeholder or real) load and label a real face."""
    models = REPO / "models"
    require_browser()
    with live_server(models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        ctx, page, log, errors = open_live(b, base)
        start_and_wait_faces(page, 1, timeout_s=120)
        assert all(f["label"] in LABELS for f in js_state(page)["faces"])
        assert errors == []
        assert_private(log, base)
        ctx.close()


def test_still_photo_mode_labels_every_face_even_when_dark(e2e_models, astronaut_rgb, tmp_path):
    """Photo mode (no camera): the normal photo, then a very dark copy (low-light normalisation kicks in)."""
    require_browser()
    import numpy as np
    from e2e_support import multi_face_frame
    from PIL import Image

    bright = tmp_path / "two.png"
    Image.fromarray(multi_face_frame(astronaut_rgb)).save(bright)
    dark = tmp_path / "dark.jpg"
    Image.fromarray((astronaut_rgb.astype(np.float32) * 0.22).astype(np.uint8)).save(dark, quality=92)
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx, page, log, errors = open_live(b, base)
        wait_state(page, READY, 60)
        page.set_input_files("#photo", str(bright))
        wait_state(page, "window.ferState.mode === 'still' && window.ferState.faces.length >= 2", 60)
        assert all(f["label"] in LABELS for f in js_state(page)["faces"])
        assert page.is_visible("#still")
        page.screenshot(path=str(ARTIFACTS / "still_two_faces.png"))
        page.set_input_files("#photo", str(dark))
        wait_state(page, "window.ferState.status === 'photo' && window.ferState.faces.length === 1", 60)
        face = js_state(page)["faces"][0]
        assert face["label"] in LABELS
        assert face["lowlight"] in ("equalize", "stretch")
        assert errors == []
        assert log.non_get() == []
        ctx.close()
