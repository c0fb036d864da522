"""End-to-end: the live loop's detector in a worker (web/js/modelworker.js, workermodels.js)
and what live.js does with its late answers, in headless Chromium.

* the worker's detections of a face become a track in the right place;
* a detector slowed down in the worker does not slow the frames down (they keep coming, each
  without the delay), while the same delay on the main thread is in every detector frame;
* the live page detects and classifies in workers, and without `Worker` on its main thread;
* the thorough tiles are spread over successive requests, a face a tile found survives the
  letterboxed passes (which cannot see it) and goes when its own tile misses it twice;
* a worker that dies hands over to the main thread's detector;
* the keypoint geometry check on unit cases, and the worker's conversion of a camera frame's
  planes to RGB (yuv.js).
No timing threshold: the slow-detector case compares frame times with the injected delay.
"""

from __future__ import annotations

from pathlib import Path

import e2e_support
import pytest
import scenes as S
from detector_support import detect, open_detector_page, put_image
from e2e_support import (
    browser,
    evaluate_in_page,
    live_server,
    require_browser,
    single_face_frame,
    wait_state,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture
e2e_videos = e2e_support.e2e_videos
MODELS = Path(__file__).resolve().parents[1] / "models"

START_WORKER = """async () => {
  const env = await import('/static/js/env.js');
  const { FaceDetector } = await import('/static/js/detector.js');
  const { WorkerDetector } = await import('/static/js/workermodels.js');
  window.__wdet = await WorkerDetector.start({ files: await FaceDetector.download(), tfjs: env.tfjsFolder() });
  window.__live = await import('/static/js/live.js');
  return window.__wdet.size;
}"""

# Frames of the image last put, `frames` of them 33 ms apart in page time (real time passes too:
# the worker answers meanwhile); `detector`: 'worker', 'slow-worker' or 'slow-main' (each
# detector call waits `delay` ms first). Returns each frame's time, the tracks at the end, and
# how many frames went by while the first detection was out.
RUN = """async ([detector, delay, frames]) => {
  const c = window.__img, w = window.__wdet;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const slow = { async: true, size: w.size, get failed() { return null; }, get lastMs() { return w.lastMs; },
    detectViews: async (...a) => { await sleep(delay); return w.detectViews(...a); } };
  const main = { detect: async (...a) => { await sleep(delay); return window.__det.detect(...a); } };
  const d = { worker: w, 'slow-worker': slow, 'slow-main': main }[detector];
  const live = new window.__live.LivePipeline(d, null);
  const times = [];
  let r, firstAnswer = null;
  for (let i = 0; i < frames; i++) {
    const t0 = performance.now();
    r = await live.process(c, c.width, c.height, i * 33);
    times.push(performance.now() - t0);
    if (r.full && firstAnswer === null) firstAnswer = i;
    await sleep(20);
  }
  return { times, firstAnswer, requests: live.requests,
           tracks: r.tracks.map((t) => ({ box: t.box, score: t.det.score })) };
}"""


@pytest.fixture()
def face_page(astronaut_rgb, tmp_path):
    require_browser()
    with live_server(MODELS, tmp_path / "custom") as base, browser() as b:
        page = open_detector_page(b, base)
        put_image(page, single_face_frame(astronaut_rgb))
        page.evaluate(START_WORKER)
        yield page


def test_worker_detections_become_tracks_in_place(face_page):
    truth = detect(face_page)["faces"]  # the main thread's detector on the same image
    assert len(truth) == 1
    r = face_page.evaluate(RUN, ["worker", 0, 40])
    assert r["firstAnswer"] is not None and r["firstAnswer"] >= 1  # taken on a later frame
    assert len(r["tracks"]) == 1
    assert S.iou(S.box_tuple(r["tracks"][0]["box"]), S.box_tuple(truth[0]["box"])) >= 0.8


def test_a_slow_worker_detector_does_not_hold_the_frames(face_page):
    delay = 1500
    worker = face_page.evaluate(RUN, ["slow-worker", delay, 120])
    # Frames kept coming while the first detection was out, none of them waiting for it ...
    assert worker["firstAnswer"] is not None and worker["firstAnswer"] >= 10
    assert max(worker["times"]) < delay, worker["times"]
    assert len(worker["tracks"]) == 1
    # ... whereas on the main thread the detector's delay is inside the frame that runs it.
    main = face_page.evaluate(RUN, ["slow-main", delay, 3])
    assert main["times"][0] >= delay


@pytest.mark.parametrize("worker", [True, False], ids=["worker", "no-worker"])
def test_live_page_detects_in_a_worker_or_on_its_main_thread(e2e_models, e2e_videos, tmp_path, worker):
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        page = b.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        if not worker:
            page.add_init_script("delete window.Worker;")
        page.goto(f"{base}/?backend=wasm")
        wait_state(page, "window.ferState && window.ferState.ready", 90)
        thread = "worker" if worker else "main"
        assert page.evaluate("[window.ferState.detectorThread, window.ferState.classifierThread]") == [thread, thread]
        page.click("#toggle")
        # Boxed and labelled: the detector's and the classifier's answers both reach the faces.
        wait_state(page, "window.ferState.faces.length >= 1 && window.ferState.fullDetections >= 2"
                   " && window.ferState.classifiedFaces >= 2 && window.ferState.faces.every((f) => f.label)", 60)
    assert errors == []


SCHEDULE = """async () => {
  const { LivePipeline } = await import('/static/js/live.js');
  const { thoroughViews } = await import('/static/js/detector.js');
  const c = document.createElement('canvas'); c.width = 640; c.height = 480;
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#556'; ctx.fillRect(0, 0, 640, 480);
  for (let i = 0; i < 200; i++) {  // texture everywhere, so patch matching holds
    ctx.fillStyle = `hsl(${(i * 47) % 360}, 70%, ${30 + (i * 13) % 50}%)`;
    ctx.fillRect((i * 97) % 620, (i * 61) % 460, 10 + i % 9, 10 + i % 7);
  }
  // A 48 px face in the first tile only (too small for the letterboxed pass to count as looking).
  const small = { box: { x: 40, y: 40, w: 48, h: 48 }, score: 0.9,
    keypoints: [[55, 55], [73, 55], [64, 66], [64, 76], [42, 57], [86, 57]] };
  const tiles = thoroughViews(640, 480, 256).filter((v) => v.tile);
  const inFirst = (v) => v.tile && v.x0 === tiles[0].x0 && v.y0 === tiles[0].y0;
  const requests = [];
  let findSmall = true;
  const fake = { async: true, size: 256, failed: null, lastMs: 1,
    detectViews: async (src, w, h, views) => {
      requests.push(views.map((v) => (v.tile ? `${v.x0},${v.y0}` : 'letterbox')));
      return views.some(inFirst) && findSmall ? [small] : [];
    } };
  const live = new LivePipeline(fake, null);
  const seen = [];
  let now = 0;
  const frame = async () => { const r = await live.process(c, 640, 480, now); now += 100; await new Promise((res) => setTimeout(res, 0)); return r; };
  // Two whole cycles of tiles, one request per frame (100 ms apart: a request every 4th frame is due).
  for (let i = 0; i < 4 * 2 * tiles.length + 2; i++) seen.push((await frame()).tracks.length);
  const kept = seen[seen.length - 1];
  // Now the first tile misses it: it stays once (rescueMisses), then goes.
  findSmall = false;
  const after = [];
  for (let i = 0; i < 4 * 2 * tiles.length + 2; i++) after.push((await frame()).tracks.length);
  // A worker that dies: the fallback (main-thread) detector takes over.
  let fallbackCalls = 0;
  const dying = { async: true, size: 256, failed: null, lastMs: 1,
    detectViews: async () => { dying.failed = new Error('worker died'); throw dying.failed; } };
  const live2 = new LivePipeline(dying, null, { fallback: { detect: async () => { fallbackCalls++; return []; } } });
  for (let i = 0; i < 4; i++) { await live2.process(c, 640, 480, i * 500); await new Promise((res) => setTimeout(res, 0)); }
  return { requests, nTiles: tiles.length, kept, after, fallbackCalls, switched: live2.detector !== dying };
}"""


def test_tiles_spread_over_requests_and_a_tile_face_lives_until_its_tile_misses_it(e2e_models, tmp_path):
    r = evaluate_in_page(e2e_models, tmp_path, SCHEDULE)
    n = r["nTiles"]
    assert n == 6
    first = r["requests"][:n]
    # Every request: the letterboxed pass plus one tile, each tile once per cycle.
    assert all(req[0] == "letterbox" and len(req) == 2 for req in first), first
    assert len({req[1] for req in first}) == n
    assert r["kept"] == 1  # found once per cycle by its tile, never looked for by the letterboxed pass
    # After its tile stopped finding it: gone, but not before that tile looked twice.
    assert r["after"][-1] == 0
    assert r["after"].index(0) > 3 * n  # survived the first miss: gone only a cycle of requests later
    assert r["switched"] and r["fallbackCalls"] >= 1


GEOMETRY = """async () => {
  const { plausibleFace, verifyView } = await import('/static/js/detector.js');
  const box = { x: 200, y: 150, w: 130, h: 130 };
  const face = { box, keypoints: [[240, 200], [290, 200], [265, 230], [265, 255], [205, 205], [325, 205]] };
  const rolled = { box, keypoints: face.keypoints.map(([x, y]) => [265 + (y - 200), 200 - (x - 265)]) };
  const mouthUp = { box, keypoints: [[240, 200], [290, 200], [265, 230], [265, 160], [205, 205], [325, 205]] };
  const eyesClose = { box, keypoints: [[260, 200], [270, 200], [265, 210], [265, 215], [250, 205], [280, 205]] };
  const earsIn = { box, keypoints: [[240, 200], [290, 200], [265, 230], [265, 255], [260, 205], [270, 205]] };
  const noseAside = { box, keypoints: [[240, 200], [290, 200], [330, 230], [265, 255], [205, 205], [325, 205]] };
  const v = verifyView({ x: 100, y: 100, w: 40, h: 40 }, 256);
  return { face: plausibleFace(face), rolled: plausibleFace(rolled), mouthUp: plausibleFace(mouthUp),
    eyesClose: plausibleFace(eyesClose), earsIn: plausibleFace(earsIn), noseAside: plausibleFace(noseAside), v };
}"""


def test_keypoint_geometry_rejects_non_faces(e2e_models, tmp_path):
    r = evaluate_in_page(e2e_models, tmp_path, GEOMETRY)
    assert r["face"] and r["rolled"]  # a face, upright or rolled 90 degrees
    assert not r["mouthUp"] and not r["eyesClose"] and not r["earsIn"] and not r["noseAside"]
    # The second look: centred on the box, 40 px shown 80 px wide (2x).
    v = r["v"]
    assert v["scale"] == 2 and v["x0"] + 64 == 120 and v["y0"] + 64 == 120


YUV = """async () => {
  const { yuvToRgba } = await import('/static/js/yuv.js');
  // 4x2 frames: luma 16 (black) on the left half, 235 (white) on the right; chroma neutral,
  // except a red-ish chroma (V high) under the right half.
  const y = [16, 16, 235, 235, 16, 16, 235, 235];
  const i420 = new Uint8Array([...y, 128, 128, 128, 240]);  // Y 4x2, U 2x1, V 2x1
  const nv12 = new Uint8Array([...y, 128, 128, 128, 240]);  // Y 4x2, UV interleaved 2x1
  const a = yuvToRgba({ data: i420.buffer, format: 'I420', width: 4, height: 2,
    layout: [{ offset: 0, stride: 4 }, { offset: 8, stride: 2 }, { offset: 10, stride: 2 }] });
  const b = yuvToRgba({ data: nv12.buffer, format: 'NV12', width: 4, height: 2,
    layout: [{ offset: 0, stride: 4 }, { offset: 8, stride: 4 }] });
  // The same bytes from a full-range camera (luma 0-255): 16 is a dark grey, not black.
  const f = yuvToRgba({ data: i420.buffer, format: 'I420', width: 4, height: 2, fullRange: true,
    layout: [{ offset: 0, stride: 4 }, { offset: 8, stride: 2 }, { offset: 10, stride: 2 }] });
  return { a: Array.from(a), b: Array.from(b), f: Array.from(f) };
}"""


def test_camera_planes_convert_to_rgb(e2e_models, tmp_path):
    """yuv.js: what the detector's worker makes of a camera frame's planes (BT.601, video and full range)."""
    r = evaluate_in_page(e2e_models, tmp_path, YUV)
    for px in (r["a"], r["b"]):
        rgba = [px[i:i + 4] for i in range(0, len(px), 4)]
        # Video-range black (16) is black; white (235) with V = 240 loses green (the chroma pair
        # under the right half, on both rows): R, B clipped at 255, G = (298*219 - 208*112)/256.
        assert rgba[0] == rgba[1] == rgba[4] == rgba[5] == [0, 0, 0, 255]
        assert rgba[2] == rgba[3] == rgba[6] == rgba[7] == [255, 164, 255, 255]
    full = [r["f"][i:i + 4] for i in range(0, len(r["f"]), 4)]
    # Full range: luma as is; V = 240 under the right half: G = (256*235 - 183*112 + 128)/256.
    assert full[0] == full[4] == [16, 16, 16, 255]
    assert full[2] == full[6] == [255, 155, 235, 255]
