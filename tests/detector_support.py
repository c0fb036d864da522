"""The page's face detector (web/js/detector.js) called directly in headless Chromium.

For the detector's own tests and benchmark: no Photo button, alignment or classifier, so a call
costs one detection and options (`{thorough: true}`, overrides) can be compared on the same image.
The page is the live page on the wasm backend (its tfjs and CSP); the detector is a fresh
FaceDetector imported from /static/js/detector.js. Options with a `live` key run the live loop
instead (web/js/live.js with the worker detector of workermodels.js) on the image as a still
camera: frame after frame until its detections have swept every thorough tile once; the faces
are its visible tracks then.
"""

from __future__ import annotations

import base64

import numpy as np
from e2e_support import wait_state

SETUP = """async () => {
  const m = await import('/static/js/detector.js');
  window.__det = await new m.FaceDetector().load();
  await window.__det.warmup();
  window.__detMod = m;
  return window.__det.size;
}"""

PUT = """([b64, w, h]) => {
  const bin = atob(b64);
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let i = 0, j = 0; i < w * h; i++) {
    rgba[4 * i] = bin.charCodeAt(j++); rgba[4 * i + 1] = bin.charCodeAt(j++);
    rgba[4 * i + 2] = bin.charCodeAt(j++); rgba[4 * i + 3] = 255;
  }
  const c = window.__img || (window.__img = document.createElement('canvas'));
  c.width = w; c.height = h;
  c.getContext('2d').putImageData(new ImageData(rgba, w, h), 0, 0);
  return true;
}"""

DETECT = """async ([opts, repeats]) => {
  const c = window.__img, times = [];
  let faces = null;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    faces = await window.__det.detect(c, c.width, c.height, opts);
    times.push(performance.now() - t0);
  }
  return { faces: faces.map((f) => ({ box: f.box, score: f.score, keypoints: f.keypoints })),
           ms: times, views: window.__det.lastViews };
}"""


LIVE = """async ([opts]) => {
  if (!window.__wdet) {
    const env = await import('/static/js/env.js');
    const { FaceDetector } = await import('/static/js/detector.js');
    const { WorkerDetector } = await import('/static/js/workermodels.js');
    window.__wdet = await WorkerDetector.start({ files: await FaceDetector.download(), tfjs: env.tfjsFolder() });
    window.__live = await import('/static/js/live.js');
  }
  const c = window.__img;
  const live = new window.__live.LivePipeline(window.__wdet, null, opts);
  // One request per tile of the cycle (each with the letterboxed pass), then the last answer applied.
  const tiles = window.__detMod.thoroughViews(c.width, c.height, window.__wdet.size).length - 1;
  const want = Math.max(1, Math.ceil(tiles / Math.max(1, live.tilesEach)));
  const t0 = performance.now();
  let r, now = 0, frames = 0;
  while (live.requests < want || live.inFlight || live.ready) {
    r = await live.process(c, c.width, c.height, now);
    now += 33; frames++;
    await new Promise((resolve) => setTimeout(resolve, 2)); // the worker's answer is a task
  }
  r = await live.process(c, c.width, c.height, now);
  return { faces: r.tracks.map((t) => ({ box: t.box, score: t.det.score, keypoints: t.det.keypoints })),
           ms: [performance.now() - t0], views: live.requests, frames };
}"""


def open_detector_page(b, base: str):
    """The live page on wasm with a warmed-up FaceDetector in window.__det."""
    page = b.new_page()
    page.goto(f"{base}/?backend=wasm")
    wait_state(page, "window.ferState && window.ferState.ready", 180)
    assert page.evaluate("window.ferState.backend") == "wasm"
    page.evaluate(SETUP)
    return page


def put_image(page, rgb: np.ndarray) -> None:
    h, w, _ = rgb.shape
    page.evaluate(PUT, [base64.b64encode(np.ascontiguousarray(rgb, np.uint8).tobytes()).decode(), w, h])


def detect(page, opts: dict | None = None, repeats: int = 1) -> dict:
    """Detect on the image last put: {faces: [{box, score, keypoints}], ms: [per call], views}.
    opts {"live": {...}}: the live loop instead (LivePipeline options; see LIVE)."""
    opts = opts or {}
    if "live" in opts:
        return page.evaluate(LIVE, [opts["live"]])
    return page.evaluate(DETECT, [opts, repeats])
