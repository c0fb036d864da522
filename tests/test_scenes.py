"""The scene composer and scoring of tests/scenes.py (no browser): the geometry the benchmark
trusts."""

from __future__ import annotations

import numpy as np
import pytest
import scenes as S


def bar_source() -> S.FaceSource:
    """A white square 'face' with a bar pointing up from its centre, on black."""
    img = np.zeros((101, 101, 3), np.uint8)
    img[30:71, 30:71] = 120
    img[30:50, 48:53] = 255
    return S.FaceSource("bar", img, (30.0, 30.0, 41.0, 41.0), "test", 1.8)


def test_ground_truth_box_sits_on_the_pasted_face():
    src = bar_source()
    p = S.Placement(0, 82, 0.0, "normal", (200.3, 150.7))
    scene = S.compose([p], [src], background_kind="plain", seed=0)
    x, y, w, h = scene.boxes[0]
    assert (w, h) == pytest.approx((82, 82))
    grey = scene.image.astype(int).sum(axis=2)
    inside = grey[int(y) + 3:int(y + h) - 3, int(x) + 3:int(x + w) - 3]
    assert inside.min() >= 3 * 110  # the face square fills its box (scaled x2, sharp edges)
    assert abs((x + w / 2) - 200.3) <= 0.5 and abs((y + h / 2) - 150.7) <= 0.5


def test_positive_angle_turns_counter_clockwise_on_screen():
    patch, _ = S.face_patch(bar_source(), S.Placement(0, 41, 30.0))
    ys, xs = np.nonzero(patch[..., 0] > 200)
    c = (patch.shape[0] - 1) / 2
    tip = ys.argmin()
    assert xs[tip] < c - 3  # the bar's top end moved left


def test_lighting_darkens_and_noise_is_seeded():
    src = bar_source()
    means = {}
    for light in S.LIGHTS:
        p = S.Placement(0, 41, 0.0, light, (100.0, 100.0))
        a = S.compose([p], [src], seed=3)
        b = S.compose([p], [src], seed=3)
        assert np.array_equal(a.image, b.image)
        x, y, w, h = map(int, a.boxes[0])
        means[light] = a.image[y:y + h, x:x + w].mean()
    assert means["normal"] > 2 * means["dim"] > 2 * means["dark"]


def test_place_keeps_patches_apart_and_inside():
    sources = [bar_source()]
    rng = np.random.default_rng(0)
    ps = S.place([S.Placement(0, s) for s in (128, 96, 64, 48, 24)], sources, rng)
    assert ps is not None
    h, w = S.CANVAS
    for i, p in enumerate(ps):
        r = S.patch_side(p.size, sources[0]) / 2
        assert r <= p.centre[0] <= w - r and r <= p.centre[1] <= h - r
        for q in ps[i + 1:]:
            d = np.hypot(p.centre[0] - q.centre[0], p.centre[1] - q.centre[1])
            assert d >= r + S.patch_side(q.size, sources[0]) / 2
    # Faces already placed stay put and keep the new (bigger) one off them.
    fixed = [S.Placement(0, 24, centre=(320.0, 240.0))]
    for _ in range(20):
        a, b = S.place(fixed + [S.Placement(0, 128)], sources, rng)
        assert a.centre == (320.0, 240.0)
        assert np.hypot(b.centre[0] - 320, b.centre[1] - 240) >= sum(
            S.patch_side(s, sources[0]) / 2 for s in (24, 128))
    assert S.place([S.Placement(0, 200)] * 2, sources, rng) is None  # two never fit
    assert S.place([S.Placement(0, 300)], sources, rng) is None  # bigger than the canvas


def test_match_is_greedy_one_to_one_and_compare():
    truth = [(0, 0, 10, 10), (100, 0, 10, 10), (300, 300, 10, 10)]
    det = lambda x, y, w: {"box": {"x": x, "y": y, "w": w, "h": w}}
    dets = [det(101, 0, 10), det(1, 1, 10), det(0, 0, 12), det(200, 200, 10)]
    assert S.match(truth, dets) == [2, 0, None]
    c = S.compare([0.1, 0.7, 0.2], [0.2, 0.6, 0.2])
    assert c["agree"] and c["l1"] == pytest.approx(0.2)
    assert not S.compare([0.6, 0.4], [0.4, 0.6])["agree"]


def test_package_faces_are_faces_not_datasets():
    faces = [S.astronaut_source(), S.hopper_source(), *S.lfw_sources(3)]
    assert [f.kind for f in faces] == ["photo", "photo", "lfw", "lfw", "lfw"]
    for f in faces:
        x, y, w, h = f.box
        assert f.image.dtype == np.uint8 and f.image.shape[2] == 3
        assert 0 <= x and x + w <= f.image.shape[1] and 0 <= y and y + h <= f.image.shape[0]
