"""End-to-end: the live page measures its TF.js backend once per browser (web/js/backendchoice.js).

A first visit probes (a WebGL context is opened to read its renderer, and on a GPU WebGL and
wasm are timed) and remembers the outcome in localStorage; a second visit starts straight on it
(no WebGL context at all); a new TF.js version or probe rule measures again; a remembered
backend that no longer starts is forgotten and wasm runs instead. While it loads, the status
line says what is happening, and the expression models download while the probe runs.
Headless Chromium, real backend, the tiny fixture ensemble.
"""

from __future__ import annotations

import json

import e2e_support
import pytest
from e2e_support import browser, evaluate_in_page, live_server, require_browser, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture

KEY = "fer-hybrid.backend"
READY = "window.ferState && (window.ferState.ready || window.ferState.error)"

# Before the page's scripts: count the WebGL contexts the page asks for (the probe's only trace
# on a machine whose WebGL renders in software), and record every text of the status line.
WATCH = """(() => {
window.__webglContexts = 0;
const getContext = HTMLCanvasElement.prototype.getContext;
HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
  if (String(type).startsWith('webgl')) window.__webglContexts++;
  return getContext.call(this, type, ...rest);
};
// The whole document is watched (the page's module sets the first texts before DOMContentLoaded).
const texts = window.__statusTexts = [];
new MutationObserver(() => {
  const el = document.getElementById('status');
  if (el && el.textContent !== texts[texts.length - 1]) texts.push(el.textContent);
}).observe(document, { childList: true, characterData: true, subtree: true });
})();
"""

# This machine's WebGL is Chromium's SwiftShader, which the probe rules out by its name. Named
# as a GPU, it makes the page time the detector on wasm and on WebGL, as it does on a phone.
HARDWARE_GPU = """
for (const C of [window.WebGLRenderingContext, window.WebGL2RenderingContext]) {
  const get = C.prototype.getParameter;
  C.prototype.getParameter = function (p) {
    return p === 0x1F01 || p === 0x9246 ? 'Test GPU' : get.call(this, p);  // RENDERER, UNMASKED_RENDERER_WEBGL
  };
}
"""


def visit(ctx, base: str, query: str = "") -> dict:
    """Open the live page in `ctx` (its localStorage kept between visits) until Ready; returns
    what the page chose, how, and what it did on the way."""
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/?{query}")
    wait_state(page, READY, 120)
    out = page.evaluate(f"""({{
        backend: window.ferState.backend, error: window.ferState.error, ready: window.ferState.ready,
        choice: window.ferState.backendChoice, timings: window.ferState.backendTimings,
        active: tf.getBackend(), tfjs: tf.version_core, webglContexts: window.__webglContexts,
        statusTexts: window.__statusTexts, stored: localStorage.getItem('{KEY}') }})""")
    out["stored"] = json.loads(out["stored"]) if out["stored"] else None
    out["errors"] = errors
    page.close()
    return out


def store(ctx, base: str, entry: dict | None) -> None:
    """Write (None: remove) the remembered choice, from a page of the same origin."""
    page = ctx.new_page()
    page.goto(f"{base}/static/css/app.css")
    if entry is None:
        page.evaluate(f"localStorage.removeItem('{KEY}')")
    else:
        page.evaluate(f"(v) => localStorage.setItem('{KEY}', v)", json.dumps(entry))
    page.close()


def context(b):
    ctx = b.new_context(service_workers="block")
    ctx.add_init_script(WATCH)
    return ctx


def test_a_second_visit_uses_the_remembered_backend(e2e_models, tmp_path):
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx = context(b)
        first = visit(ctx, base)
        assert (first["ready"], first["error"], first["errors"]) == (True, None, [])
        assert first["choice"]["source"] == "probe" and first["webglContexts"] >= 1
        stored = first["stored"]
        assert stored, "the first visit remembers what it chose"
        assert stored["backend"] == first["backend"] == first["active"] == "wasm"
        assert stored["tfjs"] == first["tfjs"] and isinstance(stored["rule"], int)

        second = visit(ctx, base)
        assert (second["ready"], second["error"], second["errors"]) == (True, None, [])
        assert second["choice"]["source"] == "remembered"
        assert second["webglContexts"] == 0, "the second visit must not probe WebGL again"
        assert second["active"] == stored["backend"]
        assert not any("Choosing" in t for t in second["statusTexts"]), second["statusTexts"]

        # Another TF.js version (an upgraded vendor folder) or another probe rule: measured again.
        for change in ({"tfjs": "0.0.1"}, {"rule": stored["rule"] - 1}):
            store(ctx, base, {**stored, **change})
            again = visit(ctx, base)
            assert again["choice"]["source"] == "probe" and again["webglContexts"] >= 1, change
            assert again["stored"]["tfjs"] == first["tfjs"] and again["stored"]["rule"] == stored["rule"]

        # ?backend= wins over the remembered choice and leaves it alone; ?backend=auto measures again.
        store(ctx, base, {**stored, "why": "marker"})
        forced = visit(ctx, base, "backend=cpu")
        assert (forced["active"], forced["choice"]["source"], forced["webglContexts"]) == ("cpu", "url", 0)
        assert forced["stored"]["why"] == "marker"
        auto = visit(ctx, base, "backend=auto")
        assert auto["choice"]["source"] == "probe" and auto["stored"]["why"] != "marker"
        ctx.close()


