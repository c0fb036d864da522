"""End-to-end in the three browser engines: Chromium, Firefox and WebKit (every iPhone browser).

Each engine loads the page (Ready), runs a photo through the Photo button (the same box within
2 px and the same label as Chromium), labels a face live from a camera that shows one, and sends
a labelled crop from the upload page; no uncaught error or unhandled rejection on the way.
The engines' own fake cameras show test patterns: tests/engine_harness.js, which the tests'
server puts first into the pages (tests/engine_pages.py), replaces getUserMedia with a canvas
stream of a face and collects the page's errors. One server and one browser per engine; the wasm
backend, as in the other browser tests. Drivers: tests/engines.py.
"""

from __future__ import annotations

import json

import e2e_support
import numpy as np
import pytest
from e2e_support import LABELS, require_browser, single_face_frame
from engine_support import (
    UPLOAD_PAGE,
    analyse_photo,
    assert_no_errors,
    live_faces,
    open_ready,
    pick_photo,
    png,
    site,
)
from engines import ENGINES, launch, require_engine

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture

# WebKit's MiniBrowser is never narrower than 447 px: every engine gets the same window.
VIEWPORT = (447, 900)
BOX_TOLERANCE_PX = 2
PROBS_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def test_files(astronaut_rgb) -> dict[str, tuple[bytes, str]]:
    """Served at /__e2e__/: the camera's frame (a face, 640x480) and the photo to analyse."""
    return {"camera.png": (png(single_face_frame(astronaut_rgb)), "image/png"),
            "photo.png": (png(astronaut_rgb), "image/png")}


@pytest.fixture(scope="module")
def pw_session():
    """One Playwright for the module: Chromium's reference and Chromium's own tests share it."""
    require_browser()
    from playwright.sync_api import sync_playwright

    p = sync_playwright().start()
    yield p
    p.stop()


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, e2e_models, test_files, tmp_path_factory):
    """(engine, base URL, custom dir): one server and one browser per engine, for its tests."""
    name = request.param
    require_engine(name)
    root = tmp_path_factory.mktemp(name)
    pw = request.getfixturevalue("pw_session") if name == "chromium" else None
    with site(e2e_models, root / "custom", test_files) as base, \
            launch(name, root, VIEWPORT, pw) as browser:
        yield browser, base, root / "custom"


@pytest.fixture(scope="module")
def chromium_photo(pw_session, e2e_models, test_files, tmp_path_factory) -> list[dict]:
    """Chromium's faces in the photo (own server and browser): what the other engines must match."""
    root = tmp_path_factory.mktemp("chromium-reference")
    with site(e2e_models, root / "custom", test_files) as base, \
            launch("chromium", root, VIEWPORT, pw_session) as browser:
        open_ready(browser, base)
        faces = analyse_photo(browser)
        assert_no_errors(browser)
    return faces


def test_harness_sees_uncaught_errors(engine):
    """The no-error checks below can fail: in this engine the harness records an uncaught error
    and an unhandled rejection thrown in the page."""
    browser, base, _ = engine
    browser.goto(base + UPLOAD_PAGE)
    assert browser.run("return window.__e2e.errors;") == []
    browser.run("""setTimeout(() => { throw new TypeError('thrown by the test'); });
                   Promise.reject(new RangeError('rejected by the test'));""")
    errors = browser.wait("window.__e2e.errors.length >= 2 && window.__e2e.errors", 10)
    assert any("TypeError: thrown by the test" in e for e in errors), errors
    assert any("unhandled rejection: RangeError: rejected by the test" in e for e in errors), errors


