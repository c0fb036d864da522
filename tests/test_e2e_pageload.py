"""End-to-end: what the live page downloads. The WebGL backend's script (370 KB) is loaded only
when the page tries WebGL (?backend=webgl, or the probe on a GPU), never on the wasm path."""

from __future__ import annotations

import e2e_support
import pytest
from e2e_support import browser, live_server, require_browser, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture

READY = "window.ferState && (window.ferState.ready || window.ferState.error)"


def test_webgl_script_loaded_only_when_webgl_is_tried(e2e_models, tmp_path):
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        seen = {}
        for query in ("backend=wasm", "backend=webgl"):
            page = b.new_page()
            urls: list[str] = []
            page.on("request", lambda r, urls=urls: urls.append(r.url))
            page.goto(f"{base}/?{query}")
            wait_state(page, READY, 120)
            seen[query] = (page.evaluate("[tf.getBackend(), window.ferState.error]"),
                           any("tf-backend-webgl" in u for u in urls))
            page.close()
    assert seen["backend=wasm"] == (["wasm", None], False)
    # Headless Chromium has a (software) WebGL: the lazily loaded backend must start.
    assert seen["backend=webgl"] == (["webgl", None], True)
