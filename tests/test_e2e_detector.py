"""The face detector's tiling (web/js/tiles.js, detector.js's thorough mode) in headless Chromium.

The geometry as pure functions, then the real BlazeFace on a composite scene: a face that sits
across a tile border maps back to the same place from every tile that holds it, the tile whose
side cuts it flags it as cut, and the thorough mode reports it once, in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scenes as S
from detector_support import detect, open_detector_page, put_image
from e2e_support import browser, live_server, require_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODELS = Path(__file__).resolve().parents[1] / "models"

GEOMETRY = """async () => {
  const t = await import('/static/js/tiles.js');
  const d = await import('/static/js/detector.js');
  const lb = t.letterboxView(640, 480, 256);
  const tiles = t.tileViews(640, 480, 256, { scale: 1, overlap: 112 });
  const big = d.thoroughViews(1600, 1200, 256);
  return {
    spans: t.spans(640, 256, 112), spansShort: t.spans(200, 256, 112),
    lb, lbRect: t.drawRect(lb, 640, 480), lbCorner: t.toSource(lb, 0, 32),
    nTiles: tiles.length, tile5: tiles[5], tile5Rect: t.drawRect(tiles[5], 640, 480),
    tile5Px: t.toSource(tiles[5], 10, 20),
    cutRight: t.cutByView(tiles[0], { x: 230, y: 100, w: 30, h: 30 }),
    cutLeftOfFirst: t.cutByView(tiles[0], { x: 0, y: 100, w: 30, h: 30 }),
    inside: t.cutByView(tiles[0], { x: 100, y: 100, w: 30, h: 30 }),
    bigViews: big.length, bigScales: [...new Set(big.map((v) => +v.scale.toFixed(4)))],
    thorough640: d.thoroughViews(640, 480, 256).length,
  };
}"""


def test_tile_geometry(tmp_path):
    require_browser()
    with live_server(MODELS, tmp_path / "custom") as base, browser() as b:
        page = b.new_page()
        page.goto(f"{base}/?backend=wasm")
        r = page.evaluate(GEOMETRY)
    assert r["spans"] == [0, 128, 256, 384]  # 4 tiles of 256 over 640, neighbours overlap 128 >= 112
    assert r["spansShort"] == [-28]  # one tile, centred, padded
    # The letterbox view is the pre-tiling single pass: 640x480 -> 256x192 at y 32.
    assert r["lb"]["scale"] == pytest.approx(0.4)
    assert r["lbRect"] == {"sx": 0, "sy": 0, "sw": 640, "sh": 480, "dx": 0, "dy": 32, "dw": 256, "dh": 192}
    assert r["lbCorner"] == [0, 0]
    assert r["nTiles"] == 12  # 4 across x 3 down
    t5 = r["tile5"]
    assert (t5["x0"], t5["y0"]) == (128, 112)
    assert r["tile5Rect"] == {"sx": 128, "sy": 112, "sw": 256, "sh": 256, "dx": 0, "dy": 0, "dw": 256, "dh": 256}
    assert r["tile5Px"] == [138, 132]
    assert r["cutRight"] and not r["cutLeftOfFirst"] and not r["inside"]
    assert r["thorough640"] == 7  # the letterboxed pass + 3 x 2 tiles at scale 0.8
    # A large photo gets coarser tiles, not hundreds of passes: 0.8 -> 0.64, 6 x 4 tiles.
    assert r["bigViews"] == 25 and r["bigScales"] == [0.16, 0.64]


PASS = """async ([views]) => {
  const c = window.__img, det = window.__det, t = window.__tiles;
  const out = [];
  for (const v of views) {
    const view = { ...v, size: det.size };
    const found = await det._pass(c, c.width, c.height, view, 0.6);
    out.push(found.map((f) => ({ box: f.box, score: f.score, cut: t.cutByView(view, f.box) })));
  }
  return out;
}"""


def test_face_across_a_tile_border_maps_back_and_is_reported_once(tmp_path):
    require_browser()
    sources = [S.astronaut_source()]
    # 56 px wide, centred on x = 320, where the thorough mode's first tile column (0..320) ends and
    # its third (320..640) starts; its second (160..480) holds it whole. The views below: one
    # whose right side cuts it, three that hold it whole at other offsets and scales.
    scene = S.compose([S.Placement(0, 56, 0.0, "normal", (320.0, 150.0))], sources,
                      background_kind="noise", seed=3)
    truth = scene.boxes[0]
    inner = {"left": True, "top": False, "right": True, "bottom": True}
    views = [
        {"x0": 64, "y0": 0, "scale": 1, "inner": inner},     # its right side (x 320) cuts the face
        {"x0": 192, "y0": 0, "scale": 1, "inner": inner},    # face whole, right half
        {"x0": 250, "y0": 40, "scale": 1, "inner": inner},   # face whole, near the left
        {"x0": 150, "y0": 60, "scale": 0.8, "inner": inner},  # another scale
    ]
    with live_server(MODELS, tmp_path / "custom") as base, browser() as b:
        page = open_detector_page(b, base)
        page.evaluate("import('/static/js/tiles.js').then((m) => { window.__tiles = m; })")
        put_image(page, scene.image)
        per_view = page.evaluate(PASS, [views])
        thorough = detect(page, {"thorough": True})
        default = detect(page)
    # Whole in views 1-3: each maps its box back onto the face, within a few source pixels.
    boxes = []
    for found in per_view[1:]:
        best = max(found, key=lambda f: S.iou(truth, S.box_tuple(f["box"])))
        assert S.iou(truth, S.box_tuple(best["box"])) >= 0.6, (truth, found)
        assert not best["cut"]
        boxes.append(S.box_tuple(best["box"]))
    spread = np.ptp(np.array(boxes), axis=0)
    assert (spread[:2] < 4).all(), boxes  # same place from every tile and scale
    # The tile whose side cuts the face: whatever it finds there is flagged as cut.
    assert all(f["cut"] for f in per_view[0] if S.iou(truth, S.box_tuple(f["box"])) > 0.05)
    # Thorough: one box on the face, none elsewhere; 7 passes. Default: one pass.
    assert thorough["views"] == 7 and default["views"] == 1
    assert len(thorough["faces"]) == 1, thorough["faces"]
    assert S.iou(truth, S.box_tuple(thorough["faces"][0]["box"])) >= 0.6
