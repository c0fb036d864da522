"""End-to-end: six faces on a phone-sized page stay readable (issue 13, "clear with many faces").

Headless Chromium against the real backend and the shipped models (real labels, so the tags
are as wide as users see them). The checks read the rendered layout (getBoundingClientRect) of
the overlay's boxes and tags and of the face list:

* every tag lies inside the visible picture (the `object-fit: contain` rect of the video or
  photo), at a phone's portrait and landscape size, for faces at the frame's edges and with the
  front camera's mirrored preview;
* no two tags overlap, no tag covers another face's box by more than a sliver, each tag sits
  against its own box;
* the numbers on the picture are the face list's numbers, with the same labels;
* text is at least 12 CSS pixels whatever the picture's scale.
The layout and numbering helpers (web/js/layout.js, numbering.js) are also run on their own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import scenes as S
from e2e_support import (
    ARTIFACTS,
    analyse_photo,
    browser,
    evaluate_in_page,
    frames_with_jitter,
    js_state,
    live_server,
    require_browser,
    wait_state,
    write_y4m,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODELS = Path(__file__).resolve().parents[1] / "models"
PORTRAIT, LANDSCAPE = (412, 860), (860, 412)
MIN_FONT_PX = 12
MAX_COVER = 0.1  # share of another face's box a tag may cover


def six_faces() -> S.Scene:
    """Two rows of three faces, sizes 72-88 px in normal light (all found by the page today);
    the first and last sit against the frame's left and right edges."""
    p = S.Placement
    places = [p(0, 72, 0, "normal", (40, 120)), p(1, 72, 0, "normal", (310, 110)),
              p(0, 80, 0, "normal", (560, 125)), p(1, 80, 0, "normal", (100, 360)),
              p(0, 88, 0, "normal", (330, 350)), p(1, 72, 0, "normal", (602, 370))]
    return S.compose(places, [S.astronaut_source(), S.hopper_source()], background_kind="gradient", seed=3)


# The rendered layout, in CSS pixels of the viewport.
GEOMETRY = """([layerSel, mediaSel]) => {
  const rect = (el) => { const b = el.getBoundingClientRect(); return { x: b.left, y: b.top, w: b.width, h: b.height }; };
  const media = document.querySelector(mediaSel);
  const r = rect(media);
  const fw = media.videoWidth || media.width, fh = media.videoHeight || media.height;
  const s = Math.min(r.w / fw, r.h / fh);
  const visible = { x: r.x + (r.w - fw * s) / 2, y: r.y + (r.h - fh * s) / 2, w: fw * s, h: fh * s };
  const layer = document.querySelector(layerSel);
  const font = (el) => parseFloat(getComputedStyle(el).fontSize);
  return {
    visible, mirrored: media.classList.contains('mirrored'), scale: s,
    tags: [...layer.querySelectorAll('.face-tag')].map((t) => ({
      face: t.dataset.face, label: t.dataset.label, shown: !t.hidden && t.offsetWidth > 0,
      compact: t.classList.contains('compact'), text: t.innerText, font: font(t), rect: rect(t) })),
    boxes: [...layer.querySelectorAll('.face-box')].map((b) => ({ face: b.dataset.face, rect: rect(b) })),
    list: [...document.querySelectorAll('#face-list li')].map((li) => ({
      face: li.dataset.face, label: li.dataset.label, text: li.textContent, font: font(li.querySelector('.face-name')),
      shown: li.offsetWidth > 0 })),
  };
}"""


def overlap(a: dict, b: dict) -> float:
    w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    return w * h if w > 0 and h > 0 else 0.0


def inside(r: dict, area: dict, tol: float = 0.75) -> bool:
    return (r["x"] >= area["x"] - tol and r["y"] >= area["y"] - tol
            and r["x"] + r["w"] <= area["x"] + area["w"] + tol and r["y"] + r["h"] <= area["y"] + area["h"] + tol)


