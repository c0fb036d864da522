"""training/robustness/lowlight.py is web/js/lowlight.js: the same bytes and branch on the same
crops.

The JS side is the real module as the backend serves it, run in headless Chromium; the crops
cover every branch, the thresholds' edges and the .5 ties where JS Math.round (halves up) and
numpy's round (halves to even) disagree.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_faces

from training.robustness import lowlight
from training.robustness.perturb import perturb

N = 48 * 48


def _edge_crop(lo: int, hi: int, mid: int) -> np.ndarray:
    """100 pixels at lo, 100 at hi, the rest at mid: p2 = lo and p98 = hi exactly."""
    flat = np.full(N, mid, np.uint8)
    flat[:100], flat[-100:] = lo, hi
    return flat.reshape(48, 48)


def _equalize_ties() -> np.ndarray:
    """A dark crop whose equalisation LUT hits x.5 exactly: cdf_min = 1794, n - cdf_min = 510,
    so lut = (cdf - 1794) / 2, a half for every odd cumulative count."""
    counts = [1794] + [10, 11, 9, 13, 7, 15, 5, 17, 3, 19] * 4 + [37, 37]
    assert sum(counts) == N
    flat = np.repeat(np.arange(len(counts)), counts).astype(np.uint8)
    return np.random.default_rng(5).permutation(flat).reshape(48, 48)


def _stretch_ties() -> np.ndarray:
    """A low-contrast crop with p2 = 100, p98 = 110: (g - 100) * 25.5 hits 76.5 (g = 103)."""
    rng = np.random.default_rng(6)
    flat = rng.integers(100, 111, size=N).astype(np.uint8)
    flat[:100], flat[-100:] = 100, 110
    return rng.permutation(flat).reshape(48, 48)


def crops(astronaut_rgb) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    faces, _ = synthetic_faces(4, seed=3)
    grey = astronaut_rgb[40:232, 150:342].mean(axis=2)  # her face, ~192 px
    astro = grey.reshape(48, 4, 48, 4).mean(axis=(1, 3)).astype(np.uint8)
    out = {
        "dark_random": rng.integers(0, 60, (48, 48)),
        "dark_gradient": (xx * 1.2).astype(int),
        "low_contrast": 120 + rng.integers(-30, 30, (48, 48)),
        "normal_random": rng.integers(0, 256, (48, 48)),
        "h_gradient": (xx * 255 / 47).round(),
        "v_gradient": (yy * 255 / 47).round(),
        "diag_gradient": ((xx + yy) * 255 / 94).round(),
        "equalize_ties": _equalize_ties(),
        "stretch_ties": _stretch_ties(),
        "range_109": _edge_crop(60, 169, 120),
        "range_110": _edge_crop(60, 170, 120),
        "range_111": _edge_crop(60, 171, 120),
        "mean_just_below_70": _edge_crop(0, 200, 67),  # mean 69.86
        "mean_just_above_70": _edge_crop(0, 200, 68),  # mean 70.78
        "mean_just_below_40": _edge_crop(0, 100, 39),  # mean 39.96
        "mean_just_above_40": _edge_crop(0, 100, 40),  # mean 40.87
        "astronaut": astro,
        "astronaut_dark": perturb(astro, "low_light", 2)[0],
        "astronaut_night": perturb(astro, "night", 3)[0],
        "astronaut_bright": perturb(astro, "over_exposure", 3)[0],
    }
    for v in (0, 1, 69, 70, 128, 254, 255):
        out[f"constant_{v}"] = np.full((48, 48), v)
    for i, face in enumerate(faces):
        out[f"synthetic_{i}"] = face
        out[f"synthetic_{i}_low_light"] = perturb(face, "low_light", 3, seed=i)[0]
    return {k: np.asarray(v).astype(np.uint8) for k, v in out.items()}


JS = """async ([crops, opts]) => {
  const ll = await import('/static/js/lowlight.js');
  const out = {};
  for (const [name, values] of Object.entries(crops)) {
    const r = ll.normalizeLowLight(Uint8Array.from(values), opts || undefined);
    out[name] = { applied: r.applied, gray: Array.from(r.gray),
                  mean: r.stats.mean, p2: r.stats.p2, p98: r.stats.p98 };
  }
  return out;
}"""


def test_js_round_is_half_up():
    assert lowlight.js_round(np.array([2.5, 3.5, -2.5, 0.49999999999999994, 76.5])).tolist() == [
        3, 4, -2, 0, 77]


def test_port_covers_every_branch_and_the_ties(astronaut_rgb):
    c = crops(astronaut_rgb)
    # The former rule (70 / 110) still reaches every branch; its edges are crops of their own.
    branches = {name: lowlight.normalize_low_light(v, **lowlight.FORMER_RULE)[1] for name, v in c.items()}
    assert set(branches.values()) == {"equalize", "stretch", "none"}
    assert branches["range_109"] == "stretch" and branches["range_110"] == "none"
    assert branches["mean_just_below_70"] == "equalize" and branches["constant_70"] == "stretch"
    assert branches["mean_just_above_70"] == "none"
    # Today's default: equalise below mean 40, never stretch.
    default = {name: lowlight.normalize_low_light(v)[1] for name, v in c.items()}
    assert set(default.values()) == {"equalize", "none"}
    assert default["mean_just_below_40"] == "equalize" and default["mean_just_above_40"] == "none"
    assert default["range_109"] == "none" and default["constant_1"] == "equalize"
    # the tie crops really hold halves that numpy's round would send the other way
    exact = (np.cumsum(lowlight.stats(c["equalize_ties"]).hist) - 1794) * 255 / 510
    lut = lowlight.equalize_lut(lowlight.stats(c["equalize_ties"]).hist, N)
    assert np.any(lut != np.clip(np.round(exact), 0, 255))
    assert lowlight.stretch(np.array([103], np.uint8), 100, 110).tolist() == [77]


@pytest.mark.parametrize("rule", [{}, lowlight.FORMER_RULE], ids=["default", "former"])
def test_batch_equals_per_crop(astronaut_rgb, rule):
    c = crops(astronaut_rgb)
    x = np.stack(list(c.values()))
    got, branch = lowlight.normalize_batch(x, **rule)
    for i, v in enumerate(c.values()):
        want, applied = lowlight.normalize_low_light(v, **rule)
        assert branch[i] == applied
        np.testing.assert_array_equal(got[i], want)
    empty, b = lowlight.normalize_batch(np.zeros((0, 48, 48), np.uint8))
    assert empty.shape == (0, 48, 48) and b.shape == (0,)
    with pytest.raises(TypeError):
        lowlight.normalize_batch(x.astype("float32"))


@pytest.mark.browser
@pytest.mark.slow
def test_matches_the_page_module_byte_for_byte(astronaut_rgb, tmp_path):
    """Both rules: the default (JS called without options, so its defaults are checked too)
    and the former one (every branch, including the stretch)."""
    from e2e_support import browser, live_server, require_browser

    require_browser()
    c = crops(astronaut_rgb)
    plain = {k: v.ravel().tolist() for k, v in c.items()}
    former_js = {"darkMean": lowlight.FORMER_RULE["dark_mean"], "minRange": lowlight.FORMER_RULE["min_range"]}
    with live_server(tmp_path / "models", tmp_path / "custom") as base, browser() as b:
        page = b.new_page()
        assert page.goto(f"{base}/static/js/lowlight.js").ok  # any page of the server's origin
        runs = [({}, page.evaluate(JS, [plain, None])),
                (lowlight.FORMER_RULE, page.evaluate(JS, [plain, former_js]))]
    for rule, js in runs:
        batch, branches = lowlight.normalize_batch(np.stack(list(c.values())), **rule)
        for i, (name, crop) in enumerate(c.items()):
            got, applied = lowlight.normalize_low_light(crop, **rule)
            s = lowlight.stats(crop)
            assert (applied, branches[i]) == (js[name]["applied"],) * 2, (rule, name)
            assert (s.mean, s.p2, s.p98) == (js[name]["mean"], js[name]["p2"], js[name]["p98"]), name
            assert got.ravel().tolist() == js[name]["gray"], (rule, name)
            np.testing.assert_array_equal(batch[i], got)