def test_a_remembered_backend_that_fails_to_start_is_forgotten(e2e_models, tmp_path):
    """WebGL remembered, but its script no longer loads (say, a browser that lost its GPU
    would fail the same way one step later): the page runs on wasm and forgets the choice,
    so the next visit measures again."""
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx = context(b)
        stored = visit(ctx, base)["stored"]
        assert stored, "the first visit remembers what it chose"
        store(ctx, base, {**stored, "backend": "webgl"})
        ctx.route("**/tf-backend-webgl*", lambda route: route.fulfill(status=404, body="missing"))
        after = visit(ctx, base)
        assert (after["ready"], after["error"], after["errors"]) == (True, None, [])
        assert (after["active"], after["choice"]["source"]) == ("wasm", "fallback")
        assert after["stored"] is None, "the backend that failed must be forgotten"
        nxt = visit(ctx, base)
        assert nxt["choice"]["source"] == "probe" and nxt["stored"]["backend"] == "wasm"
        ctx.close()


def test_the_models_download_while_the_probe_runs_and_the_status_says_so(e2e_models, tmp_path):
    """A GPU-like WebGL: the probe times the detector on wasm and on WebGL (seconds in software)
    while the models' manifest is held; the probe finishes all the same, and the status line
    names each step."""
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx = context(b)
        ctx.add_init_script(HARDWARE_GPU)
        held, released = [], []
        ctx.route("**/models/manifest.json",
                  lambda route: route.continue_() if released else held.append(route))
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/")
        wait_state(page, "window.ferState && window.ferState.backendChoice"
                         " && window.ferState.backendChoice.source === 'probe'", 180)
        for _ in range(100):  # the route's handler runs when Playwright next hears from the page
            if held:
                break
            page.wait_for_timeout(100)
        s = page.evaluate("({status: window.ferState.status, text: document.getElementById('status').textContent,"
                          " timings: window.ferState.backendTimings, loaded: window.ferState.modelsLoaded})")
        assert held and (s["status"], s["loaded"]) == ("loading", False), s
        assert s["timings"]["wasm"] > 0 and s["timings"]["webgl"] > 0, s
        assert s["text"] == "Loading the expression models…", s
        assert page.is_disabled("#toggle") and page.is_disabled("#photo")
        released.append(True)
        for route in held:
            route.continue_()
        wait_state(page, "window.ferState.ready", 120)
        texts = page.evaluate("window.__statusTexts")
        for expected in ("Starting the engine; loading the face detector and the expression models…",
                         "Choosing the fastest engine; loading the expression models…",
                         "Warming up…"):
            assert expected in texts, texts
        assert texts[-1] == "Ready — press Start", texts
        assert page.evaluate("window.ferState.modelsLoaded") and errors == []
        ctx.close()


def test_loading_text(tmp_path, e2e_models):
    """loadstatus.loadingText on its own: one line naming whatever is going on."""
    cases = [
        {},
        {"engine": "starting", "models": {"index": 0, "total": None}},
        {"engine": "choosing", "models": {"index": 0, "total": 1}},
        {"detector": True, "models": {"index": 1, "total": 3}},
        {"detector": True},
        {"engine": "choosing", "detector": True, "warmup": True},
    ]
    got = evaluate_in_page(e2e_models, tmp_path, """async (cases) => {
      const m = await import('/static/js/loadstatus.js');
      return cases.map((c) => m.loadingText(c));
    }""", cases)
    assert got == [
        "Loading…",
        "Starting the engine; loading the expression models…",
        "Choosing the fastest engine; loading the expression model…",
        "Loading the face detector and the expression models (2 of 3)…",
        "Loading the face detector…",
        "Warming up…",
    ]
