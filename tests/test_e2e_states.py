"""End-to-end: the live page's states (web/js/pagestate.js) at a phone's size, 390x844.

A control that cannot work in the page's state is off, with the reason shown, and no sequence
of taps leaves the page stuck: Flip or Photo while the models load, "Back to camera" after a
Photo taken while the camera ran, a start that failed (a missing backend). Headless Chromium,
fake camera, real backend, the tiny fixture ensemble.
"""

from __future__ import annotations

import e2e_support
import pytest
from e2e_support import browser, evaluate_in_page, js_state, live_server, require_browser, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixtures
e2e_videos = e2e_support.e2e_videos

PHONE = {"width": 390, "height": 844}
READY = "window.ferState && window.ferState.ready"
RUNNING = "window.ferState.status === 'running' && window.ferState.frames >= {0} && window.ferState.faces.length >= 1"
CAMERA_ON = "!!document.getElementById('video').srcObject"


def open_phone(b, base, query="backend=wasm", hold: str | None = None):
    """A 390x844 page; `hold`: a URL pattern whose requests wait until `release()` is called
    (the page stays in that part of its loading). No service worker: its fetches would not
    be held."""
    ctx = b.new_context(viewport=PHONE, service_workers="block")
    held: list = []
    released = []

    def keep(route):
        if released:
            route.continue_()
        else:
            held.append(route)

    if hold:
        ctx.route(hold, keep)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/?{query}")

    def release():
        released.append(True)
        for route in held:
            route.continue_()

    return ctx, page, errors, held, release


def png(rgb) -> dict:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return {"name": "photo.png", "mimeType": "image/png", "buffer": buf.getvalue()}


def control_note(page) -> str:
    return page.evaluate("(() => { const n = document.getElementById('control-note');"
                         " return n && !n.hidden && n.offsetHeight > 0 ? n.textContent : ''; })()")