def test_photo_matches_chromium(engine, chromium_photo):
    """The Photo button finds the astronaut's face where Chromium does and labels it alike
    (for Chromium itself: the same result on a second page load)."""
    browser, base, _ = engine
    open_ready(browser, base)
    faces = analyse_photo(browser)
    assert len(chromium_photo) == 1, f"chromium found {len(chromium_photo)} faces in the astronaut"
    assert len(faces) == len(chromium_photo), \
        f"{browser.name}: {faces} vs chromium {chromium_photo}"
    for got, ref in zip(faces, chromium_photo, strict=True):
        off = {k: round(abs(got["box"][k] - ref["box"][k]), 2) for k in ("x", "y", "w", "h")}
        assert max(off.values()) <= BOX_TOLERANCE_PX, \
            f"{browser.name}: box {got['box']} vs chromium {ref['box']} (off by {off} px)"
        assert got["label"] == ref["label"] and got["label"] in LABELS, (
            f"{browser.name}: {got['label']} {got['probs']} "
            f"vs chromium {ref['label']} {ref['probs']}")
        # The same wasm kernels on nearly the same crop: the probabilities agree closely too
        # (measured: a few 1e-5 apart), so a drift shows here before it flips a label.
        assert np.allclose(got["probs"], ref["probs"], atol=PROBS_TOLERANCE), \
            f"{browser.name}: probabilities {got['probs']} vs chromium {ref['probs']}"
    assert_no_errors(browser)


def test_live_labels_the_camera_face(engine):
    """Start: the live loop boxes and labels the face the (stub) camera shows; Stop clears it."""
    browser, base, _ = engine
    open_ready(browser, base)
    browser.run("document.getElementById('toggle').click();")
    browser.wait("window.ferState.frames >= 3 && window.ferState.faces.length >= 1"
                 " && window.ferState.faces.every((f) => f.label)", 60)
    assert browser.run("return window.__e2e.cameraCalls;") == 1, \
        f"{browser.name}: the page did not open the stub camera once"
    faces = live_faces(browser)
    assert 1 <= len(faces) <= 2, f"{browser.name}: {faces}"
    face = max(faces, key=lambda f: f["box"]["w"])
    box = face["box"]
    # The astronaut's face is near the top middle of the 640x480 frame (as in test_e2e_live.py).
    assert 150 < box["x"] + box["w"] / 2 < 450 and 40 < box["y"] + box["h"] / 2 < 300, \
        f"{browser.name}: {box}"
    assert 60 < box["w"] < 300 and face["label"] in LABELS, f"{browser.name}: {face}"
    assert browser.run("return document.body.dataset.state;") == "running", browser.name
    # Every engine runs the live loop's detector and classifier in workers (modelworker.js).
    threads = browser.run("const s = window.ferState; return [s.detectorThread, s.classifierThread, s.workerNote];")
    assert threads[:2] == ["worker", "worker"], f"{browser.name}: {threads}"
    browser.run("document.getElementById('toggle').click();")  # Stop
    browser.wait("window.ferState.status === 'ready' && window.ferState.faces.length === 0", 20)
    assert_no_errors(browser)


def test_upload_stores_the_labelled_crop(engine):
    """The upload page: photo -> face crop -> label + consent -> POST /api/uploads -> stored."""
    browser, base, custom = engine
    browser.goto(base + UPLOAD_PAGE)
    browser.wait("window.ferUploadState"
                 " && (window.ferUploadState.ready || window.ferUploadState.error)", 120)
    assert browser.run("return window.ferUploadState.error;") is None, browser.name
    pick_photo(browser, "#file")
    browser.wait("window.ferUploadState.faces >= 1 && window.ferUploadState.selected === 0", 60)
    assert browser.run("return document.getElementById('submit').disabled;") is True
    browser.run("""document.querySelector('input[name=label][value=happy]').click();
                   document.getElementById('consent').click();""")
    assert browser.run("return document.getElementById('submit').disabled;") is False
    browser.run("document.getElementById('submit').click();")
    browser.wait("document.getElementById('result').dataset.status === 'ok'", 30)
    stored = sorted((custom / "happy").glob("*.png")) if (custom / "happy").is_dir() else []
    assert len(stored) == 1, f"{browser.name}: stored {stored}"
    uploads = json.loads(browser.run("return localStorage.getItem('fer-hybrid.uploads');"))
    assert len(uploads) == 1 and uploads[0]["token"] and uploads[0]["label"] == "happy", uploads
    assert_no_errors(browser)
