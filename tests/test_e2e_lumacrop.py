"""End-to-end: the live view's face crops read from the camera frame's luma plane
(web/js/align.js alignFaceLuma) agree with the crops drawn from the picture (alignFace, what
Photo mode uses), in headless Chromium as served by the real backend.

Two checks: synthetic planes made from a canvas (the geometry: upright, rolled, partly off the
frame, both luma ranges), and a real camera frame from Chromium's fake camera (the browser's
own YUV -> RGB conversion against our range assumption).
"""

from __future__ import annotations

import e2e_support
import pytest
from e2e_support import browser, evaluate_in_page, live_server, require_browser, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models  # session fixture
e2e_videos = e2e_support.e2e_videos

COMPARE = """
  const diff = (a, b) => {
    let sum = 0, max = 0;
    for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i] - b[i]); sum += d; max = Math.max(max, d); }
    return { mean: sum / a.length, max };
  };
  // A face-sized detection at (cx, cy), eyes `eye` px apart, rolled by `deg`.
  const det = (cx, cy, eye, deg) => {
    const r = (deg * Math.PI) / 180, dx = (Math.cos(r) * eye) / 2, dy = (Math.sin(r) * eye) / 2;
    const s = eye * 2.2;
    return { box: { x: cx - s / 2, y: cy - s / 2, w: s, h: s }, score: 0.9,
             keypoints: [[cx - dx, cy - 0.2 * eye - dy], [cx + dx, cy - 0.2 * eye + dy], [cx, cy], [cx, cy + 0.5 * eye], [cx - eye, cy], [cx + eye, cy]] };
  };
"""

SYNTHETIC = """async () => {
  const align = await import('/static/js/align.js');
""" + COMPARE + """
  // A textured 320x240 picture in grey (R = G = B, so its grey is exact) ...
  const W = 320, H = 240, c = document.createElement('canvas');
  c.width = W; c.height = H;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  const grad = ctx.createLinearGradient(0, 0, W, H);
  grad.addColorStop(0, '#202020'); grad.addColorStop(1, '#e0e0e0');
  ctx.fillStyle = grad; ctx.fillRect(0, 0, W, H);
  for (let i = 0; i < 80; i++) {
    const v = 40 + ((i * 67) % 200);
    ctx.fillStyle = `rgb(${v},${v},${v})`;
    ctx.beginPath(); ctx.arc((i * 53) % W, (i * 97) % H, 5 + (i % 13), 0, 7); ctx.fill();
  }
  const rgba = ctx.getImageData(0, 0, W, H).data;
  // ... as the luma plane of a camera frame, padded rows (stride > width) after an offset.
  const plane = (fullRange) => {
    const stride = W + 16, offset = 64, buf = new Uint8Array(offset + stride * H);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const g = rgba[4 * (y * W + x)];
      buf[offset + y * stride + x] = fullRange ? g : Math.round(16 + (g * 219) / 255);
    }
    return { buffer: buf, layout: [{ offset, stride }], width: W, height: H, fullRange };
  };
  const cases = { upright: det(160, 120, 40, 0), rolled: det(150, 110, 36, 25),
                  offFrame: det(20, 25, 30, -10), small: det(250, 180, 14, 5) };
  const out = {};
  for (const range of [false, true]) {
    for (const [name, d] of Object.entries(cases)) {
      const drawn = align.alignFace(c, d, 48).gray;
      const luma = align.alignFaceLuma(plane(range), d, 48).gray;
      out[`${name}-${range ? 'full' : 'video'}`] = diff(drawn, luma);
    }
  }
  // The crop of a uniform frame off its edge: alignFace's grey (128) where the frame is not.
  const flat = { buffer: new Uint8Array(W * H).fill(235), layout: [{ offset: 0, stride: W }], width: W, height: H };
  const edge = align.alignFaceLuma(flat, det(0, 120, 40, 0), 48).gray;
  out.edge = { left: edge[24 * 48 + 2], right: edge[24 * 48 + 45] };
  return out;
}"""


def test_luma_crops_match_drawn_crops(e2e_models, tmp_path):
    r = evaluate_in_page(e2e_models, tmp_path, SYNTHETIC)
    edge = r.pop("edge")
    assert edge == {"left": 128, "right": 255}  # off the frame: grey; video-range 235: white
    for name, d in r.items():
        # Bilinear here, the canvas's own smoothing there (measured: mean 0.03-0.19, max 7 at the
        # frame's edge).
        assert d["mean"] <= 0.5, (name, d)
        assert d["max"] <= 10, (name, d)


CAMERA = """async () => {
  const align = await import('/static/js/align.js');
  const motion = await import('/static/js/motion.js');
""" + COMPARE + """
  const video = document.createElement('video');
  video.muted = true; video.playsInline = true;
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  await video.play();
  while (video.readyState < 2 || !video.videoWidth) await new Promise((r) => setTimeout(r, 50));
  const frame = new VideoFrame(video);
  const W = video.videoWidth, H = video.videoHeight;
  const grey = await motion.grabGrayFast(video, W, H, document.createElement('canvas'), frame);
  // The fake camera's picture: the astronaut's face in the middle of the frame.
  const d = det(W / 2, H / 2, 60, 0);
  const drawn = align.alignFace(frame, d, 48).gray;
  const out = { format: frame.format, fromFrame: !!grey.fromFrame, fullRange: grey.planes && grey.planes.fullRange };
  if (grey.planes) out.diff = diff(drawn, align.alignFaceLuma(grey.planes, d, 48).gray);
  let sum = 0;
  for (const v of drawn) sum += v;
  out.meanDrawn = sum / drawn.length;
  frame.close();
  video.srcObject.getTracks().forEach((t) => t.stop());
  return out;
}"""


def test_camera_frame_luma_crop_matches_the_drawn_frame(e2e_models, e2e_videos, tmp_path):
    """Chromium's fake camera delivers I420: its luma plane read as video range gives the grey
    of the RGB Chromium draws from the same frame."""
    require_browser()
    with live_server(e2e_models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        page = b.new_page()
        page.goto(f"{base}/upload?backend=cpu")
        wait_state(page, "window.ferUploadState && window.ferUploadState.ready", 60)
        r = page.evaluate(CAMERA)
    assert r["fromFrame"] and r["format"] in ("I420", "NV12"), r
    assert 30 < r["meanDrawn"] < 225, r  # a picture, not a blank frame
    # Measured: mean 0.46, max 4 grey levels; reading video range as full range is off by
    # several levels on a face's highlights and shadows.
    assert r["diff"]["mean"] <= 1.0 and r["diff"]["max"] <= 10, r
