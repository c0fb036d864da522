"""What tests/test_e2e_engines.py does in a page, the same in every engine (tests/engines.py):
serve the app with the harness, open the live page and wait for Ready, pick the photo, read the
faces and the errors the harness collected."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from e2e_support import live_server
from engine_pages import HarnessPages

LIVE_PAGE = "/?backend=wasm"
UPLOAD_PAGE = "/upload?backend=wasm"

# The photo (/__e2e__/photo.png) into a file input, as a picked file arrives: one way for every
# engine (each driver sets a file input's files with a command of its own).
PICK_PHOTO = """
const res = await fetch('/__e2e__/photo.png');
const file = new File([await res.blob()], 'astronaut.png', { type: 'image/png' });
const picked = new DataTransfer();
picked.items.add(file);
const input = document.querySelector(%s);
input.files = picked.files;
input.dispatchEvent(new Event('change', { bubbles: true }));
"""
FACES = """return window.ferState.faces.map((f) => ({ box: f.box, label: f.label,
  probs: Array.from(f.probs) }));"""


def png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")  # lossless: the same pixels in every engine
    return buf.getvalue()


@contextmanager
def site(models: Path, custom: Path, files: dict[str, tuple[bytes, str]]):
    """The real backend with the harness in its pages and `files` under /__e2e__/; the base URL."""
    with live_server(models, custom, wrap=lambda app: HarnessPages(app, files)) as base:
        yield base


def open_ready(browser, base: str) -> None:
    """Load the live page and wait for Ready (models loaded, wasm backend)."""
    browser.goto(base + LIVE_PAGE)
    assert browser.run("return window.__e2e && window.__e2e.beforePageScripts;"), \
        f"{browser.name}: the test harness did not run before the page's scripts"
    browser.wait("window.ferState && (window.ferState.ready || window.ferState.error)", 120)
    state = browser.run("""return { error: window.ferState.error, backend: window.ferState.backend,
        status: document.getElementById('status').textContent };""")
    assert state["error"] is None and state["backend"] == "wasm", f"{browser.name}: {state}"
    assert state["status"].startswith("Ready"), f"{browser.name}: {state}"


def pick_photo(browser, selector: str) -> None:
    browser.run(PICK_PHOTO % json.dumps(selector))


def analyse_photo(browser) -> list[dict]:
    """The photo through the live page's Photo button: ferState.faces (box, label, probs), left
    to right. The page must be ready."""
    # A status the page never sets, so the wait cannot see an earlier result.
    browser.run("window.ferState.status = 'test-pending';")
    pick_photo(browser, "#photo")
    browser.wait("window.ferState.status === 'photo' && window.ferState.mode === 'still'", 60)
    return sorted(browser.run(FACES), key=lambda f: f["box"]["x"])


def live_faces(browser) -> list[dict]:
    return browser.run(FACES)


def assert_no_errors(browser) -> None:
    errors = browser.run("return window.__e2e.errors;")
    assert errors == [], f"{browser.name}: uncaught errors: {errors}"