def check_layout(g: dict, n_faces: int, where: str) -> None:
    tags, boxes, lst = g["tags"], g["boxes"], g["list"]
    assert len(tags) == len(boxes) == len(lst) == n_faces, where
    # Six faces fit with their full tags ("3 happy 92%") at phone sizes.
    assert all(t["shown"] and not t["compact"] for t in tags), (where, tags)
    for t in tags:
        assert inside(t["rect"], g["visible"]), (where, "tag outside the picture", t, g["visible"])
        assert t["font"] >= MIN_FONT_PX, (where, t)
    for i, a in enumerate(tags):
        for b in tags[i + 1:]:
            assert overlap(a["rect"], b["rect"]) < 1.0, (where, "tags overlap", a, b)
    box_of = {b["face"]: b["rect"] for b in boxes}
    assert len(box_of) == n_faces, (where, "box numbers repeat", boxes)
    for t in tags:
        for face, r in box_of.items():
            if face != t["face"]:
                assert overlap(t["rect"], r) <= MAX_COVER * r["w"] * r["h"], (where, "tag covers a face", t, face, r)
        # Against its own box: overlapping it horizontally, touching it vertically (or inside).
        own = box_of[t["face"]]
        tr = t["rect"]
        assert min(tr["x"] + tr["w"], own["x"] + own["w"]) - max(tr["x"], own["x"]) > 4, (where, t, own)
        assert tr["y"] <= own["y"] + own["h"] + 3 and tr["y"] + tr["h"] >= own["y"] - 3, (where, t, own)
    # Same numbers and labels on the picture and in the list; the list counts 1..n in order.
    assert [li["face"] for li in lst] == [str(k) for k in range(1, n_faces + 1)], where
    labels = {li["face"]: li["label"] for li in lst}
    for t in tags:
        assert t["label"] and t["label"] == labels[t["face"]], (where, t, labels)
        assert t["text"].split()[:2] == [t["face"], t["label"]], (where, t)
    for li in lst:
        assert li["shown"] and li["font"] >= MIN_FONT_PX, (where, li)
        assert f"Face {li['face']}: {li['label']}" in li["text"], (where, li)  # words, not colour alone