def test_flip_and_photo_are_off_while_the_models_load(e2e_models, e2e_videos, astronaut_rgb, tmp_path):
    """Flip used to start the camera behind the loading page (TypeError on `live.reset`, then
    "press Start" over a running camera, whose first Start stopped it); Photo used to run on a
    cold detector and leave "Ready — press Start" and its detector time over the photo."""
    with live_server(e2e_models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        ctx, page, errors, held, release = open_phone(b, base, hold="**/models/manifest.json")
        # The models' manifest is held: the page is still loading.
        wait_state(page, "window.ferState && window.ferState.status === 'loading'"
                         " && document.getElementById('status').textContent.includes('expression models')", 60)
        for _ in range(100):  # the route's handler runs when Playwright next hears from the page
            if held:
                break
            page.wait_for_timeout(100)
        assert held and page.evaluate("window.ferState.status") == "loading", "the manifest request is held"
        for control in ("#toggle", "#switch", "#photo"):
            assert page.is_disabled(control), control
        assert "load" in control_note(page)
        # A tap that gets through anyway (a stale event, a script): the page ignores it.
        page.evaluate("document.getElementById('switch').click()")
        page.set_input_files("#photo", files=[png(astronaut_rgb)])
        release()
        wait_state(page, READY, 60)
        s = js_state(page)
        assert (s["status"], s["mode"], page.inner_text("#status")) == ("ready", "live", "Ready — press Start")
        assert not page.evaluate(CAMERA_ON) and page.is_hidden("#still")
        assert "detect" not in page.inner_text("#stats")
        assert all(page.is_enabled(c) for c in ("#toggle", "#switch", "#photo")) and control_note(page) == ""
        # The first Start starts the camera (it used to stop the one Flip had started).
        page.click("#toggle")
        wait_state(page, RUNNING.format(3), 60)
        assert page.evaluate(CAMERA_ON) and page.inner_text("#toggle") == "Stop"
        assert errors == []
        ctx.close()


def test_back_to_camera_restarts_the_camera_that_ran_before_the_photo(e2e_models, e2e_videos, astronaut_rgb, tmp_path):
    from e2e_support import multi_face_frame

    photo = png(multi_face_frame(astronaut_rgb))
    shown = ("!document.getElementById('still').hidden && window.ferState.mode === 'still'"
             " && window.ferState.faces.length >= 2 && window.ferState.status !== 'analysing'")
    with live_server(e2e_models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        ctx, page, errors, _, _ = open_phone(b, base)
        wait_state(page, READY, 60)
        page.click("#toggle")
        wait_state(page, RUNNING.format(3), 60)
        page.set_input_files("#photo", files=[photo])
        wait_state(page, shown, 60)
        assert not page.evaluate(CAMERA_ON), "the camera rests while a photo is shown"
        assert page.is_visible("#still-close") and page.is_enabled("#still-close")
        frames = page.evaluate("window.ferState.frames")
        page.click("#still-close")
        wait_state(page, RUNNING.format(frames + 3), 60)
        assert page.is_hidden("#still") and page.evaluate(CAMERA_ON)
        # A photo taken with the camera off: back to the idle page, the camera stays off.
        page.click("#toggle")
        wait_state(page, "window.ferState.status === 'ready'", 20)
        page.set_input_files("#photo", files=[photo])
        wait_state(page, shown, 60)
        page.click("#still-close")
        wait_state(page, "window.ferState.status === 'ready' && window.ferState.mode === 'live'", 20)
        assert not page.evaluate(CAMERA_ON) and page.inner_text("#toggle") == "Start"
        assert errors == []
        ctx.close()


def test_a_failed_start_turns_off_what_cannot_work(e2e_models, astronaut_rgb, tmp_path):
    """?backend=wasm without its binary (a forced backend this browser cannot run): Start, Flip
    and Photo are off and say why (Photo used to hang on "Analysing photo…": no detector), and
    the error reads as sentences (it used to end "browser.. Reload")."""
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        ctx = b.new_context(viewport=PHONE, service_workers="block")
        ctx.route("**/*.wasm", lambda route: route.fulfill(status=404, body="missing"))
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/?backend=wasm")
        wait_state(page, "window.ferState && window.ferState.error", 60)
        for control in ("#toggle", "#switch", "#photo", "#model-select"):
            assert page.is_disabled(control), control
        note = control_note(page)
        assert "reload" in note.lower(), note
        message = page.inner_text("#message")
        assert 'backend "wasm"' in message and ".." not in message.replace("…", ""), message
        s = js_state(page)
        assert (s["error"], s["status"], s["ready"]) == ("detector", "failed", False)
        # A photo that gets through anyway is ignored rather than left "Analysing photo…".
        page.set_input_files("#photo", files=[png(astronaut_rgb)])
        page.wait_for_timeout(500)
        assert page.evaluate("window.ferState.status") == "failed" and page.is_hidden("#still")
        assert errors == []
        ctx.close()


def test_control_table(tmp_path, e2e_models):
    """pagestate.controlsFor on its own: what each control can do in each state."""
    r = evaluate_in_page(e2e_models, tmp_path, """async () => {
      const P = await import('/static/js/pagestate.js');
      const out = {};
      for (const phase of P.PHASES) for (const problem of [false, true]) for (const busy of [false, true]) {
        out[`${phase}|${problem}|${busy}`] = P.controlsFor(phase, { cameraProblem: problem, modelBusy: busy });
      }
      return { phases: P.PHASES, out };
    }""")
    out = r["out"]
    assert r["phases"] == ["loading", "ready", "starting", "running", "analysing", "photo", "failed"]
    on = lambda key, control: out[key][control]  # noqa: E731
    for key, c in out.items():
        phase, problem, busy = key.split("|")
        # Nothing works before the page is ready or after it failed; a reason is given.
        if phase in ("loading", "failed"):
            assert not any(c[k] for k in ("toggle", "flip", "photo", "close", "model")), key
            assert c["reason"], key
        # The camera controls need a camera; Photo and the model menu wait for a model switch.
        if problem == "true":
            assert not c["flip"] and not (c["toggle"] and c["toggleLabel"] == "Start"), key
        if busy == "true":
            assert not c["photo"] and not c["model"], key
        assert c["toggleLabel"] == ("Stop" if phase == "running" else "Start"), key
        assert c["closeShown"] == (phase in ("analysing", "photo")), key
    assert all(on(f"{p}|false|false", "photo") for p in ("ready", "running", "photo"))
    assert not any(on(f"{p}|false|false", "photo") for p in ("starting", "analysing"))
    assert on("running|false|false", "flip") and on("photo|false|false", "close")
    assert not on("analysing|false|false", "close") and not on("starting|false|false", "toggle")
    assert on("running|true|false", "toggle"), "a running camera can always be stopped"
