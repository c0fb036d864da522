"""The page's pure JS helpers, run in headless Chromium as served by the real backend (one page load)."""

from __future__ import annotations

import math

import e2e_support
import pytest
from e2e_support import browser, evaluate_in_page, live_server, require_browser, wait_state

from backend.assets import TFJS_URL

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture

JS = """async () => {
  const det = await import('/static/js/detector.js');
  const align = await import('/static/js/align.js');
  const ll = await import('/static/js/lowlight.js');
  const { Tracker } = await import('/static/js/tracker.js');
  const { statsParts } = await import('/static/js/statsline.js');
  const { sentences } = await import('/static/js/message.js');
  const { RateMeter } = await import('/static/js/frameloop.js');
  const anchors = det.generateAnchors(256);
  const box = (x, y, w, h) => ({ x, y, w, h });
  const kept = det.nms([
    { box: box(0, 0, 100, 100), score: 0.9 }, { box: box(5, 5, 100, 100), score: 0.8 },
    { box: box(300, 0, 100, 100), score: 0.7 }], 0.3);
  const geo = align.cropGeometry({ keypoints: [[100, 100], [140, 120]], box: box(80, 70, 80, 80) });
  const level = (v, spread) => Uint8Array.from({ length: 48 * 48 }, (_, i) => v + (i % spread));
  const t = new Tracker({ alpha: 0.5 });
  const a = t.update([{ box: box(10, 10, 50, 50), probs: [1, 0, 0, 0, 0, 0, 0] }]);
  const b = t.update([{ box: box(14, 12, 50, 50), probs: [0, 0, 0, 1, 0, 0, 0] },
                      { box: box(200, 10, 50, 50), probs: [0, 0, 0, 0, 0, 0, 1] }]);
  const live = { backend: 'wasm', status: 'running', fps: 3.94, cameraFps: 28.4, frameTimes: [30, 250, 240],
    detectMs: 23.4, classifyPerFaceMs: 6.2 };
  const meter = new RateMeter(2000);
  [[0, 1], [100, 3], [200, 3]].forEach(([now, n]) => meter.tick(now, n)); // 6 frames in 200 ms
  const pooled = align.downsample(Uint8Array.from([0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12]), 4, 2);
  return {
    nAnchors: anchors.length, first: anchors[0], last: anchors[anchors.length - 1],
    kept: kept.map(k => k.score), iou: det.iou(box(0, 0, 10, 10), box(5, 0, 10, 10)),
    angle: geo.angle, side: geo.side,
    dark: ll.normalizeLowLight(level(10, 30)).applied, flat: ll.normalizeLowLight(level(120, 40)).applied,
    flatFormer: ll.normalizeLowLight(level(120, 40), { darkMean: 70, minRange: 110 }).applied,
    normal: ll.normalizeLowLight(level(0, 250)).applied,
    darkOut: (() => { const r = ll.normalizeLowLight(level(10, 30)).gray; return [Math.min(...r), Math.max(...r)]; })(),
    ids: [a[0].id, b.map(x => x.id)], smoothed: Array.from(b[0].probs), pooled: Array.from(pooled),
    stats: [statsParts(live), statsParts({ ...live, status: 'photo' }), statsParts({ ...live, status: 'ready' })],
    sentences: [sentences('browser.', 'Reload the page'), sentences('no stop', '', 'Done!')],
    rate: meter.rate,
  };
}"""


def test_js_helpers(e2e_models, tmp_path):
    r = evaluate_in_page(e2e_models, tmp_path, JS)
    assert r["nAnchors"] == 896
    assert r["first"] == [8, 8] and r["last"] == [240, 240]
    assert r["kept"] == [0.9, 0.7]
    assert r["iou"] == pytest.approx(1 / 3)
    assert r["angle"] == pytest.approx(math.atan2(20, 40))
    assert r["side"] == pytest.approx(2.6 * math.hypot(40, 20))
    # a flat crop is left alone by today's rule; the former rule (an option) stretched it
    assert (r["dark"], r["flat"], r["normal"], r["flatFormer"]) == ("equalize", "none", "none", "stretch")
    assert r["darkOut"][0] == 0 and r["darkOut"][1] == 255
    assert r["ids"][0] == r["ids"][1][0] and r["ids"][1][1] != r["ids"][0]
    assert r["smoothed"][0] == pytest.approx(0.5) and r["smoothed"][3] == pytest.approx(0.5)
    assert r["pooled"] == [2, 10, 2, 10]
    # The stats line: what each number counts, in its unit; photo and idle show no stale rate.
    assert r["stats"] == [
        ["wasm", "processed 3.9 of 28 camera fps", "240 ms/frame", "detect 23 ms", "classify 6 ms/face"],
        ["wasm", "photo", "detect 23 ms", "classify 6 ms/face"],
        ["wasm"]]
    assert r["sentences"] == ["browser. Reload the page.", "no stop. Done!"]
    assert r["rate"] == pytest.approx(6 / 0.2)


def test_photo_message_and_backend_choice_shared_by_both_pages(e2e_models, tmp_path):
    """photo.js, message.js and env.chooseBackend serve both pages; their one difference (the
    upload page falls back to cpu when the requested backend fails) is a parameter."""
    require_browser()
    junk = tmp_path / "not-a-photo.png"
    junk.write_bytes(b"this is not an image")
    shown = "document.getElementById('message').hidden === false"
    with live_server(e2e_models, tmp_path / "custom") as base, browser() as b:
        page = b.new_page()
        # The upload page loads no WebGL backend: asking for it falls back to cpu there.
        page.goto(f"{base}/upload?backend=webgl")
        wait_state(page, "window.ferUploadState && window.ferUploadState.ready", 60)
        assert page.evaluate("tf.getBackend()") == "cpu"
        # env.js finds the wasm binaries through the folder the server wrote into the page.
        folder = page.evaluate("import('/static/js/env.js').then((m) => m.tfjsFolder())")
        assert folder == TFJS_URL
        choice = page.evaluate("""import('/static/js/env.js').then(async (m) => ({
            strict: await m.chooseBackend().then(() => 'switched', (e) => e.message),
            lenient: await m.chooseBackend({ fallbackOnRequest: true }) }))""")
        assert "webgl" in choice["strict"] and choice["lenient"] == "cpu"
        page.set_input_files("#file", str(junk))
        wait_state(page, shown, 30)
        assert page.inner_text("#message").startswith("Could not read the photo")
        assert page.get_attribute("#message", "data-kind") == "error"

        page.goto(f"{base}/?backend=cpu")
        wait_state(page, "window.ferState && window.ferState.ready", 60)
        assert page.is_hidden("#message")
        page.set_input_files("#photo", str(junk))
        wait_state(page, shown, 30)
        assert page.inner_text("#message").startswith("Could not read the photo")
        assert "JPEG or PNG" in page.inner_text("#message")
        assert page.is_hidden("#still")