def open_page(b, base, viewport):
    page = b.new_context(viewport={"width": viewport[0], "height": viewport[1]}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/?backend=wasm")
    wait_state(page, "window.ferState && window.ferState.ready", 120)
    return page, errors


HELPERS = """async () => {
  const L = await import('/static/js/layout.js');
  const N = await import('/static/js/numbering.js');
  // Crowded: 14 boxes in a small picture; whatever fits must be inside and apart.
  const bounds = { x: 10, y: 20, w: 300, h: 200 };
  let seed = 7; const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const crowd = Array.from({ length: 14 }, () => ({ x: 10 + rnd() * 260, y: 20 + rnd() * 160, w: 40, h: 40 }));
  const crowdTags = L.placeTags(crowd, crowd.map(() => [{ w: 90, h: 18 }, { w: 22, h: 18 }]), bounds);
  // A face against the right edge: its tag is pulled in, still over the face.
  const edge = L.placeTags([{ x: 270, y: 100, w: 40, h: 40 }], [[{ w: 100, h: 18 }]], bounds)[0];
  // At the top edge the tag goes under the box.
  const top = L.placeTags([{ x: 100, y: 20, w: 40, h: 40 }], [[{ w: 60, h: 18 }]], bounds)[0];
  // Invariants over many random pictures: every placed tag inside, apart, against its own box.
  const bad = [];
  let placedTotal = 0, total = 0;
  for (let k = 0; k < 300; k++) {
    const b = { x: rnd() * 50, y: rnd() * 50, w: 200 + rnd() * 500, h: 150 + rnd() * 400 };
    const n = 1 + Math.floor(rnd() * 12);
    const bs = Array.from({ length: n }, () => { const s = 16 + rnd() * 90;
      return { x: b.x + rnd() * (b.w - s), y: b.y + rnd() * (b.h - s), w: s, h: s }; });
    const sz = bs.map(() => [{ w: 60 + rnd() * 60, h: 18 }, { w: 22, h: 18 }]);
    const got = L.placeTags(bs, sz, b);
    got.forEach((t, i) => {
      total++;
      if (t.variant < 0) return;
      placedTotal++;
      const o = bs[i];
      if (t.x < b.x - 0.01 || t.y < b.y - 0.01 || t.x + t.w > b.x + b.w + 0.01 || t.y + t.h > b.y + b.h + 0.01) bad.push(['outside', k, i]);
      if (Math.min(t.x + t.w, o.x + o.w) - Math.max(t.x, o.x) < Math.min(16, o.w / 2, t.w / 2) - 0.01) bad.push(['off its box', k, i]);
      if (t.y > o.y + o.h + 0.01 || t.y + t.h < o.y - 0.01) bad.push(['away from its box', k, i]);
      got.forEach((u, j) => { if (j > i && u.variant >= 0 && L.overlapArea(t, u) > 0.01) bad.push(['overlap', k, i, j]); });
    });
  }
  const rect = L.containRect(412, 400, 640, 480);
  const mirrored = L.toView({ x: 600, y: 0, w: 40, h: 40 }, rect, 640, true);
  const order = N.readingOrder([{ x: 300, y: 10, w: 50, h: 50 }, { x: 10, y: 200, w: 50, h: 50 },
    { x: 10, y: 20, w: 50, h: 50 }, { x: 200, y: 190, w: 60, h: 60 }]);
  const nums = new N.FaceNumbers({ keep: 2 });
  const at = (id, x) => ({ id, box: { x, y: 0, w: 10, h: 10 } });
  const n1 = nums.assign([at(7, 300), at(5, 100), at(6, 200)]).map((t) => [t.id, t.number]);
  nums.assign([at(7, 300), at(5, 100)]);
  const n2 = nums.assign([at(7, 300), at(5, 100), at(6, 200)]).map((t) => [t.id, t.number]);
  for (let i = 0; i < 3; i++) nums.assign([at(7, 300)]);
  const n3 = nums.assign([at(7, 300), at(9, 50)]).map((t) => [t.id, t.number]);
  const again = new N.FaceNumbers();
  again.assign([at(1, 100), at(2, 300)]);
  again.assign([at(1, 100)]);
  const n4 = again.assign([at(1, 100), at(3, 302), at(4, 500)]).map((t) => [t.id, t.number]);
  const m = new N.FaceNumbers().assign([at(1, 10), at(2, 500)], { width: 640, mirror: true }).map((t) => [t.id, t.number]);
  return { bad, placedTotal, total, crowd, crowdTags, edge, top, rect, mirrored, order, n1, n2, n3, n4, m };
}"""


def test_layout_and_numbering_helpers(tmp_path):
    r = evaluate_in_page(MODELS, tmp_path, HELPERS)
    assert r["bad"] == []
    assert r["placedTotal"] > 0.8 * r["total"], (r["placedTotal"], r["total"])
    bounds = {"x": 10, "y": 20, "w": 300, "h": 200}
    shown = [t for t in r["crowdTags"] if t["variant"] >= 0]
    assert len(shown) >= 7, r["crowdTags"]  # most fit, at least as a number
    for i, a in enumerate(shown):
        assert inside(a, bounds, 0.01)
        for c in shown[i + 1:]:
            assert overlap(a, c) < 0.01, (a, c)
    edge = r["edge"]
    assert edge["variant"] == 0 and edge["x"] + edge["w"] <= 310 and edge["side"] == "above"
    assert r["top"]["side"] == "below" and r["top"]["y"] == 60
    assert r["rect"]["scale"] == pytest.approx(412 / 640) and r["rect"]["y"] == pytest.approx((400 - 309) / 2)
    assert r["mirrored"]["x"] == pytest.approx(0) and r["mirrored"]["w"] == pytest.approx(40 * 412 / 640)
    assert r["order"] == [2, 0, 1, 3]  # top row left to right, then the bottom row
    assert dict(r["n1"]) == {5: 1, 6: 2, 7: 3}  # new faces numbered left to right
    assert dict(r["n2"]) == {5: 1, 6: 2, 7: 3}  # a blink keeps the number
    assert dict(r["n3"]) == {7: 3, 9: 1}  # freed numbers are reused, the kept one stays
    assert dict(r["n4"]) == {1: 1, 3: 2, 4: 3}  # lost and found again under a new id: same number
    assert dict(r["m"]) == {2: 1, 1: 2}  # mirrored preview: the frame's right side is on the left


def test_six_faces_photo_phone_portrait_then_landscape(tmp_path):
    require_browser()
    scene = six_faces()
    with live_server(MODELS, tmp_path / "custom") as base, browser() as b:
        page, errors = open_page(b, base, PORTRAIT)
        faces = analyse_photo(page, scene.image, "six.png", 120)
        assert len(faces) == 6 and all(f["label"] for f in faces), faces
        # Numbered in reading order, listed in that order.
        assert [f["number"] for f in faces] == list(range(1, 7))
        matched = S.match(scene.boxes, faces)
        assert matched == [0, 1, 2, 3, 4, 5], matched  # composed in reading order
        sel = ["#still-overlay", "#still-image"]
        check_layout(page.evaluate(GEOMETRY, sel), 6, "photo portrait")
        # What a screen reader hears (the overlay is aria-hidden): every face, in words.
        summary = page.evaluate("document.getElementById('face-summary').textContent")
        assert summary == "; ".join(f"Face {f['number']}: {f['label']}" for f in faces)
        assert page.get_attribute("#still-overlay", "aria-hidden") == "true"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "overlay_six_photo_portrait.png"))
        # Turning the phone re-lays the tags out (no new frame comes for a photo).
        page.set_viewport_size({"width": LANDSCAPE[0], "height": LANDSCAPE[1]})
        time.sleep(0.5)
        check_layout(page.evaluate(GEOMETRY, sel), 6, "photo landscape")
        page.screenshot(path=str(ARTIFACTS / "overlay_six_photo_landscape.png"))
        assert errors == []


def test_six_faces_live_mirrored_front_camera(tmp_path):
    """The fake camera is a front camera: mirrored preview; the faces against the frame's edges
    swap sides on screen and their tags must still be whole."""
    require_browser()
    scene = six_faces()
    video = write_y4m(tmp_path / "six.y4m", frames_with_jitter(scene.image, 6))
    with live_server(MODELS, tmp_path / "custom") as base, browser(video) as b:
        page, errors = open_page(b, base, PORTRAIT)
        page.click("#toggle")
        wait_state(page, "window.ferState.frames >= 3 && window.ferState.faces.length === 6"
                         " && window.ferState.faces.every(f => f.label)", 120)
        sel = ["#overlay", "#video"]
        g = page.evaluate(GEOMETRY, sel)
        assert g["mirrored"]
        check_layout(g, 6, "live portrait")
        # Mirrored: the face at the frame's right edge is boxed at the picture's left edge.
        s = js_state(page)
        right = max(s["faces"], key=lambda f: f["box"]["x"])
        box = next(x["rect"] for x in g["boxes"] if x["face"] == str(right["number"]))
        assert box["x"] - g["visible"]["x"] < 0.2 * g["visible"]["w"], (right, box)
        ids = {f["id"]: f["number"] for f in s["faces"]}
        page.screenshot(path=str(ARTIFACTS / "overlay_six_live_portrait.png"))
        page.set_viewport_size({"width": LANDSCAPE[0], "height": LANDSCAPE[1]})
        time.sleep(1.0)
        check_layout(page.evaluate(GEOMETRY, sel), 6, "live landscape")
        page.screenshot(path=str(ARTIFACTS / "overlay_six_live_landscape.png"))
        # A tracked face keeps its number from frame to frame.
        later = {f["id"]: f["number"] for f in js_state(page)["faces"]}
        assert all(later[i] == n for i, n in ids.items() if i in later), (ids, later)
        assert errors == []
